package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/cluster"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/postgres/pgtest"
)

func generation(t *testing.T, s *Store, node string) int {
	t.Helper()
	var g int
	err := s.pool.QueryRow(context.Background(), `SELECT l.generation FROM node_leases l
		JOIN nodes n ON n.id = l.node_id WHERE n.uuid = $1`, node).Scan(&g)
	if err != nil {
		t.Fatalf("generation of %s: %v", node, err)
	}
	return g
}

func leaseOf(t *testing.T, s *Store, node string) cluster.NodeLease {
	t.Helper()
	all, err := s.NodeLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range all {
		if l.NodeUUID == node {
			return l
		}
	}
	t.Fatalf("node %s not listed", node)
	return cluster.NodeLease{}
}

func TestLeases(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn) // two conductors' pools
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := a.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if l := leaseOf(t, a, n.UUID); l.Owner != "" || l.ProvisionState != statemachine.Enroll {
		t.Fatalf("new node's lease = %+v", l)
	}
	must := func(gen int64, ok bool, err error) bool {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	mustRelease := func(ok bool, err error) bool {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	ha, hb := cluster.Holder{Name: "a", Incarnation: "1"}, cluster.Holder{Name: "b", Incarnation: "1"}
	if !must(a.AcquireLease(ctx, n.UUID, ha, time.Hour)) {
		t.Fatal("a could not take a free lease")
	}
	if must(b.AcquireLease(ctx, n.UUID, hb, time.Hour)) {
		t.Fatal("b took a lease a holds")
	}
	if !must(a.AcquireLease(ctx, n.UUID, ha, time.Hour)) {
		t.Fatal("a could not renew its own lease")
	}
	if g := generation(t, a, n.UUID); g != 1 {
		t.Fatalf("generation %d after a renewal, want 1", g)
	}
	if must(a.AcquireLease(ctx, "00000000-0000-4000-8000-000000000000", ha, time.Hour)) {
		t.Fatal("lease taken on a node that does not exist")
	}

	// Let it expire: b may take it, and a's renewal then finds nothing.
	if !must(a.AcquireLease(ctx, n.UUID, ha, time.Millisecond)) {
		t.Fatal("a could not shorten its lease")
	}
	time.Sleep(20 * time.Millisecond)
	if l := leaseOf(t, b, n.UUID); l.Owner != "a" || !l.Expired {
		t.Fatalf("lease after its TTL = %+v, want a's, expired", l)
	}
	if !must(b.AcquireLease(ctx, n.UUID, hb, time.Hour)) {
		t.Fatal("b could not take an expired lease")
	}
	if g := generation(t, a, n.UUID); g != 2 {
		t.Fatalf("generation %d after a change of owner, want 2", g)
	}
	if got, err := a.RenewLeases(ctx, ha, time.Hour, false); err != nil || len(got) != 0 {
		t.Fatalf("a renews %v, %v after losing its lease", got, err)
	}
	if got, err := b.RenewLeases(ctx, hb, time.Hour, false); err != nil || !slices.Equal(got, []cluster.HeldLease{{NodeUUID: n.UUID, Generation: 2}}) {
		t.Fatalf("b renews %v, %v", got, err)
	}
	if h, err := a.LeaseHolder(ctx, n.UUID); err != nil || h != "b" {
		t.Fatalf("holder = %q, %v; want b", h, err)
	}

	// Release only in the given states.
	if mustRelease(b.ReleaseLease(ctx, n.UUID, hb, []statemachine.State{statemachine.Active})) {
		t.Fatal("released a lease of a node in enroll when only active was allowed")
	}
	if mustRelease(b.ReleaseLease(ctx, n.UUID, ha, []statemachine.State{statemachine.Enroll})) {
		t.Fatal("a released b's lease")
	}
	if mustRelease(b.ReleaseLease(ctx, n.UUID, cluster.Holder{Name: "b", Incarnation: "2"}, []statemachine.State{statemachine.Enroll})) {
		t.Fatal("another process of b released b's lease")
	}
	if !mustRelease(b.ReleaseLease(ctx, n.UUID, hb, []statemachine.State{statemachine.Enroll})) {
		t.Fatal("b could not release its lease")
	}
	if h, err := a.LeaseHolder(ctx, n.UUID); err != nil || h != "" {
		t.Fatalf("holder of a released lease = %q, %v", h, err)
	}
	if l := leaseOf(t, a, n.UUID); l.Owner != "" {
		t.Fatalf("released lease = %+v", l)
	}
	if !must(a.AcquireLease(ctx, n.UUID, ha, time.Hour)) {
		t.Fatal("a could not take a released lease")
	}

	// Deleting the node deletes its lease.
	if err := a.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	if got, err := a.RenewLeases(ctx, ha, time.Hour, false); err != nil || len(got) != 0 {
		t.Fatalf("renewed %v, %v after the node was deleted", got, err)
	}
}

// TestReleaseWaitsForNodeTransaction checks that a hand-over sees the state
// a node transaction in flight commits, never the one before it.
func TestReleaseWaitsForNodeTransaction(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.NewDatabase(t))
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	ha := cluster.Holder{Name: "a", Incarnation: "1"}
	if _, ok, err := s.AcquireLease(ctx, n.UUID, ha, time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	locked, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
			close(locked)
			<-release
			_, err := tx.Node().Advance(statemachine.EvManage, time.Now()) // enroll -> verifying
			return err
		})
	}()
	<-locked
	type result struct {
		ok  bool
		err error
	}
	res := make(chan result, 1)
	go func() {
		ok, err := s.ReleaseLease(ctx, n.UUID, ha, []statemachine.State{statemachine.Enroll})
		res <- result{ok, err}
	}()
	select {
	case r := <-res:
		t.Fatalf("release did not wait for the node transaction: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r := <-res; r.err != nil || r.ok {
		t.Fatalf("release = %+v; want not released (the node left enroll)", r)
	}
}

func TestConductorsRegistry(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.NewDatabase(t))
	for _, c := range []string{"b", "a"} {
		if err := s.Heartbeat(ctx, c, "http://127.0.0.1:6385"); err != nil {
			t.Fatal(err)
		}
	}
	if live, err := s.LiveConductors(ctx, time.Minute); err != nil || !slices.Equal(live, []string{"a", "b"}) {
		t.Fatalf("live = %v, %v", live, err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE conductors SET heartbeat_at = now() - interval '2 minutes' WHERE name = 'b'`); err != nil {
		t.Fatal(err)
	}
	if live, err := s.LiveConductors(ctx, time.Minute); err != nil || !slices.Equal(live, []string{"a"}) {
		t.Fatalf("live after b's heartbeat went stale = %v, %v", live, err)
	}
	n := &store.Node{Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	ha := cluster.Holder{Name: "a", Incarnation: "1"}
	if _, ok, err := s.AcquireLease(ctx, n.UUID, ha, time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := s.Leave(ctx, ha); err != nil {
		t.Fatal(err)
	}
	if live, _ := s.LiveConductors(ctx, time.Hour); !slices.Equal(live, []string{"b"}) {
		t.Fatalf("live after a left = %v", live)
	}
	if l := leaseOf(t, s, n.UUID); l.Owner != "" {
		t.Fatalf("a's lease after it left = %+v", l)
	}
}
