package sqlite

import (
	"testing"
	"time"
)

// TestGatherCommitsALoneWriteAtOnce: a write with nothing queued behind
// it is its own batch, without waiting for the window.
func TestGatherCommitsALoneWriteAtOnce(t *testing.T) {
	ops := make(chan *writeOp)
	timer := stoppedTimer()
	done := make(chan []*writeOp)
	go func() { done <- gather(&writeOp{}, ops, MaxBatch, time.Hour, timer) }()
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
	b := gather(&writeOp{}, ops, 3, time.Hour, timer)
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
	if b := gather(&writeOp{}, ops, MaxBatch, time.Millisecond, timer); len(b) != 2 {
		t.Fatalf("batch of %d writes, want 2", len(b))
	}
	if timer.Stop() {
		t.Fatal("the timer was left running")
	}
	ops <- &writeOp{}
	if b := gather(&writeOp{}, ops, MaxBatch, time.Millisecond, timer); len(b) != 2 {
		t.Fatalf("second batch of %d writes, want 2", len(b))
	}
}

// TestGatherStopsAtTheLimit: a full batch is committed without waiting.
func TestGatherStopsAtTheLimit(t *testing.T) {
	ops := make(chan *writeOp, 4)
	for range 4 {
		ops <- &writeOp{}
	}
	if b := gather(&writeOp{}, ops, 3, time.Hour, stoppedTimer()); len(b) != 3 {
		t.Fatalf("batch of %d writes, want 3", len(b))
	}
	if len(ops) != 2 {
		t.Fatalf("%d writes left queued, want 2", len(ops))
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}
