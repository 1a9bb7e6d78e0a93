package conductor_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// TestDeployThroughImageCache deploys images the conductor must serve
// itself: a file:// source, and an http source with image_download_source
// "http" whose checksum is a checksum-file URL. The agent is sent the
// cached copy under /agent_images/ with the checksum the copy was
// verified with, downloads it and checks it.
func TestDeployThroughImageCache(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 100 * time.Millisecond})
	cfg := h.Config()
	cfg.ImageCacheDir = filepath.Join(h.Dir(), "cache")
	cfg.FileURLAllowedPaths = []string{filepath.Join(h.Dir(), "images")}
	h.Start(cfg)
	h.EnrollNode()
	sum := sha256.Sum256(h.Image())
	hexSum := hex.EncodeToString(sum[:])

	local := "file://" + filepath.Join(h.Dir(), "images", "disk.raw")
	patchInstanceInfo(t, h, "n1", map[string]any{"image_source": local, "image_os_hash_algo": "sha256", "image_os_hash_value": hexSum})
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
	info := h.Agent().ImageInfo()
	if info == nil || len(info.URLs) != 1 || !strings.HasPrefix(info.URLs[0], h.URL()+"/agent_images/") ||
		info.OSHashAlgo != "sha256" || info.OSHashVal != hexSum || info.ID != "disk.raw" {
		t.Fatalf("image_info for a file:// source = %+v", info)
	}

	// An http source the node must not reach itself, verified by a
	// checksum file: the agent gets the value, not the file's URL.
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/disk.raw":
			w.Write(h.Image())
		case "/SHA256SUMS":
			fmt.Fprintf(w, "%s  other.raw\n%s  disk.raw\n", strings.Repeat("0", 64), hexSum)
		default:
			http.NotFound(w, r)
		}
	}))
	defer src.Close()
	h.Provision("n1", "deleted", nil)
	h.WaitState("n1", "available", 10*time.Second)
	patchInstanceInfo(t, h, "n1", map[string]any{"image_source": src.URL + "/disk.raw", "image_checksum": src.URL + "/SHA256SUMS",
		"image_download_source": "http"})
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
	info = h.Agent().ImageInfo()
	if info == nil || !strings.HasPrefix(info.URLs[0], h.URL()+"/agent_images/") || info.Checksum != "" ||
		info.OSHashAlgo != "sha256" || info.OSHashVal != hexSum {
		t.Fatalf("image_info for a cached http source = %+v", info)
	}
}

// TestFileImageNeedsACache: without an image cache a file:// source is
// refused when the deploy is asked for, with Ironic's error shape.
func TestFileImageNeedsACache(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	cfg.FileURLAllowedPaths = []string{cfg.ImageDir}
	h.Start(cfg)
	h.EnrollNode()
	patchInstanceInfo(t, h, "n1", map[string]any{"image_source": "file://" + filepath.Join(cfg.ImageDir, "disk.raw"), "image_checksum": strings.Repeat("a", 64)})
	var out map[string]any
	st := h.Call("PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "active"}, &out)
	if st != http.StatusBadRequest || !strings.Contains(conductortest.IronicFault(t, out).FaultString, "has no image cache") {
		t.Fatalf("deploy of a file:// image without a cache: %d %v", st, out)
	}
}

// patchInstanceInfo replaces the node's instance_info with ii.
func patchInstanceInfo(t *testing.T, h *conductortest.Harness, node string, ii map[string]any) {
	t.Helper()
	var out map[string]any
	if st := h.Call("PATCH", "/v1/nodes/"+node, []map[string]any{{"op": "add", "path": "/instance_info", "value": ii}}, &out); st != http.StatusOK {
		t.Fatalf("patch instance_info: %d %v", st, out)
	}
}
