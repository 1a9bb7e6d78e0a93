package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// rotatingIronic hands out one token, and once wiped rejects heartbeats
// with Ironic's 400, answers lookups 404 a few times (the node is active),
// then hands out a second token (the next operation started).
type rotatingIronic struct {
	mu          sync.Mutex
	tokens      []string
	issued      int
	wiped       bool
	notFound    int
	lookupQuery []string
	beats       []wire.HeartbeatRequest
	inspections []wire.InspectionData
}

func (f *rotatingIronic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/":
		json.NewEncoder(w).Encode(wire.RootDocument{DefaultVersion: wire.APIVersion{ID: "v1", Version: "1.82", MinVersion: "1.1"}})
	case r.URL.Path == "/v1/lookup":
		f.lookupQuery = append(f.lookupQuery, r.URL.RawQuery)
		if f.wiped && f.notFound > 0 {
			f.notFound--
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(wire.NewIronicError("Client", "Resource could not be found."))
			return
		}
		tok := wire.Masked
		if f.issued < len(f.tokens) && (f.issued == 0 || f.wiped) {
			tok = f.tokens[f.issued]
			f.issued++
			f.wiped = false
		}
		json.NewEncoder(w).Encode(wire.LookupResponse{
			Node:   wire.LookupNode{UUID: nodeUUID, Properties: map[string]any{}, InstanceInfo: map[string]any{}, DriverInternalInfo: map[string]any{}},
			Config: wire.LookupConfig{HeartbeatTimeout: 0.2, AgentToken: &tok, AgentTokenRequired: true},
		})
	case r.URL.Path == "/v1/heartbeat/"+nodeUUID:
		var hb wire.HeartbeatRequest
		json.NewDecoder(r.Body).Decode(&hb)
		f.beats = append(f.beats, hb)
		if f.wiped {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(wire.NewIronicError("Client", "Invalid or missing agent token received."))
			return
		}
		w.WriteHeader(http.StatusAccepted)
	case r.URL.Path == "/inspect":
		var d wire.InspectionData
		json.NewDecoder(r.Body).Decode(&d)
		f.inspections = append(f.inspections, d)
		json.NewEncoder(w).Encode(wire.InspectionResponse{UUID: nodeUUID})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (f *rotatingIronic) beatsWith(tok string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, b := range f.beats {
		if b.AgentToken == tok {
			n++
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNewLookupAfterIronicWipesTheToken is what a host or fast-track agent
// lives through between two operations: its heartbeats get 400, it looks
// the node up until a new token is handed out, and the API switches to the
// new token while keeping its command results.
func TestNewLookupAfterIronicWipesTheToken(t *testing.T) {
	const tokenA, tokenB = testToken, "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvu"
	f := &rotatingIronic{tokens: []string{tokenA, tokenB}}
	ironic := httptest.NewServer(f)
	defer ironic.Close()
	cfg := DefaultConfig()
	cfg.APIURLs = []string{ironic.URL}
	cfg.LookupMACs = []string{"52:54:00:12:34:56"}
	cfg.LookupInterval = 10 * time.Millisecond
	cfg.DiskWaitAttempts = 1
	cfg.EnableAutoTLS = false
	cfg.InspectionCallbackURL = ironic.URL + "/inspect"
	_, base := startAgent(t, cfg, &fakePower{})
	c := client{t: t, base: base, token: tokenA}
	waitUntil(t, "two heartbeats with the first token", func() bool { return f.beatsWith(tokenA) >= 2 })
	c.run("standby.sync", map[string]any{}, true)

	f.mu.Lock()
	f.wiped, f.notFound = true, 3
	f.mu.Unlock()
	waitUntil(t, "a heartbeat with the second token", func() bool { return f.beatsWith(tokenB) >= 1 })

	st, _ := c.post("standby.sync", map[string]any{}, true)
	if st != http.StatusUnauthorized {
		t.Fatalf("the old token still works: HTTP %d", st)
	}
	c.token = tokenB
	c.run("standby.sync", map[string]any{}, true)
	if l := c.list(); len(l) != 2 {
		t.Fatalf("command results lost across the new lookup: %+v", l)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// The inspection answer named the node, so every lookup carried it.
	for _, q := range f.lookupQuery {
		if q == "" || !strings.Contains(q, "node_uuid="+nodeUUID) {
			t.Errorf("lookup %q lacks node_uuid", q)
		}
	}
	if len(f.inspections) != 1 || len(f.inspections[0].Inventory) == 0 || f.inspections[0].Configuration.Collectors[0] != "default" {
		t.Fatalf("inspection data %+v", f.inspections)
	}
	var inv map[string]any
	json.Unmarshal(f.inspections[0].Inventory, &inv)
	if _, ok := inv["interfaces"]; !ok {
		t.Errorf("inventory %v", inv)
	}
}
