package changefeed_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/postgres"
	"github.com/rivetmetal/rivet/conductor/store/postgres/pgtest"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
	"github.com/rivetmetal/rivet/conductor/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// The decorated store still is a conforming store.
func TestDecoratedStoreConforms(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return changefeed.New(openSQLite(t), changefeed.Config{}).Store()
	})
}

// feedWithNode is a feed of inner with node n1 created, its decorated
// store, and a subscription opened after the creation.
func feedWithNode(t *testing.T, inner store.Store) (store.Store, *store.Node, *changefeed.Subscription[changefeed.Change]) {
	t.Helper()
	feed := changefeed.New(inner, changefeed.Config{})
	st := feed.Store()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := st.CreateNode(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	sub := feed.Subscribe()
	t.Cleanup(sub.Close)
	return st, n, sub
}

// next waits for the subscription's next batch.
func next(t *testing.T, s *changefeed.Subscription[changefeed.Change]) ([]changefeed.Item[changefeed.Change], bool) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("no change published")
	}
	return s.Take()
}

func TestPublishesCommittedChangesOnly(t *testing.T) {
	ctx := context.Background()
	feed := changefeed.New(openSQLite(t), changefeed.Config{})
	st := feed.Store()
	sub := feed.Subscribe()
	defer sub.Close()

	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	items, _ := next(t, sub)
	if len(items) != 1 || items[0].Value.Kind != changefeed.NodeChanged || items[0].Value.Node.Name != "n1" ||
		items[0].Value.NodeUUID != n.UUID || items[0].Key != "node/"+n.UUID {
		t.Fatalf("create: %+v", items)
	}

	// A transition is published with the state as committed.
	err := st.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		_, err := tx.Node().Advance(statemachine.EvManage, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	items, _ = next(t, sub)
	if len(items) != 1 || items[0].Value.Node.ProvisionState != statemachine.Verifying {
		t.Fatalf("advance: %+v", items[0].Value.Node)
	}
	published := items[0].Value.Node

	// A transaction that changes nothing, or fails, publishes nothing.
	if err := st.WithNodeLock(ctx, "n1", func(tx store.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = st.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		tx.Node().LastError = "not saved"
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failed tx: %v", err)
	}
	// The published copy is the feed's: a writer changing its node later
	// does not change what subscribers read.
	err = st.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		tx.Node().Extra = map[string]any{"k": map[string]any{"deep": 1.0}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	items, _ = next(t, sub)
	if len(items) != 1 || items[0].Value.Node.LastError != "" || published.Extra["k"] != nil {
		t.Fatalf("after no-op, failed and changing txs: %d items, %+v", len(items), items[0].Value.Node)
	}

	// Ports.
	p := &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01"}
	if err := st.CreatePort(ctx, p); err != nil {
		t.Fatal(err)
	}
	items, _ = next(t, sub)
	if len(items) != 1 || items[0].Value.Kind != changefeed.PortChanged || items[0].Value.Port.Address != p.Address ||
		items[0].Value.NodeUUID != n.UUID {
		t.Fatalf("port create: %+v", items[0].Value)
	}
	if err := st.DeletePort(ctx, p.UUID); err != nil {
		t.Fatal(err)
	}
	items, _ = next(t, sub)
	if len(items) != 1 || items[0].Value.Kind != changefeed.PortDeleted || items[0].Value.NodeUUID != n.UUID {
		t.Fatalf("port delete: %+v", items[0].Value)
	}
	if err := st.DeletePort(ctx, p.UUID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("deleting a missing port: %v", err)
	}

	// Deletion.
	if err := st.WithNodeLock(ctx, "n1", func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	items, _ = next(t, sub)
	if len(items) != 1 || items[0].Value.Kind != changefeed.NodeDeleted || items[0].Value.NodeUUID != n.UUID {
		t.Fatalf("delete: %+v", items[0].Value)
	}
	select {
	case <-sub.Ready():
		if items, resync := sub.Take(); len(items) != 0 || resync {
			t.Fatalf("unexpected changes: %+v", items)
		}
	default:
	}
}

// Many writers on one node: a subscriber sees the node's states in commit
// order (a counter that never goes back) and ends on the committed state.
func TestChangesOfANodeArriveInCommitOrder(t *testing.T) {
	ctx := context.Background()
	st, n, sub := feedWithNode(t, openSQLite(t))

	const writers, each = 8, 40
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := st.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
					c, _ := tx.Node().Extra["count"].(float64)
					tx.Node().Extra = map[string]any{"count": c + 1}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	last := 0.0
	for last < writers*each {
		select {
		case <-sub.Ready():
		case <-time.After(30 * time.Second):
			t.Fatalf("stuck at count %v", last)
		}
		items, resync := sub.Take()
		if resync {
			t.Fatal("unexpected resync")
		}
		for _, it := range items {
			c := it.Value.Node.Extra["count"].(float64)
			if c <= last {
				t.Fatalf("count went from %v to %v", last, c)
			}
			last = c
		}
	}
	<-done
}

// Two conductors on one PostgreSQL database: each one's subscribers see
// the other's commits, marked Remote, and nothing twice of their own.
func TestPeersSeeEachOthersCommitsOnPostgreSQL(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() (*changefeed.Feed, store.Store) {
		t.Helper()
		st, err := openPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f := changefeed.New(st, changefeed.Config{PeerFlushInterval: 10 * time.Millisecond})
		if !f.Shared() {
			t.Fatal("PostgreSQL feed is not shared")
		}
		return f, f.Store()
	}
	fa, sa := open()
	fb, _ := open()
	subA, subB := fa.Subscribe(), fb.Subscribe()
	defer subA.Close()
	defer subB.Close()
	fa.Start(ctx)
	defer fa.Close()
	fb.Start(ctx)
	defer fb.Close()

	// Each resyncs once it listens (it may have missed changes before).
	for _, s := range []*changefeed.Subscription[changefeed.Change]{subA, subB} {
		if _, resync := next(t, s); !resync {
			t.Fatal("no resync when the feed started listening")
		}
	}

	n := &store.Node{Name: "shared", Driver: "fake-hardware"}
	if err := sa.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	c := waitFor(t, subB, func(c changefeed.Change) bool { return c.Kind == changefeed.NodeChanged })
	if !c.Remote || c.Node == nil || c.Node.Name != "shared" {
		t.Fatalf("B saw %+v", c)
	}
	err := sa.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
		tx.Node().LastError = "from A"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c = waitFor(t, subB, func(c changefeed.Change) bool { return c.Node != nil && c.Node.LastError == "from A" })
	if !c.Remote {
		t.Fatalf("B saw %+v", c)
	}
	if err := sa.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:02"}); err != nil {
		t.Fatal(err)
	}
	c = waitFor(t, subB, func(c changefeed.Change) bool { return c.Kind == changefeed.PortChanged })
	if c.NodeUUID != n.UUID {
		t.Fatalf("B saw port change %+v", c)
	}
	if err := sa.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, subB, func(c changefeed.Change) bool { return c.Kind == changefeed.NodeDeleted && c.NodeUUID == n.UUID })

	// A saw its own changes once each, never as Remote.
	// Nothing to wait for: A published before its writes returned.
	seen := 0
	for {
		select {
		case <-subA.Ready():
			items, resync := subA.Take()
			if resync {
				continue
			}
			for _, it := range items {
				if it.Value.Remote {
					t.Fatalf("A saw its own change as remote: %+v", it.Value)
				}
				seen++
			}
			continue
		default:
		}
		break
	}
	if seen == 0 {
		t.Fatal("A saw none of its own changes")
	}
}

// waitFor takes changes until one satisfies ok.
func waitFor(t *testing.T, s *changefeed.Subscription[changefeed.Change], ok func(changefeed.Change) bool) changefeed.Change {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-s.Ready():
		case <-deadline:
			t.Fatal("change not seen")
		}
		items, _ := s.Take()
		for _, it := range items {
			if ok(it.Value) {
				return it.Value
			}
		}
	}
}

func ExampleFeed() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "changefeed-example-")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(ctx, filepath.Join(dir, "rivet.db"))
	feed := changefeed.New(db, changefeed.Config{})
	st := feed.Store() // give this to the engine and the API
	defer st.Close()
	sub := feed.Subscribe()
	defer sub.Close()

	_ = st.CreateNode(ctx, &store.Node{Name: "n1", Driver: "fake-hardware"})
	<-sub.Ready()
	items, _ := sub.Take()
	fmt.Println(items[0].Value.Kind, items[0].Value.Node.Name)
	// Output: node_changed n1
}

func openPostgres(ctx context.Context, dsn string) (*postgres.Store, error) {
	return postgres.Open(ctx, dsn)
}

// plainStore hides the SQLite store's committed snapshots: the feed copies
// the node itself.
type plainStore struct{ store.Store }

// TestPublishedNodeIsTheCommittedOne: whether the store hands over its
// committed snapshot (SQLite) or the feed copies the node, subscribers get
// the node as committed, and a writer that keeps its transaction's node and
// changes it afterwards (as callers of WithNodeLock own it) changes nothing
// they read.
func TestPublishedNodeIsTheCommittedOne(t *testing.T) {
	for name, inner := range map[string]func(t *testing.T) store.Store{
		"committed snapshot": func(t *testing.T) store.Store { return openSQLite(t) },
		"feed's copy":        func(t *testing.T) store.Store { return plainStore{openSQLite(t)} },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st, _, sub := feedWithNode(t, inner(t))
			var kept *store.Node
			err := st.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
				kept = tx.Node()
				kept.Description = "committed"
				kept.Extra = map[string]any{"k": map[string]any{"deep": 1.0}}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			kept.Description = "changed after the commit"
			kept.Extra["k"].(map[string]any)["deep"] = 2.0
			items, _ := next(t, sub)
			got := items[len(items)-1].Value.Node
			want, err := st.GetNode(ctx, "n1")
			if err != nil {
				t.Fatal(err)
			}
			if got.Description != "committed" || got.Extra["k"].(map[string]any)["deep"] != 1.0 {
				t.Fatalf("published %q, %v", got.Description, got.Extra)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("published node differs from the committed one:\n%+v\n%+v", got, want)
			}
		})
	}
}

// TestDecoratedStoreNamesNodesWithoutReading: the feed's store passes a
// look-up by MAC for the node's UUID through to the inner store's
// NodeNamer instead of reading the node.
func TestDecoratedStoreNamesNodesWithoutReading(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	storetest.NamingPassesThrough(t, st, func(s store.Store) store.Store { return changefeed.New(s, changefeed.Config{}).Store() })
}
