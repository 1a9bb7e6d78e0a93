package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// slowRamdisk answers lookups with a fresh token, each once its caller's
// context ends when hold is set (a lookup committed after the agent gave
// up), and records the tokens released.
type slowRamdisk struct {
	fakeProvisioner
	hold     atomic.Bool
	started  chan struct{}
	released chan string
	mu       sync.Mutex
	n        int
}

func (f *slowRamdisk) Lookup(ctx context.Context, _ []string, _ string, _ bool) (*store.Node, *string, error) {
	f.mu.Lock()
	f.n++
	tok := "token-" + string(rune('a'+f.n)) + "-0123456789012345678901234567890123"
	f.mu.Unlock()
	if f.hold.Load() {
		f.started <- struct{}{}
		<-ctx.Done()
	}
	return &store.Node{UUID: "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11"}, &tok, nil
}

func (f *slowRamdisk) ReleaseToken(_ context.Context, _ string, token string) error {
	f.released <- token
	return nil
}

// TestLookupReleasesUndeliveredToken: a lookup whose client gave up before
// the answer was written has its token released; a delivered one keeps it.
func TestLookupReleasesUndeliveredToken(t *testing.T) {
	rd := &slowRamdisk{started: make(chan struct{}, 1), released: make(chan string, 4)}
	a := newTestAPIWith(t, func(c *Config) { c.Ramdisk = rd })

	var lr wire.LookupResponse
	if st, _ := a.do("1.68", "GET", "/v1/lookup?addresses=52:54:00:00:00:01", nil, &lr); st != 200 ||
		lr.Config.AgentToken == nil || len(*lr.Config.AgentToken) < 32 {
		t.Fatalf("delivered lookup: %d %+v", st, lr)
	}

	rd.hold.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", a.srv.URL+"/v1/lookup?addresses=52:54:00:00:00:01", nil)
	req.Header.Set(wire.APIVersionHeader, "1.68")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-rd.started
	cancel() // the agent's request timeout
	if err := <-done; err == nil {
		t.Fatal("the cancelled lookup got an answer")
	}
	select {
	case tok := <-rd.released:
		if tok == *lr.Config.AgentToken || len(tok) < 32 {
			t.Fatalf("released %q, want the undelivered token", tok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the undelivered token was not released")
	}
	select {
	case tok := <-rd.released:
		t.Fatalf("a second release (%q): the delivered token was released too", tok)
	default:
	}
}

// trickyRamdisk answers every lookup with a node whose dicts hold what
// JSON encoders tell apart: HTML characters, non-ASCII and invalid UTF-8,
// nested arrays, numbers of every size.
type trickyRamdisk struct{ fakeProvisioner }

func (*trickyRamdisk) Lookup(context.Context, []string, string, bool) (*store.Node, *string, error) {
	tok := "tok-0123456789012345678901234567890123456789"
	return &store.Node{UUID: "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11",
		Properties: map[string]any{"root_device": map[string]any{"size": 10.0, "name": "/dev/<sda>&"},
			"big": 1e21, "small": 1e-7, "neg": -0.5, "list": []any{1.0, "ü\u2028", nil, true}},
		InstanceInfo:       map[string]any{"image_source": "http://img/disk.raw?a=1&b=2", "bad": "\xff\xfe"},
		DriverInternalInfo: map[string]any{"agent_secret_token": "secret", "clean_steps": []any{map[string]any{"step": "x"}}},
	}, &tok, nil
}

// TestLookupAnswerIsEncodingJSON: the lookup answer, written by
// segmentio/encoding, is byte for byte what encoding/json writes for the
// same document, sent with its length (not chunked).
func TestLookupAnswerIsEncodingJSON(t *testing.T) {
	a := newTestAPIWith(t, func(c *Config) { c.Ramdisk = &trickyRamdisk{} })
	req, _ := http.NewRequest("GET", a.srv.URL+"/v1/lookup?addresses=52:54:00:00:00:01", nil)
	req.Header.Set(wire.APIVersionHeader, "1.68")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	n, tok, _ := (&trickyRamdisk{}).Lookup(context.Background(), nil, "", true)
	srv := New(Config{Ramdisk: &trickyRamdisk{}, Conductor: "c1", Logger: slog.New(slog.DiscardHandler)})
	want, err := json.Marshal(wire.LookupResponse{Node: ironicjson.LookupNode(n, srv.opts(req, version{major: 1, minor: 68})),
		Config: srv.lookupConfig(tok)})
	if err != nil {
		t.Fatal(err)
	}
	if want = append(want, '\n'); !bytes.Equal(got, want) {
		t.Fatalf("lookup answer:\n%s\nencoding/json:\n%s", got, want)
	}
	if resp.ContentLength != int64(len(got)) || len(resp.TransferEncoding) != 0 {
		t.Fatalf("lookup answer of %d bytes sent with Content-Length %d, Transfer-Encoding %v", len(got), resp.ContentLength, resp.TransferEncoding)
	}
}

// urgencyRamdisk records whether its lookups' context marks their writes
// urgent.
type urgencyRamdisk struct {
	trickyRamdisk
	urgent chan bool
}

func (f *urgencyRamdisk) Lookup(ctx context.Context, macs []string, uuid string, withToken bool) (*store.Node, *string, error) {
	f.urgent <- store.IsUrgent(ctx)
	return f.trickyRamdisk.Lookup(ctx, macs, uuid, withToken)
}

// TestRequestWritesAreUrgent: the store sees the writes made while an API
// client waits (here an agent's lookup) as urgent, to commit them before
// the engine's background work.
func TestRequestWritesAreUrgent(t *testing.T) {
	rd := &urgencyRamdisk{urgent: make(chan bool, 1)}
	a := newTestAPIWith(t, func(c *Config) { c.Ramdisk = rd })
	var lr wire.LookupResponse
	// The trailing slash takes the path-rewriting branch as well.
	for _, path := range []string{"/v1/lookup?addresses=52:54:00:00:00:01", "/v1/lookup/?addresses=52:54:00:00:00:01"} {
		if st, _ := a.do("1.68", "GET", path, nil, &lr); st != 200 {
			t.Fatalf("%s: %d", path, st)
		}
		if !<-rd.urgent {
			t.Fatalf("%s: the lookup's context is not urgent", path)
		}
	}
}
