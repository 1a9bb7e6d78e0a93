package conductor_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// TestDeleteStopsTheImageCacheDownload: a node in maintenance is deleted
// while its deploy has the conductor download the image into its cache
// (image_download_source http, a source that stalls mid-body): the delete
// cancels the deploy's job, whose download then stops (the source sees
// its client go away), and nothing of the image is served.
func TestDeleteStopsTheImageCacheDownload(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	cfg.ImageCacheDir = filepath.Join(h.Dir(), "cache")
	h.Start(cfg)
	uuid := h.EnrollNode()

	requested, gone := make(chan struct{}), make(chan struct{})
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1073741824")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		close(requested)
		<-r.Context().Done() // stalls until the client goes away
		close(gone)
	}))
	defer src.Close()
	patchInstanceInfo(t, h, "n1", map[string]any{"image_source": src.URL + "/disk.raw",
		"image_checksum": strings.Repeat("a", 64), "image_download_source": "http"})
	h.Provision("n1", "active", nil)
	select {
	case <-requested:
	case <-time.After(30 * time.Second):
		t.Fatalf("the conductor did not start caching the image: %v", h.Node("n1")["provision_state"])
	}
	if st := h.Node("n1")["provision_state"]; st != "deploying" {
		t.Fatalf("provision state %v while caching", st)
	}
	// Outside maintenance a deploying node cannot be deleted (Ironic).
	var out map[string]any
	if st := h.Call("DELETE", "/v1/nodes/n1", nil, &out); st != http.StatusConflict {
		t.Fatalf("delete of a deploying node: %d %v", st, out)
	}
	if st := h.Call("PUT", "/v1/nodes/n1/maintenance", map[string]any{"reason": "stuck"}, nil); st != http.StatusAccepted {
		t.Fatalf("set maintenance: %d", st)
	}
	if st := h.Call("DELETE", "/v1/nodes/n1", nil, &out); st != http.StatusNoContent {
		t.Fatalf("delete in maintenance: %d %v", st, out)
	}
	select {
	case <-gone:
	case <-time.After(30 * time.Second):
		t.Fatal("the image download went on after the node was deleted")
	}
	if st := h.Call("GET", "/v1/nodes/"+uuid, nil, nil); st != http.StatusNotFound {
		t.Fatalf("node still there: %d", st)
	}
	if n := h.Driver(); n != nil {
		if dev, _ := n.BootDevice(uuid); dev != "" {
			t.Errorf("the deleted node's boot device was set (%s): the job went on", dev)
		}
	}
}
