package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

const inspectedNode = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"

// inspector is a conductor's continue_inspection endpoint that answers
// with the statuses given, one per request, then 202 with the node.
type inspector struct {
	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	headers  []http.Header
}

func (c *inspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	n := len(c.bodies)
	c.bodies = append(c.bodies, b)
	c.headers = append(c.headers, r.Header.Clone())
	c.mu.Unlock()
	if n < len(c.statuses) {
		w.WriteHeader(c.statuses[n])
		json.NewEncoder(w).Encode(wire.NewIronicError("Client", "Node could not be found or is not being inspected."))
		return
	}
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(wire.InspectionResponse{UUID: inspectedNode})
}

func (c *inspector) requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.bodies)
}

// fastRetry is IPA's number of attempts without its pauses.
var fastRetry = retryPolicy{attempts: 5, wait: func(int) time.Duration { return time.Millisecond }}

func post(t *testing.T, srv *httptest.Server, urls ...string) inspectionPost {
	if len(urls) == 0 {
		urls = []string{srv.URL + "/v1/continue_inspection"}
	}
	return inspectionPost{client: srv.Client(), urls: urls, body: []byte(`{"inventory":{}}`), retry: fastRetry,
		log: testLogger(t)}
}

// TestInspectionWaitsForInspectWait runs the race the retries are for:
// the agent posts before the conductor has moved the node to inspect
// wait and gets 404 "not being inspected" twice; it keeps the data, tries
// again, and the third post is accepted. This goes through the agent's own
// inspection (inventory, root disk, managers), as at boot.
func TestInspectionWaitsForInspectWait(t *testing.T) {
	c := &inspector{statuses: []int{http.StatusNotFound, http.StatusNotFound}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	saved := inspectRetry
	inspectRetry = fastRetry
	t.Cleanup(func() { inspectRetry = saved })

	cfg := standaloneConfig()
	cfg.InspectionCallbackURL = srv.URL + "/v1/continue_inspection"
	cfg.RequestID = "req-7f0c"
	a, err := New(cfg, Options{Logger: testLogger(t), Power: &fakePower{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.selectManagers(t.Context()); err != nil {
		t.Fatal(err)
	}
	inv := &wire.Inventory{Interfaces: []wire.NetworkInterface{{Name: "eno1", MACAddress: "52:54:00:12:34:56"}}}
	if uuid := a.inspect(t.Context(), srv.Client(), inv); uuid != inspectedNode {
		t.Fatalf("inspection answered %q", uuid)
	}
	if c.requests() != 3 {
		t.Fatalf("%d requests, want 3", c.requests())
	}
	for i, b := range c.bodies {
		if !bytes.Equal(b, c.bodies[0]) {
			t.Errorf("request %d sent different data", i+1)
		}
		if h := c.headers[i]; h.Get("Content-Type") != "application/json" || h.Get("X-OpenStack-Request-ID") != "req-7f0c" {
			t.Errorf("request %d headers %v", i+1, h)
		}
	}
	var sent wire.InspectionData
	if err := json.Unmarshal(c.bodies[2], &sent); err != nil || !strings.Contains(string(sent.Inventory), "52:54:00:12:34:56") {
		t.Errorf("posted %s: %v", c.bodies[2], err)
	}
}

// TestInspectionRetriesWhatIPARetries: 409 (node locked) and 5xx are
// tried again.
func TestInspectionRetriesWhatIPARetries(t *testing.T) {
	c := &inspector{statuses: []int{http.StatusConflict, http.StatusServiceUnavailable, http.StatusInternalServerError}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	uuid, err := sendInspection(t.Context(), post(t, srv))
	if err != nil || uuid != inspectedNode || c.requests() != 4 {
		t.Fatalf("%q %v after %d requests", uuid, err, c.requests())
	}
}

// TestInspectionGivesUp ends, after IPA's five attempts, with an error that
// says so and carries the conductor's last answer.
func TestInspectionGivesUp(t *testing.T) {
	c := &inspector{statuses: []int{404, 404, 404, 404, 404, 404}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	_, err := sendInspection(t.Context(), post(t, srv))
	if err == nil || !strings.Contains(err.Error(), "gave up after 5 attempts") || !strings.Contains(err.Error(), "HTTP 404: Node could not be found or is not being inspected.") {
		t.Fatalf("error %v", err)
	}
	if c.requests() != 5 {
		t.Fatalf("%d requests", c.requests())
	}
}

// TestInspectionRefusalIsFinal: a 400 (bad data) or 403 is not retried.
func TestInspectionRefusalIsFinal(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusForbidden} {
		c := &inspector{statuses: []int{status}}
		srv := httptest.NewServer(c)
		_, err := sendInspection(t.Context(), post(t, srv))
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "not retried") || c.requests() != 1 {
			t.Errorf("HTTP %d: %v after %d requests", status, err, c.requests())
		}
	}
}

// TestInspectionTriesTheNextURL: within an attempt, a callback that cannot
// be reached passes to the next URL of the list, as IPA does.
func TestInspectionTriesTheNextURL(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()
	c := &inspector{}
	srv := httptest.NewServer(c)
	defer srv.Close()
	uuid, err := sendInspection(t.Context(), post(t, srv, goneURL+"/v1/continue_inspection", srv.URL+"/v1/continue_inspection"))
	if err != nil || uuid != inspectedNode || c.requests() != 1 {
		t.Fatalf("%q %v after %d requests", uuid, err, c.requests())
	}
	if _, err := sendInspection(t.Context(), post(t, srv, "ftp://192.0.2.1/x")); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
		t.Fatalf("bad URL: %v", err)
	}
}

// TestInspectionStopsWithTheContext cancels the context during IPA's
// pause: the retry loop ends at once with the context's error.
func TestInspectionStopsWithTheContext(t *testing.T) {
	c := &inspector{statuses: []int{503, 503}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	p := post(t, srv)
	p.retry = retryPolicy{attempts: 5, wait: func(int) time.Duration { return time.Hour }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := sendInspection(ctx, p); done <- err }()
	for c.requests() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "stopped after 1 attempts") || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("error %v", err)
	}
}

// TestIPAInspectionRetryTiming checks IPA's numbers: 5 attempts, 5, 5, 6
// and 12 s apart (tenacity's wait_exponential(multiplier=1.5, min=5,
// max=30)).
func TestIPAInspectionRetryTiming(t *testing.T) {
	if inspectRetry.attempts != 5 {
		t.Fatalf("%d attempts", inspectRetry.attempts)
	}
	for i, want := range []time.Duration{5 * time.Second, 5 * time.Second, 6 * time.Second, 12 * time.Second, 24 * time.Second, 30 * time.Second} {
		if got := inspectRetry.wait(i + 1); got != want {
			t.Errorf("wait after attempt %d: %v, want %v", i+1, got, want)
		}
	}
}
