package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/cluster"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/postgres/pgtest"
)

// fencedWrite sets the node's description in a transaction checked
// against f.
func fencedWrite(ctx context.Context, s *Store, uuid string, f store.Fence, desc string) error {
	return s.WithNodeLock(ctx, uuid, func(tx store.Tx) error {
		if err := tx.CheckFence(ctx, f); err != nil {
			return err
		}
		tx.Node().Description = desc
		return nil
	})
}

func description(t *testing.T, s *Store, uuid string) string {
	t.Helper()
	n, err := s.GetNode(context.Background(), uuid)
	if err != nil {
		t.Fatal(err)
	}
	return n.Description
}

// TestCheckFence: a transaction commits only under the lease's current
// holder and generation, unexpired; a takeover waits for a fenced
// transaction in flight and then fences its holder out.
func TestCheckFence(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := a.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	ha, hb := cluster.Holder{Name: "a", Incarnation: "1"}, cluster.Holder{Name: "b", Incarnation: "1"}
	gen, ok, err := a.AcquireLease(ctx, n.UUID, ha, time.Hour)
	if !ok || err != nil || gen != 1 {
		t.Fatalf("acquire = %d, %v, %v", gen, ok, err)
	}
	fa := store.Fence{Owner: "a", Generation: 1}
	if err := fencedWrite(ctx, a, n.UUID, fa, "a1"); err != nil {
		t.Fatalf("write under the holder's fence: %v", err)
	}
	for _, f := range []store.Fence{{Owner: "a", Generation: 2}, {Owner: "b", Generation: 1}} {
		if err := fencedWrite(ctx, a, n.UUID, f, "wrong"); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("write under %+v = %v, want ErrFenced", f, err)
		}
	}
	if d := description(t, a, n.UUID); d != "a1" {
		t.Fatalf("description %q after refused writes", d)
	}

	// A transaction under a's fence is in flight when a's lease runs out
	// and b takes it: the takeover waits for it, then a is fenced out.
	if _, _, err := a.AcquireLease(ctx, n.UUID, ha, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checked, commit := make(chan struct{}), make(chan struct{})
	var commitOnce sync.Once
	release := func() { commitOnce.Do(func() { close(commit) }) }
	t.Cleanup(release)
	done := make(chan error, 1)
	go func() {
		done <- a.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
			if err := tx.CheckFence(ctx, fa); err != nil {
				return err
			}
			close(checked)
			<-commit
			tx.Node().Description = "a2"
			return nil
		})
	}()
	<-checked
	time.Sleep(400 * time.Millisecond) // a's lease has expired (database clock)
	type took struct {
		gen int64
		ok  bool
		err error
	}
	res := make(chan took, 1)
	go func() {
		g, ok, err := b.AcquireLease(ctx, n.UUID, hb, time.Hour)
		res <- took{g, ok, err}
	}()
	select {
	case r := <-res:
		t.Fatalf("takeover did not wait for the fenced transaction: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("the transaction checked before the expiry: %v", err)
	}
	if r := <-res; r.err != nil || !r.ok || r.gen != 2 {
		t.Fatalf("takeover = %+v", r)
	}
	if d := description(t, b, n.UUID); d != "a2" {
		t.Fatalf("the new holder reads %q, not what the old one committed", d)
	}
	if err := fencedWrite(ctx, a, n.UUID, fa, "stale"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("old holder's write after the takeover = %v, want ErrFenced", err)
	}
	if err := fencedWrite(ctx, b, n.UUID, store.Fence{Owner: "b", Generation: 2}, "b1"); err != nil {
		t.Fatal(err)
	}

	// An expired lease fences its holder out even before anyone takes it.
	if _, _, err := b.AcquireLease(ctx, n.UUID, hb, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := fencedWrite(ctx, b, n.UUID, store.Fence{Owner: "b", Generation: 2}, "late"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("write under an expired lease = %v, want ErrFenced", err)
	}
	if d := description(t, b, n.UUID); d != "b1" {
		t.Fatalf("description %q", d)
	}
}

// TestPausedTransactionDoesNotBlockTakeover: a holder paused inside a
// fenced transaction (its lease row held FOR SHARE) makes a takeover fail
// fast rather than hang; once the server ends the idle session, the
// takeover goes through and the paused holder's commit fails.
func TestPausedTransactionDoesNotBlockTakeover(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	a := open(t, dsn+"&idle_in_transaction_session_timeout=4000")
	b := open(t, dsn)
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := a.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	ha, hb := cluster.Holder{Name: "a", Incarnation: "1"}, cluster.Holder{Name: "b", Incarnation: "1"}
	if _, _, err := a.AcquireLease(ctx, n.UUID, ha, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checked, resume := make(chan struct{}), make(chan struct{})
	var resumeOnce sync.Once
	unpause := func() { resumeOnce.Do(func() { close(resume) }) }
	t.Cleanup(unpause) // before the stores close, on any failure
	done := make(chan error, 1)
	go func() {
		done <- a.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
			if err := tx.CheckFence(ctx, store.Fence{Owner: "a", Generation: 1}); err != nil {
				return err
			}
			close(checked)
			<-resume // "paused": idle in the transaction
			tx.Node().Description = "paused"
			return nil
		})
	}()
	<-checked
	time.Sleep(200 * time.Millisecond) // a's lease has expired
	if _, ok, err := b.AcquireLease(ctx, n.UUID, hb, time.Hour); err == nil || ok {
		t.Fatalf("takeover while the row is held = %v, %v; want a lock timeout", ok, err)
	}
	// The server ends a's idle session after 4 s; the takeover then
	// succeeds.
	deadline := time.Now().Add(30 * time.Second)
	for {
		gen, ok, err := b.AcquireLease(ctx, n.UUID, hb, time.Hour)
		if ok && err == nil {
			if gen != 2 {
				t.Fatalf("generation %d after the takeover", gen)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("takeover still failing: %v, %v", ok, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	unpause()
	if err := <-done; err == nil {
		t.Fatal("the paused holder's transaction committed after its session was ended")
	}
	if d := description(t, b, n.UUID); d == "paused" {
		t.Fatal("the paused holder's write reached the database")
	}
}

// TestRestartAdoptsLeases: a new process of a conductor adopts the
// unexpired leases of its previous one with a new generation; the
// previous process can neither renew nor retake them.
func TestRestartAdoptsLeases(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.NewDatabase(t))
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	old, cur := cluster.Holder{Name: "a", Incarnation: "old"}, cluster.Holder{Name: "a", Incarnation: "new"}
	if _, ok, err := s.AcquireLease(ctx, n.UUID, old, time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if got, err := s.RenewLeases(ctx, cur, time.Hour, false); err != nil || len(got) != 0 {
		t.Fatalf("renew without adopting = %v, %v", got, err)
	}
	if _, ok, err := s.AcquireLease(ctx, n.UUID, cur, time.Hour); ok || err != nil {
		t.Fatalf("acquire of another incarnation's lease = %v, %v", ok, err)
	}
	got, err := s.RenewLeases(ctx, cur, time.Hour, true)
	if err != nil || len(got) != 1 || got[0] != (cluster.HeldLease{NodeUUID: n.UUID, Generation: 2}) {
		t.Fatalf("adopt = %v, %v", got, err)
	}
	if got, err := s.RenewLeases(ctx, old, time.Hour, false); err != nil || len(got) != 0 {
		t.Fatalf("the old process renews %v, %v", got, err)
	}
	if _, ok, err := s.AcquireLease(ctx, n.UUID, old, time.Hour); ok || err != nil {
		t.Fatalf("the old process retakes the lease: %v, %v", ok, err)
	}
	if err := fencedWrite(ctx, s, n.UUID, store.Fence{Owner: "a", Generation: 1}, "old"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("old process's write = %v, want ErrFenced", err)
	}
}
