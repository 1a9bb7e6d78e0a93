package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
)

// TestGatherCommitsALoneWriteAtOnce: a write with nothing queued behind
// it is its own batch, without waiting for the window.
func TestGatherCommitsALoneWriteAtOnce(t *testing.T) {
	ops := make(chan *writeOp)
	timer := stoppedTimer()
	done := make(chan []*writeOp)
	go func() { done <- gather(&writeOp{}, nil, ops, MaxBatch, time.Hour, timer) }()
	select {
	case b := <-done:
		if len(b) != 1 {
			t.Fatalf("batch of %d writes, want 1", len(b))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a lone write waited for the gather window")
	}
}

// TestGatherWaitsForMoreUnderLoad: a write found with others queued waits
// for the writes that arrive within the window, up to the limit.
func TestGatherWaitsForMoreUnderLoad(t *testing.T) {
	ops := make(chan *writeOp, 2)
	ops <- &writeOp{}
	timer := stoppedTimer()
	sent := make(chan struct{})
	late := &writeOp{}
	go func() {
		// Sent once gather has taken the queued one and waits.
		for len(ops) > 0 {
			time.Sleep(time.Millisecond)
		}
		ops <- late
		close(sent)
	}()
	b := gather(&writeOp{}, nil, ops, 3, time.Hour, timer)
	<-sent
	if len(b) != 3 || b[2] != late {
		t.Fatalf("batch of %d writes, want the first, the queued one and the late one", len(b))
	}
}

// TestGatherWindowEnds: without more writes the batch is committed when
// the window ends, and the timer is left stopped for the next batch.
func TestGatherWindowEnds(t *testing.T) {
	ops := make(chan *writeOp, 1)
	ops <- &writeOp{}
	timer := stoppedTimer()
	if b := gather(&writeOp{}, nil, ops, MaxBatch, time.Millisecond, timer); len(b) != 2 {
		t.Fatalf("batch of %d writes, want 2", len(b))
	}
	if timer.Stop() {
		t.Fatal("the timer was left running")
	}
	ops <- &writeOp{}
	if b := gather(&writeOp{}, nil, ops, MaxBatch, time.Millisecond, timer); len(b) != 2 {
		t.Fatalf("second batch of %d writes, want 2", len(b))
	}
}

// TestGatherStopsAtTheLimit: a full batch is committed without waiting.
func TestGatherStopsAtTheLimit(t *testing.T) {
	ops := make(chan *writeOp, 4)
	for range 4 {
		ops <- &writeOp{}
	}
	if b := gather(&writeOp{}, nil, ops, 3, time.Hour, stoppedTimer()); len(b) != 3 {
		t.Fatalf("batch of %d writes, want 3", len(b))
	}
	if len(ops) != 2 {
		t.Fatalf("%d writes left queued, want 2", len(ops))
	}
}

// TestGatherTakesUrgentWritesFirst: writes a client waits for go into the
// batch before the others queued, whichever came first; the others wait
// for the next batch.
func TestGatherTakesUrgentWritesFirst(t *testing.T) {
	ops, urgent := make(chan *writeOp, 4), make(chan *writeOp, 2)
	for range 4 {
		ops <- &writeOp{}
	}
	u1, u2 := &writeOp{}, &writeOp{}
	urgent <- u1
	urgent <- u2
	b := gather(&writeOp{}, urgent, ops, 3, time.Hour, stoppedTimer())
	if len(b) != 3 || b[1] != u1 || b[2] != u2 {
		t.Fatalf("batch %v, want the first write and then the two urgent ones", b)
	}
	if len(ops) != 4 {
		t.Fatalf("%d other writes left queued, want 4", len(ops))
	}
	// Within the window an urgent write joins like any other.
	late := &writeOp{}
	go func() {
		for len(ops) > 0 {
			time.Sleep(time.Millisecond)
		}
		urgent <- late
	}()
	b = gather(&writeOp{}, urgent, ops, 6, time.Hour, stoppedTimer())
	if len(b) != 6 || b[5] != late {
		t.Fatalf("batch of %d writes, want the first, the four queued and the late urgent one", len(b))
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// TestUrgentWritesQueueApart: a write whose context is marked urgent is
// queued for the committer apart from the others.
func TestUrgentWritesQueueApart(t *testing.T) {
	s := &Store{ops: make(chan *writeOp), urgent: make(chan *writeOp), stop: make(chan struct{})}
	for _, urgent := range []bool{true, false} {
		ctx := context.Background()
		if urgent {
			ctx = store.Urgent(ctx)
		}
		done := make(chan error, 1)
		go func() { done <- s.do(ctx, nil) }()
		var op *writeOp
		select {
		case op = <-s.urgent:
			if !urgent {
				t.Fatal("a write without urgency was queued as urgent")
			}
		case op = <-s.ops:
			if urgent {
				t.Fatal("an urgent write was queued with the others")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the write was not queued")
		}
		op.done <- nil
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
