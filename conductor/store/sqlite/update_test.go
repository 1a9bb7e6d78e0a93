package sqlite

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// TestUpdateNodeStatements checks every variant of the node UPDATE: it
// sets the indexed columns its mask names and no others, every other
// column but id, and takes exactly the arguments updateNodeChanged gives
// it.
func TestUpdateNodeStatements(t *testing.T) {
	cols := strings.Split(strings.TrimPrefix(nodeColumns, "id, "), ",")
	indexed := []string{"uuid", "name", "provision_state"}
	for mask, q := range updateNodes {
		for k, c := range indexed {
			if got, want := strings.Contains(q, " "+c+" = ?"), mask&(1<<k) != 0; got != want {
				t.Errorf("mask %03b: sets %s: %v, want %v\n%s", mask, c, got, want, q)
			}
		}
		for _, c := range cols {
			c = strings.TrimSpace(c)
			if !strings.Contains(q, " "+c+" = ?") && !slices.Contains(indexed, c) {
				t.Errorf("mask %03b: %s not set\n%s", mask, c, q)
			}
		}
		before := make([]any, len(cols))
		after := make([]any, len(cols))
		for i := range cols {
			before[i], after[i] = "same", "same"
		}
		for k, c := range indexedColumns {
			if mask&(1<<k) != 0 {
				after[c] = "changed"
			}
		}
		gotQ, args := updateNodeChanged(before, after, 7, "version")
		if gotQ != q {
			t.Errorf("mask %03b: updateNodeChanged chose\n%s", mask, gotQ)
		}
		if n := strings.Count(q, "?"); len(args) != n {
			t.Errorf("mask %03b: %d arguments for %d placeholders", mask, len(args), n)
		}
		if args[len(args)-2] != int64(7) || args[len(args)-1] != "version" {
			t.Errorf("mask %03b: arguments end %v", mask, args[len(args)-2:])
		}
	}
}

// TestNodeWritesKeepIndexes writes nodes through transactions that change
// none, one or several of the indexed columns, and checks that lookups by
// every index see each write, that a name already taken is still refused,
// and that the file's indexes agree with its rows.
func TestNodeWritesKeepIndexes(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	a, b := createNode(t, s, "a"), createNode(t, s, "b")
	write := func(ident string, fn func(n *store.Node) error) error {
		return s.WithNodeLock(ctx, ident, func(tx store.Tx) error { return fn(tx.Node()) })
	}
	// No indexed column changes.
	if err := write("a", func(n *store.Node) error { n.SetInternal("agent_url", "http://127.0.0.1:9999"); return nil }); err != nil {
		t.Fatal(err)
	}
	// The state alone.
	if err := write("a", func(n *store.Node) error { n.ProvisionState = statemachine.Manageable; return nil }); err != nil {
		t.Fatal(err)
	}
	// The name alone, then the name and the state.
	if err := write("a", func(n *store.Node) error { n.Name = "a2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := write("a2", func(n *store.Node) error {
		n.Name, n.ProvisionState = "a3", statemachine.Available
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A name another node holds.
	if err := write("b", func(n *store.Node) error { n.Name = "a3"; return nil }); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("renaming b to a name a holds: %v, want it refused as existing", err)
	}
	for _, ident := range []string{"a", "a2"} {
		if _, err := s.GetNode(ctx, ident); err == nil {
			t.Errorf("old name %s still finds a node", ident)
		}
	}
	got, err := s.GetNode(ctx, "a3")
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != a.UUID || got.ProvisionState != statemachine.Available || got.InternalString("agent_url") != "http://127.0.0.1:9999" {
		t.Fatalf("a3 = %s in %s, agent_url %v", got.UUID, got.ProvisionState, got.InternalString("agent_url"))
	}
	if got, err := s.GetNode(ctx, strings.ToUpper(a.UUID)); err != nil || got.Name != "a3" {
		t.Fatalf("by UUID: %v, %v", got, err)
	}
	for state, want := range map[statemachine.State]string{statemachine.Available: a.UUID, statemachine.Enroll: b.UUID} {
		ns, err := s.ListNodes(ctx, store.NodeFilter{ProvisionState: state})
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 1 || ns[0].UUID != want {
			t.Errorf("nodes in %s: %v, want only %s", state, ns, want)
		}
	}
	var check string
	if err := s.db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
}

// TestWithNodeLockCommitted: a transaction that saves the node returns the
// node as committed, the same as a read gives; one that saves nothing
// returns nil.
func TestWithNodeLockCommitted(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	createNode(t, s, "n")
	got, err := s.WithNodeLockCommitted(ctx, "n", func(tx store.Tx) error { return nil })
	if err != nil || got != nil {
		t.Fatalf("nothing saved: %v, %v", got, err)
	}
	got, err = s.WithNodeLockCommitted(ctx, "n", func(tx store.Tx) error {
		tx.Node().SetInternal("agent_url", "http://127.0.0.1:9999")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.GetNode(ctx, "n")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || got.InternalString("agent_url") != "http://127.0.0.1:9999" {
		t.Fatalf("committed node\n%+v\nread\n%+v", got, want)
	}
}

// TestViewNode: a view shows the node as GetNode reads it, by UUID from
// the row cache and otherwise from the file, and later writes replace the
// cached node rather than change the one a view was shown.
func TestViewNode(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	n := &store.Node{Name: "n", Driver: "fake-hardware", Extra: map[string]any{"k": "before"}}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	// A write puts the row in the cache.
	if err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { tx.Node().Description = "d"; return nil }); err != nil {
		t.Fatal(err)
	}
	var seen *store.Node
	for _, ident := range []string{n.UUID, "n"} {
		err := s.ViewNode(ctx, ident, func(v *store.Node) error {
			want, err := s.GetNode(ctx, ident)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("view of %s:\n%+v\nread:\n%+v", ident, v, want)
			}
			if ident == n.UUID {
				seen = v
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if held, _, _ := s.heldNode(n.UUID); held != seen {
		t.Error("the view by UUID is not the cached node itself")
	}
	err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
		tx.Node().Description = "d2"
		tx.Node().Extra["k"] = "after"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen.Description != "d" || seen.Extra["k"] != "before" {
		t.Fatalf("a later write changed the node a view was shown: %q, %v", seen.Description, seen.Extra)
	}
	if err := s.ViewNode(ctx, "nope", func(*store.Node) error { return nil }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("view of a missing node: %v", err)
	}
}

// TestNodeUUIDByMACsOfAKnownNode: a node this store created is named by
// its MACs without reading its UUID from the file, though the row cache
// does not hold it; once deleted, it is not found.
func TestNodeUUIDByMACsOfAKnownNode(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	n := createNode(t, s, "n")
	if err := s.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	s.rows.drop(n.ID)
	if u, err := s.NodeUUIDByMACs(ctx, []string{"52:54:00:00:00:01"}); err != nil || u != n.UUID {
		t.Fatalf("%q, %v; want %s", u, err, n.UUID)
	}
	s.mu.Lock()
	_, read := s.stmts[stmtKey{s.rdb, selectUUIDByID}]
	s.mu.Unlock()
	if read {
		t.Fatal("the UUID of a node the store created was read from the file")
	}
	if err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	if u, err := s.NodeUUIDByMACs(ctx, []string{"52:54:00:00:00:01"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a deleted node: %q, %v", u, err)
	}
	if _, ok := s.uuids.Load(n.ID); ok {
		t.Fatal("a deleted node's UUID is still remembered")
	}
}

// TestNodeUUIDByMACs: a node is named by its MACs from the file when the
// row cache does not hold it (the UUID then resolves without a query), and
// from the cache when it does; a deleted node is not found.
func TestNodeUUIDByMACs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rivet.db")
	s := open(t, path)
	n := createNode(t, s, "n")
	if err := s.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	if _, cached := s.rows.get(n.ID); cached {
		t.Fatal("a freshly opened store holds the node")
	}
	u, err := s.NodeUUIDByMACs(ctx, []string{"52:54:00:00:00:99", "52:54:00:00:00:01"})
	if err != nil || u != n.UUID {
		t.Fatalf("from the file: %q, %v; want %s", u, err, n.UUID)
	}
	if id, ok := s.ids.Load(u); !ok || id.(int64) != n.ID {
		t.Fatalf("the UUID is not remembered for the lock: %v, %v", id, ok)
	}
	if err := s.WithNodeLock(ctx, u, func(tx store.Tx) error { tx.Node().Description = "d"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, cached := s.rows.get(n.ID); !cached {
		t.Fatal("the write did not cache the node")
	}
	if u, err := s.NodeUUIDByMACs(ctx, []string{"52:54:00:00:00:01"}); err != nil || u != n.UUID {
		t.Fatalf("from the cache: %q, %v", u, err)
	}
	if err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	if u, err := s.NodeUUIDByMACs(ctx, []string{"52:54:00:00:00:01"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a deleted node: %q, %v", u, err)
	}
}

// TestSameValuesIsDeepEqual: the rows' comparison agrees with
// reflect.DeepEqual on the values rows hold and on those they never do
// (byte slices, mixed types), and never panics.
func TestSameValuesIsDeepEqual(t *testing.T) {
	vals := []any{nil, "", "a", "b", 0, 1, int64(1), 1.5, math.NaN(), true, false, []byte("a"), []byte("a"), []byte(nil), map[string]any{}}
	for _, x := range vals {
		for _, y := range vals {
			a, b := []any{"uuid", x, 3}, []any{"uuid", y, 3}
			if got, want := sameValues(a, b), reflect.DeepEqual(a, b); got != want {
				t.Errorf("sameValues(%#v, %#v) = %v, DeepEqual %v", a, b, got, want)
			}
		}
	}
	if sameValues([]any{"a"}, []any{"a", nil}) {
		t.Error("rows of different lengths are the same")
	}
}
