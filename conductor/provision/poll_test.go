package provision

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// TestDuePollsAreRateLimitedOldestFirst: with more writing nodes than the
// rate allows, each tick takes the nodes whose progress is oldest, up to
// the budget, and a node just refreshed (by a heartbeat) is not polled.
func TestDuePollsAreRateLimitedOldestFirst(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	p := newProgressPolls(5*time.Second, 40, func() time.Time { return now })
	// 100 nodes, node i last refreshed i ms after t0, recorded in an
	// order of their own; node-fresh just now.
	t0 := now.Add(-10 * time.Second)
	for _, i := range rand.Perm(100) {
		p.setLocked(fmt.Sprintf("node-%03d", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	p.track("node-fresh")
	// A tick is 250 ms: 40 polls/s give a budget of 10.
	due := p.due()
	if len(due) != 10 {
		t.Fatalf("%d polls in one tick, want 10", len(due))
	}
	for i, uuid := range due {
		if want := fmt.Sprintf("node-%03d", i); uuid != want {
			t.Fatalf("poll %d is %s, want %s (oldest first)", i, uuid, want)
		}
	}
	// The next tick takes the next ten; polled nodes wait a full interval.
	now = now.Add(250 * time.Millisecond)
	due = p.due()
	if len(due) != 10 || due[0] != "node-010" {
		t.Fatalf("second tick = %v", due)
	}
	for _, uuid := range due {
		if uuid == "node-fresh" {
			t.Fatal("a node refreshed by a heartbeat was polled")
		}
	}
	now = now.Add(250 * time.Millisecond)
	p.refreshed("node-020")
	if due = p.due(); due[0] != "node-021" {
		t.Fatalf("a refreshed node stays due: %v", due)
	}
	p.stop("node-031")
	now = now.Add(250 * time.Millisecond)
	if due = p.due(); due[0] != "node-032" {
		t.Fatalf("a node no longer written is polled: %v", due)
	}
}

// BenchmarkDuePolls is a tick of the poll schedule with 20,000 nodes
// writing (after a boot storm), none of them due.
func BenchmarkDuePolls(b *testing.B) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	p := newProgressPolls(5*time.Second, 40, func() time.Time { return now })
	for i := range 20000 {
		p.setLocked(fmt.Sprintf("node-%05d", i), now.Add(-time.Duration(20000-i)*time.Microsecond))
	}
	for b.Loop() {
		if due := p.due(); len(due) != 0 {
			b.Fatal(due)
		}
	}
}

func TestProgressMoved(t *testing.T) {
	old := &wire.Progress{Phase: "download", BytesWritten: 4096, BytesRead: 8192, UpdatedAt: 1}
	if progressMoved(old, &wire.Progress{Phase: "download", BytesWritten: 4096, BytesRead: 8192, UpdatedAt: 2}) {
		t.Error("a progress that only has a new timestamp counts as moved")
	}
	if !progressMoved(old, &wire.Progress{Phase: "download", BytesWritten: 8192, BytesRead: 8192}) {
		t.Error("more bytes written does not count as moved")
	}
	if !progressMoved(nil, &wire.Progress{Phase: "connect"}) {
		t.Error("a first progress does not count as moved")
	}
}
