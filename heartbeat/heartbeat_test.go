package heartbeat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

type recorder struct {
	mu     sync.Mutex
	beats  []wire.HeartbeatRequest
	times  []time.Time
	hdr    []http.Header
	status int
	fault  string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var hb wire.HeartbeatRequest
	json.NewDecoder(req.Body).Decode(&hb)
	r.mu.Lock()
	r.beats = append(r.beats, hb)
	r.times = append(r.times, time.Now())
	r.hdr = append(r.hdr, req.Header.Clone())
	st, fault := r.status, r.fault
	r.mu.Unlock()
	if st != 0 {
		w.WriteHeader(st)
		json.NewEncoder(w).Encode(wire.NewIronicError("Client", fault))
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.beats)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHeartbeatBodyAndHeaders(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	b := New(Config{APIURL: srv.URL, NodeUUID: "node-1", CallbackURL: "http://10.0.2.15:9999", Token: "tok", AgentVersion: "10.0.0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, func() bool { return rec.count() >= 1 })
	cancel()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	got := rec.beats[0]
	if got != (wire.HeartbeatRequest{CallbackURL: "http://10.0.2.15:9999", AgentToken: "tok", AgentVersion: "10.0.0"}) {
		t.Fatalf("body = %+v", got)
	}
	if v := rec.hdr[0].Get(wire.APIVersionHeader); v != "1.68" {
		t.Fatalf("version header %q", v)
	}
}

func TestHeartbeatIntervals(t *testing.T) {
	b := New(Config{Timeout: 100 * time.Second, Rand: func() float64 { return 0.5 }})
	if got := b.NextInterval(true); got.Round(time.Millisecond) != 45*time.Second {
		t.Fatalf("after success: %v, want 100 s × 0.45", got)
	}
	if got := b.NextInterval(false); got != 7500*time.Millisecond {
		t.Fatalf("after error: %v, want 5 s × 1.5", got)
	}
	lo := New(Config{Timeout: 100 * time.Second, Rand: func() float64 { return 0 }})
	hi := New(Config{Timeout: 100 * time.Second, Rand: func() float64 { return 0.999999 }})
	if lo.NextInterval(true) != 30*time.Second || hi.NextInterval(true) > 60*time.Second {
		t.Fatal("jitter outside 0.3–0.6 × timeout")
	}
}

// TestHeartbeatTriggerIsRateLimited forces beats faster than allowed and
// checks they are spaced by the forced interval (scaled down to 20 ms).
func TestHeartbeatTriggerIsRateLimited(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	b := New(Config{APIURL: srv.URL, NodeUUID: "n", Timeout: time.Hour, ForcedInterval: 20 * time.Millisecond, Rand: func() float64 { return 0 }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, func() bool { return rec.count() == 1 })
	for i := 0; i < 100; i++ {
		b.Trigger()
		time.Sleep(time.Millisecond)
	}
	waitFor(t, func() bool { return rec.count() >= 3 })
	cancel()
	<-done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// 100 triggers over at least 100 ms give at most about 6 beats at 20 ms
	// spacing, not 100; and no two beats closer than the forced interval.
	if len(rec.beats) > 12 {
		t.Fatalf("%d beats for 100 triggers: forced beats not rate-limited", len(rec.beats))
	}
	for i := 1; i < len(rec.times); i++ {
		if gap := rec.times[i].Sub(rec.times[i-1]); gap < 19*time.Millisecond {
			t.Fatalf("beats %d and %d only %v apart, want >= 20ms", i-1, i, gap)
		}
	}
}

func TestHeartbeatErrorRetriesSooner(t *testing.T) {
	rec := &recorder{status: http.StatusBadRequest, fault: `Detected change in ramdisk provided "callback_url"`}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	var mu sync.Mutex
	var statuses []int
	b := New(Config{APIURL: srv.URL, NodeUUID: "n", Timeout: time.Hour, ErrorInterval: 10 * time.Millisecond,
		OnBeat: func(st int, err error) {
			mu.Lock()
			statuses = append(statuses, st)
			mu.Unlock()
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	// With a one-hour timeout, only the error interval can produce more
	// beats within the test's deadline.
	waitFor(t, func() bool { return rec.count() >= 3 })
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if statuses[0] != http.StatusBadRequest {
		t.Fatalf("OnBeat statuses = %v", statuses)
	}
}

// TestHeartbeatAnswers checks what each of Ironic's answers leads to: a
// token or node rejection ends Run (a new lookup is needed), anything else
// is retried.
func TestHeartbeatAnswers(t *testing.T) {
	cases := []struct {
		status  int
		fault   string
		wantErr error // nil: Run keeps beating
	}{
		{http.StatusBadRequest, "Invalid or missing agent token received.", ErrTokenRejected},
		{http.StatusBadRequest, "Agent token is required for heartbeat processing.", ErrTokenRejected},
		{http.StatusNotFound, "Node 1be26c0b could not be found.", ErrNodeNotFound},
		{http.StatusConflict, "Node 1be26c0b is locked by host conductor-1", nil},
		{http.StatusServiceUnavailable, "No free conductor workers available", nil},
		{http.StatusBadRequest, `Detected change in ramdisk provided "callback_url"`, nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d %s", c.status, c.fault), func(t *testing.T) {
			rec := &recorder{status: c.status, fault: c.fault}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			b := New(Config{APIURL: srv.URL, NodeUUID: "n", Timeout: time.Hour, ErrorInterval: 5 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx) }()
			if c.wantErr != nil {
				err := <-done
				if !errors.Is(err, c.wantErr) || rec.count() != 1 {
					t.Fatalf("Run = %v after %d beats, want %v after 1", err, rec.count(), c.wantErr)
				}
				return
			}
			waitFor(t, func() bool { return rec.count() >= 3 })
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v", err)
			}
		})
	}
}
