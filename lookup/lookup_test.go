package lookup

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

const goodToken = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"

// fakeIronic answers GET / and GET /v1/lookup from a script of statuses.
type fakeIronic struct {
	mu       sync.Mutex
	max      string
	statuses []int // one per lookup; the last repeats
	token    *string
	calls    []*http.Request
}

func (f *fakeIronic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/" {
		json.NewEncoder(w).Encode(wire.RootDocument{Name: "OpenStack Ironic API",
			DefaultVersion: wire.APIVersion{ID: "v1", MinVersion: "1.1", Version: f.max}})
		return
	}
	f.calls = append(f.calls, r.Clone(context.Background()))
	st := f.statuses[min(len(f.calls)-1, len(f.statuses)-1)]
	if st != 200 {
		w.WriteHeader(st)
		json.NewEncoder(w).Encode(wire.NewIronicError("Client", "Resource could not be found."))
		return
	}
	json.NewEncoder(w).Encode(wire.LookupResponse{
		Node:   wire.LookupNode{UUID: "1215c45f-5c01-4883-84e1-a2a82a7c8a52", Properties: map[string]any{"root_device": map[string]any{"size": 10}}},
		Config: wire.LookupConfig{HeartbeatTimeout: 300, AgentToken: f.token, AgentTokenRequired: true},
	})
}

func recordSleeps(waits *[]time.Duration) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		return ctx.Err()
	}
}

func TestLookupRetriesUntilTheNodeIsKnown(t *testing.T) {
	tok := goodToken
	f := &fakeIronic{max: "1.82", statuses: []int{404, 404, 400, 200}, token: &tok}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var waits []time.Duration
	res, err := Lookup(context.Background(), Config{APIURLs: []string{srv.URL}, MACs: []string{"52:54:00:12:34:56", "52:54:00:aa:bb:cc"},
		Sleep: recordSleeps(&waits)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Node.UUID != "1215c45f-5c01-4883-84e1-a2a82a7c8a52" || res.Token() != goodToken || res.Config.HeartbeatTimeout != 300 || res.MaxVersion != "1.82" {
		t.Fatalf("result = %+v", res)
	}
	if len(waits) != 3 || waits[1] < waits[0]/2 {
		t.Fatalf("waits = %v, want 3 growing backoffs", waits)
	}
	r := f.calls[0]
	if got := r.Header.Get(wire.APIVersionHeader); got != "1.62" {
		t.Errorf("lookup declared API %q, want 1.62", got)
	}
	if got := r.URL.Query().Get("addresses"); got != "52:54:00:12:34:56,52:54:00:aa:bb:cc" {
		t.Errorf("addresses = %q", got)
	}
}

func TestLookupConflictBackoff(t *testing.T) {
	tok := goodToken
	f := &fakeIronic{max: "1.82", statuses: []int{409, 409, 409, 409, 200}, token: &tok}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var waits []time.Duration
	if _, err := Lookup(context.Background(), Config{APIURLs: []string{srv.URL}, MACs: []string{"52:54:00:12:34:56"}, Sleep: recordSleeps(&waits)}); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 30 * time.Second, 30 * time.Second}
	if len(waits) != len(want) {
		t.Fatalf("waits = %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits = %v, want %v", waits, want)
		}
	}
}

func TestLookupMaskedTokenIsNotAccepted(t *testing.T) {
	masked := wire.Masked
	f := &fakeIronic{max: "1.82", statuses: []int{200}, token: &masked}
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, err := Lookup(context.Background(), Config{APIURLs: []string{srv.URL}, MACs: []string{"52:54:00:12:34:56"},
		Timeout: 300 * time.Millisecond, Interval: 50 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "already handed out") {
		t.Fatalf("err = %v", err)
	}
}

// TestLookupTimeoutNamesTheLastAnswer: when the deadline cuts the last
// attempt short, the error says why the lookups before it failed (the
// API's last answer), not that the deadline passed.
func TestLookupTimeoutNamesTheLastAnswer(t *testing.T) {
	masked := wire.Masked
	f := &fakeIronic{max: "1.82", statuses: []int{200}, token: &masked}
	var lookups atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && lookups.Add(1) > 1 {
			<-r.Context().Done() // the second lookup hangs past the deadline
			return
		}
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()
	_, err := Lookup(context.Background(), Config{APIURLs: []string{srv.URL}, MACs: []string{"52:54:00:12:34:56"},
		Timeout: 300 * time.Millisecond, Interval: 20 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "already handed out") {
		t.Fatalf("err = %v", err)
	}
}

// TestLookupTimeoutNamesTheLastUnansweredFailure: when no API ever
// answered (here the root document is not one; an untrusted certificate
// fails the same way) and the deadline cuts the last attempt short, the
// error names the failure before it, not the deadline.
func TestLookupTimeoutNamesTheLastUnansweredFailure(t *testing.T) {
	var roots atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if roots.Add(1) > 1 {
			<-r.Context().Done() // the second attempt hangs past the deadline
			return
		}
		io.WriteString(w, "<html>a proxy's error page</html>")
	}))
	defer srv.Close()
	_, err := Lookup(context.Background(), Config{APIURLs: []string{srv.URL}, MACs: []string{"52:54:00:12:34:56"},
		Timeout: 300 * time.Millisecond, Interval: 20 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "not a version document") {
		t.Fatalf("err = %v", err)
	}
	if roots.Load() < 2 {
		t.Fatalf("%d attempts; the deadline did not cut one short", roots.Load())
	}
}

func TestLookupOldAPIGetsNoToken(t *testing.T) {
	f := &fakeIronic{max: "1.46", statuses: []int{200}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, err := Lookup(context.Background(), Config{APIURLs: []string{srv.URL}, MACs: []string{"52:54:00:12:34:56"},
		Timeout: 200 * time.Millisecond, Interval: 50 * time.Millisecond})
	if !strings.Contains(err.Error(), "1.62 or later") {
		t.Fatalf("err = %v", err)
	}
	if got := f.calls[0].Header.Get(wire.APIVersionHeader); got != "1.46" {
		t.Fatalf("declared %q to a 1.46 server", got)
	}
}

func TestLookupFailsOverToTheNextURL(t *testing.T) {
	tok := goodToken
	f := &fakeIronic{max: "1.82", statuses: []int{200}, token: &tok}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	res, err := Lookup(context.Background(), Config{APIURLs: []string{deadURL, srv.URL}, MACs: []string{"52:54:00:12:34:56"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.APIURL != srv.URL {
		t.Fatalf("answered by %s", res.APIURL)
	}
}

func TestLookupNeedsSomethingToLookUp(t *testing.T) {
	if _, err := Lookup(context.Background(), Config{APIURLs: []string{"http://127.0.0.1:1"}}); err == nil {
		t.Fatal("lookup without MACs or UUID accepted")
	}
	if _, err := Lookup(context.Background(), Config{MACs: []string{"52:54:00:12:34:56"}}); err == nil {
		t.Fatal("lookup without API URL accepted")
	}
}

// FuzzParseAnswer: whatever the API answers a lookup with, the parse never
// panics, and an accepted answer names a node and carries a token the
// agent can use.
func FuzzParseAnswer(f *testing.F) {
	f.Add([]byte(`{"node":{"uuid":"1be26c0b-03f2-4d2e-ae87-c02d7f33c123","properties":{},"instance_info":{},"driver_internal_info":{}},"config":{"heartbeat_timeout":300,"agent_token":"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG","agent_token_required":true}}`))
	f.Add([]byte(`{"node":{"uuid":"x"},"config":{"agent_token":"******"}}`))
	f.Add([]byte(`{"node":{"uuid":"x"},"config":{"agent_token":null,"heartbeat_timeout":"300"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := parseAnswer(body, "http://127.0.0.1:6385", "1.82")
		if err != nil {
			return
		}
		if res.Node.UUID == "" || len(res.Token()) < MinTokenLength {
			t.Fatalf("accepted %s", body)
		}
	})
}
