package provision

import (
	"fmt"
	"testing"
	"time"
)

// TestDuePollsAreRateLimitedOldestFirst: with more writing nodes than the
// rate allows, each tick takes the nodes whose progress is oldest, up to
// the budget, and a node just refreshed (by a heartbeat) is not polled.
func TestDuePollsAreRateLimitedOldestFirst(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	e := &Engine{cfg: Config{ProgressPollInterval: 5 * time.Second, ProgressPollRate: 40, Now: func() time.Time { return now }},
		writing: map[string]time.Time{}}
	// 100 nodes, node i last refreshed i ms after t0; node-fresh just now.
	t0 := now.Add(-10 * time.Second)
	for i := 0; i < 100; i++ {
		e.writing[fmt.Sprintf("node-%03d", i)] = t0.Add(time.Duration(i) * time.Millisecond)
	}
	e.writing["node-fresh"] = now
	// A tick is 250 ms: 40 polls/s give a budget of 10.
	due := e.duePolls(now)
	if len(due) != 10 {
		t.Fatalf("%d polls in one tick, want 10", len(due))
	}
	for i, uuid := range due {
		if want := fmt.Sprintf("node-%03d", i); uuid != want {
			t.Fatalf("poll %d is %s, want %s (oldest first)", i, uuid, want)
		}
	}
	// The next tick takes the next ten; polled nodes wait a full interval.
	due = e.duePolls(now.Add(250 * time.Millisecond))
	if len(due) != 10 || due[0] != "node-010" {
		t.Fatalf("second tick = %v", due)
	}
	for _, uuid := range due {
		if uuid == "node-fresh" {
			t.Fatal("a node refreshed by a heartbeat was polled")
		}
	}
	e.progressRefreshed("node-020")
	if due = e.duePolls(now.Add(500 * time.Millisecond)); due[0] != "node-021" {
		t.Fatalf("a refreshed node stays due: %v", due)
	}
}

func TestProgressMoved(t *testing.T) {
	old := map[string]any{"phase": "download", "bytes_written": float64(4096), "bytes_read": float64(8192), "updated_at": 1.0}
	if progressMoved(old, map[string]any{"phase": "download", "bytes_written": 4096, "bytes_read": 8192, "updated_at": 2.0}) {
		t.Error("a progress that only has a new timestamp counts as moved")
	}
	if !progressMoved(old, map[string]any{"phase": "download", "bytes_written": 8192, "bytes_read": 8192}) {
		t.Error("more bytes written does not count as moved")
	}
	if !progressMoved(nil, map[string]any{"phase": "connect"}) {
		t.Error("a first progress does not count as moved")
	}
}
