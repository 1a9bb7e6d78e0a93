package lldp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fakePort plays frames to the listener and honours deadlines as a socket
// does. frames is read in order; after them it blocks until the deadline.
type fakePort struct {
	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{}
	frames   chan []byte
	closed   bool
}

func newFakePort(frames ...[]byte) *fakePort {
	p := &fakePort{changed: make(chan struct{}, 1), frames: make(chan []byte, len(frames))}
	for _, f := range frames {
		p.frames <- f
	}
	return p
}

func (p *fakePort) ReadFrame(b []byte) (int, error) {
	for {
		p.mu.Lock()
		d := p.deadline
		p.mu.Unlock()
		if !d.IsZero() && !time.Now().Before(d) {
			return 0, os.ErrDeadlineExceeded
		}
		var timer <-chan time.Time
		if !d.IsZero() {
			t := time.NewTimer(time.Until(d))
			defer t.Stop()
			timer = t.C
		}
		select {
		case f := <-p.frames:
			return copy(b, f), nil
		case <-timer:
		case <-p.changed:
		}
	}
}

func (p *fakePort) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
	return nil
}

func (p *fakePort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("closed twice")
	}
	p.closed = true
	return nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// listenerWith is a Listener whose sockets are the given fakes (a missing
// name cannot be opened).
func listenerWith(timeout time.Duration, ports map[string]*fakePort) Listener {
	return Listener{Timeout: timeout, Logger: quietLogger(), open: func(name string, _ *slog.Logger) (port, error) {
		p, ok := ports[name]
		if !ok {
			return nil, fmt.Errorf("lldp: interface %s: no such network interface", name)
		}
		return p, nil
	}}
}

// TestListenEachInterfaceOnItsOwn listens on three interfaces: one hears
// junk then a switch, one hears nothing, one cannot be opened. Each gets
// its own result, and every opened socket is closed.
func TestListenEachInterfaceOnItsOwn(t *testing.T) {
	truncated := frame(tlv(1, 4, 1), []byte{0x0a, 0xff})
	eno1 := newFakePort([]byte{1, 2, 3}, truncated, switchFrame())
	eno2 := newFakePort()
	res := listenerWith(200*time.Millisecond, map[string]*fakePort{"eno1": eno1, "eno2": eno2}).
		Listen(t.Context(), []string{"eno1", "eno2", "eno3"})
	if len(res) != 3 || res[0].Interface != "eno1" || res[1].Interface != "eno2" || res[2].Interface != "eno3" {
		t.Fatalf("results %+v", res)
	}
	if res[0].Err != nil || len(res[0].TLVs) != 11 || string(res[0].TLVs[4].Value) != "sw-rivet-01" {
		t.Errorf("eno1: %+v", res[0])
	}
	if res[1].Err != nil || res[1].TLVs != nil {
		t.Errorf("eno2 heard nothing, got %+v", res[1])
	}
	if res[2].Err == nil || res[2].TLVs != nil {
		t.Errorf("eno3 cannot be opened, got %+v", res[2])
	}
	if !eno1.closed || !eno2.closed {
		t.Error("a socket was left open")
	}
}

// TestListenStopsWithTheContext cancels the context while the listener
// waits out an hour-long timeout: it returns the context's error.
func TestListenStopsWithTheContext(t *testing.T) {
	eno1 := newFakePort()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan []Result)
	go func() {
		done <- listenerWith(time.Hour, map[string]*fakePort{"eno1": eno1}).Listen(ctx, []string{"eno1"})
	}()
	cancel()
	res := <-done
	if !errors.Is(res[0].Err, context.Canceled) || res[0].TLVs != nil || !eno1.closed {
		t.Fatalf("%+v closed=%v", res[0], eno1.closed)
	}
}

// floodPort delivers n hostile frames, then a switch's frame, without
// allocating: the listener's own memory is what is measured.
type floodPort struct {
	*fakePort
	hostile [][]byte
	n, sent int
	good    []byte
}

func (p *floodPort) ReadFrame(b []byte) (int, error) {
	if p.sent < p.n {
		f := p.hostile[p.sent%len(p.hostile)]
		p.sent++
		return copy(b, f), nil
	}
	if p.sent == p.n {
		p.sent++
		return copy(b, p.good), nil
	}
	return p.fakePort.ReadFrame(b)
}

// TestListenFloodKeepsMemoryBounded sends 20,000 hostile frames (oversized,
// truncated, thousands of TLVs, not LLDP) before the switch's: the
// listener drops them all, keeps the switch's, and allocates about the
// same whether 200 or 20,000 came first.
func TestListenFloodKeepsMemoryBounded(t *testing.T) {
	many := make([][]byte, 4000)
	for i := range many {
		many[i] = tlv(9)
	}
	notLLDP := switchFrame()
	notLLDP[12], notLLDP[13] = 0x08, 0x00
	hostile := [][]byte{
		frame(make([]byte, MaxFrameSize)), // over the limit: the read fills the whole buffer
		frame(tlv(1, 4, 1), []byte{0xff, 0xff}),
		frame(many...),
		notLLDP,
		frame(),
	}
	measure := func(n int) uint64 {
		p := &floodPort{fakePort: newFakePort(), hostile: hostile, n: n, good: switchFrame()}
		l := Listener{Timeout: time.Minute, Logger: quietLogger(), open: func(string, *slog.Logger) (port, error) { return p, nil }}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		res := l.Listen(t.Context(), []string{"eno1"})
		runtime.ReadMemStats(&after)
		if res[0].Err != nil || len(res[0].TLVs) != 11 || p.sent != n+1 {
			t.Fatalf("after %d hostile frames: %+v (%d read)", n, res[0], p.sent)
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := measure(200), measure(20000)
	perFrame := (large - min(small, large)) / (20000 - 200)
	t.Logf("allocated: %d bytes with 200 hostile frames first, %d with 20,000: %d bytes per extra frame", small, large, perFrame)
	// Each frame is checked in the one read buffer, without allocating;
	// nothing is kept from a refused frame. A handful of bytes per frame
	// would still be bounded by the timeout, but there are none.
	if perFrame > 16 {
		t.Errorf("%d bytes allocated per hostile frame", perFrame)
	}
}
