package dashboard

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
)

// TestStoreHistoryShowsTheNewestOldestFirst reads recorded history from a
// real SQLite store: the newest Limit events, oldest first, every field
// carried over.
func TestStoreHistoryShowsTheNewestOldestFirst(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := st.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
			tx.AddHistory(store.HistoryEvent{Severity: store.SeverityInfo, EventType: "provisioning",
				Event: fmt.Sprintf("e%d", i), User: "alice", Conductor: "c1"})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := StoreHistory{Store: st, Limit: 3}.NodeHistory(ctx, n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Event)
		if e.UUID == "" || e.CreatedAt.IsZero() || e.User != "alice" || e.Conductor != "c1" || e.Severity != "INFO" || e.EventType != "provisioning" {
			t.Errorf("event %+v", e)
		}
	}
	if strings.Join(got, ",") != "e2,e3,e4" {
		t.Fatalf("events %v, want e2,e3,e4", got)
	}
	if _, err := (StoreHistory{Store: st}).NodeHistory(ctx, "nope"); err == nil {
		t.Fatal("history of an unknown node did not fail")
	}
}
