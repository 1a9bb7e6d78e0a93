package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// testHistory checks node history: events saved with the transaction
// that adds them (alone or with a node change), none when it fails,
// pages in both orders, one event by UUID, pruning per node, and the
// history deleted with its node.
func testHistory(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := &store.Node{Name: "a", Driver: "fake-hardware"}
	b := &store.Node{Name: "b", Driver: "fake-hardware"}
	for _, n := range []*store.Node{a, b} {
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	add := func(ident string, change bool, events ...string) {
		t.Helper()
		err := s.WithNodeLock(ctx, ident, func(tx store.Tx) error {
			if change {
				if _, err := tx.Node().Advance(statemachine.EvManage, time.Now()); err != nil {
					return err
				}
			}
			for _, e := range events {
				tx.AddHistory(store.HistoryEvent{Severity: store.SeverityInfo, EventType: "provisioning",
					Event: e, User: "alice", Conductor: "c1"})
			}
			return nil
		})
		if err != nil {
			t.Fatalf("add %v: %v", events, err)
		}
	}
	texts := func(evs []*store.HistoryEvent) string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Event)
		}
		return strings.Join(out, ",")
	}
	list := func(n *store.Node, q store.HistoryQuery) []*store.HistoryEvent {
		t.Helper()
		evs, err := s.NodeHistory(ctx, n.ID, q)
		if err != nil {
			t.Fatalf("NodeHistory(%s, %+v): %v", n.Name, q, err)
		}
		return evs
	}

	// An event alone (the node unchanged) is saved; so is one with a
	// change; a failed transaction saves none.
	before := time.Now().Add(-time.Second)
	add("a", false, "e1")
	add("a", true, "e2", "e3")
	if err := s.WithNodeLock(ctx, "a", func(tx store.Tx) error {
		tx.AddHistory(store.HistoryEvent{Severity: store.SeverityError, EventType: "x", Event: "lost"})
		return errors.New("rolled back")
	}); err == nil {
		t.Fatal("the failing transaction succeeded")
	}
	add("b", false, "b1")
	got := list(a, store.HistoryQuery{})
	if texts(got) != "e1,e2,e3" {
		t.Fatalf("history of a = %s, want e1,e2,e3", texts(got))
	}
	e := got[0]
	if _, err := uuid.Parse(e.UUID); err != nil || e.NodeID != a.ID || e.Severity != store.SeverityInfo ||
		e.EventType != "provisioning" || e.User != "alice" || e.Conductor != "c1" ||
		e.CreatedAt.Before(before) || e.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("event = %+v", e)
	}
	if n, _ := s.GetNode(ctx, "a"); n.ProvisionState != statemachine.Verifying {
		t.Fatalf("the change saved with the events is lost: %s", n.ProvisionState)
	}

	// Pages, both ways.
	if p := list(a, store.HistoryQuery{Limit: 2}); texts(p) != "e1,e2" {
		t.Fatalf("first page = %s", texts(p))
	}
	if p := list(a, store.HistoryQuery{Limit: 2, Marker: got[1].UUID}); texts(p) != "e3" {
		t.Fatalf("second page = %s", texts(p))
	}
	if p := list(a, store.HistoryQuery{Descending: true}); texts(p) != "e3,e2,e1" {
		t.Fatalf("newest first = %s", texts(p))
	}
	if p := list(a, store.HistoryQuery{Descending: true, Marker: got[1].UUID}); texts(p) != "e1" {
		t.Fatalf("newest first after e2 = %s", texts(p))
	}
	bEvents := list(b, store.HistoryQuery{})
	if _, err := s.NodeHistory(ctx, a.ID, store.HistoryQuery{Marker: bEvents[0].UUID}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("marker of another node: %v, want ErrNotFound", err)
	}

	// One event.
	one, err := s.NodeHistoryEvent(ctx, a.ID, strings.ToUpper(got[2].UUID))
	if err != nil || one.Event != "e3" || !one.CreatedAt.Equal(got[2].CreatedAt) {
		t.Fatalf("NodeHistoryEvent = %+v, %v", one, err)
	}
	if _, err := s.NodeHistoryEvent(ctx, b.ID, got[2].UUID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("event of another node: %v, want ErrNotFound", err)
	}

	// Pruning keeps each node's newest, within the limit.
	for i := 4; i <= 8; i++ {
		add("a", false, fmt.Sprintf("e%d", i))
	}
	if n, err := s.PruneHistory(ctx, 3, 2); err != nil || n != 2 {
		t.Fatalf("PruneHistory(3, 2) = %d, %v; want 2 deleted", n, err)
	}
	if n, err := s.PruneHistory(ctx, 3, 0); err != nil || n != 3 {
		t.Fatalf("PruneHistory(3, 0) = %d, %v; want 3 deleted", n, err)
	}
	if p := list(a, store.HistoryQuery{}); texts(p) != "e6,e7,e8" {
		t.Fatalf("after pruning a = %s", texts(p))
	}
	if p := list(b, store.HistoryQuery{}); texts(p) != "b1" {
		t.Fatalf("after pruning b = %s", texts(p))
	}

	// Deleting a node deletes its history.
	if err := s.WithNodeLock(ctx, "a", func(tx store.Tx) error {
		tx.AddHistory(store.HistoryEvent{Severity: store.SeverityInfo, EventType: "x", Event: "with the deletion"})
		return tx.DeleteNode(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.NodeHistory(ctx, a.ID, store.HistoryQuery{}); err != nil || len(p) != 0 {
		t.Fatalf("history of the deleted node = %s, %v", texts(p), err)
	}
	if n, err := s.PruneHistory(ctx, 0, 0); err != nil || n != 1 {
		t.Fatalf("PruneHistory(0, 0) = %d, %v; want b's one event", n, err)
	}
}
