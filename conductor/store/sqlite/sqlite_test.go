package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/storetest"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// createNode creates a fake-hardware node named name.
func createNode(t *testing.T, s *Store, name string) *store.Node {
	t.Helper()
	n := &store.Node{Name: name, Driver: "fake-hardware"}
	if err := s.CreateNode(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestStateSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rivet.db")
	s := open(t, path)
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	err := s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		tx.Node().SetInternal("agent_url", "http://127.0.0.1:9999")
		_, err := tx.Node().Advance(statemachine.EvManage, s.now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	defer s.Close()
	got, err := s.GetNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ProvisionState != statemachine.Verifying || got.InternalString("agent_url") != "http://127.0.0.1:9999" {
		t.Fatalf("after reopen: %+v", got)
	}
	var v int
	if err := s.db.QueryRow(`SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil || v != SchemaVersion() {
		t.Fatalf("schema version = %d, %v; want %d", v, err, SchemaVersion())
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rivet.db")
	s := open(t, path)
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 'x')`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(context.Background(), path); err == nil {
		s.Close()
		t.Fatal("Open accepted a database from a newer conductor")
	}
}

// TestManyWritersNoBusyErrors runs many concurrent node transactions on
// many nodes: all commit (no "database is locked"), none is lost.
func TestManyWritersNoBusyErrors(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	const nodes, writers, each = 8, 32, 20
	var ids []string
	for i := range nodes {
		n := &store.Node{Name: fmt.Sprintf("n%d", i), Driver: "fake-hardware"}
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n.UUID)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := ids[(w+i)%nodes]
				errs <- s.WithNodeLock(ctx, id, func(tx store.Tx) error {
					c, _ := tx.Node().Extra["count"].(float64)
					tx.Node().Extra = map[string]any{"count": c + 1}
					return nil
				})
				if _, err := s.GetNode(ctx, id); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	total := 0.0
	for _, id := range ids {
		n, err := s.GetNode(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		total += n.Extra["count"].(float64)
	}
	if total != writers*each {
		t.Fatalf("counted %v updates, want %d", total, writers*each)
	}
}

// TestReadsDoNotWaitForTheWriter holds a node transaction open and checks
// that reads of any node still answer (WAL readers beside the writer), and
// that other writes go on.
func TestReadsDoNotWaitForTheWriter(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	createNode(t, s, "a")
	b := createNode(t, s, "b")
	if err := s.CreatePort(ctx, &store.Port{NodeID: b.ID, Address: "52:54:00:00:00:0b"}); err != nil {
		t.Fatal(err)
	}
	locked, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.WithNodeLock(ctx, "a", func(tx store.Tx) error {
			tx.Node().LastError = "uncommitted"
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := s.GetNode(rctx, "a")
	if err != nil || got.LastError != "" {
		t.Fatalf("read beside the writer = %+v, %v; want the committed node", got, err)
	}
	if n, err := s.NodeByMACs(rctx, []string{"52:54:00:00:00:0B", "52:54:00:00:00:0c"}); err != nil || n.UUID != b.UUID {
		t.Fatalf("NodeByMACs beside the writer = %v, %v", n, err)
	}
	if all, err := s.ListNodes(rctx, store.NodeFilter{}); err != nil || len(all) != 2 {
		t.Fatalf("ListNodes beside the writer = %d, %v", len(all), err)
	}
	// Other writes do not wait for a slow node transaction either.
	if err := s.CreatePort(rctx, &store.Port{NodeID: b.ID, Address: "52:54:00:00:00:0d"}); err != nil {
		t.Fatalf("write beside a slow node transaction: %v", err)
	}
	if err := s.WithNodeLock(rctx, "b", func(tx store.Tx) error { tx.Node().LastError = "b"; return nil }); err != nil {
		t.Fatalf("another node's transaction beside a slow one: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetNode(ctx, "a"); got.LastError != "uncommitted" {
		t.Fatalf("after commit: %+v", got)
	}
}

// TestUnchangedNodeIsNotWritten checks that a node transaction that
// changes nothing writes nothing (updated_at stays unset), including for
// a node with JSON fields of every kind.
// TestOutsideWriteIsAConflict changes a node behind the store's back (as
// another process on the same file would) during a node transaction: the
// save is refused, not lost.
func TestOutsideWriteIsAConflict(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	err := s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		if _, err := s.db.ExecContext(ctx, `UPDATE nodes SET last_error = 'outside', updated_at = 'x' WHERE id = ?`, n.ID); err != nil {
			return err
		}
		tx.Node().Description = "mine"
		return nil
	})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("save over an outside write = %v, want a conflict", err)
	}
	if got, _ := s.GetNode(ctx, "n1"); got.LastError != "outside" || got.Description != "" {
		t.Fatalf("after the conflict: %+v", got)
	}
}

func TestUnchangedNodeIsNotWritten(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	n := &store.Node{Name: "n1", Driver: "fake-hardware", Description: "<a & b>",
		InstanceInfo: map[string]any{"image_source": "http://x/?a=1&b=<2>", "n": 4096.0, "l": []any{"x", nil, true}},
		Properties:   map[string]any{"capabilities": "boot_mode:uefi"}}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetNode(ctx, n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.UpdatedAt.IsZero() {
		t.Fatalf("a transaction without changes wrote the node (updated_at %v)", got.UpdatedAt)
	}
	if err := s.WithNodeLock(ctx, "n1", func(tx store.Tx) error { tx.Node().Description = "changed"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetNode(ctx, "n1"); got.UpdatedAt.IsZero() || got.Description != "changed" {
		t.Fatalf("change not saved: %+v", got)
	}
}

// TestRememberedNodeIDIsChecked covers the UUID → row ID hint of node
// transactions: a node removed behind the store's back, its row ID taken
// by another node, and its UUID enrolled again under a new row ID.
func TestRememberedNodeIDIsChecked(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	a := &store.Node{Name: "a", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, a); err != nil {
		t.Fatal(err)
	}
	describe := func(ident, d string) error {
		return s.WithNodeLock(ctx, ident, func(tx store.Tx) error {
			tx.Node().Description = d
			return nil
		})
	}
	if err := describe(a.UUID, "first"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.ids.Load(a.UUID); !ok {
		t.Fatal("the node's row ID was not remembered")
	}
	// Removed by another writer of the file; the next node takes the row ID.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, a.ID); err != nil {
		t.Fatal(err)
	}
	b := &store.Node{Name: "b", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, b); err != nil {
		t.Fatal(err)
	}
	if b.ID != a.ID {
		t.Logf("row ID %d not reused (node b has %d)", a.ID, b.ID)
	}
	// The store holds the row as it last committed it: the first
	// transaction writes against it and finds the row changed behind its
	// back; the retry reads the database again.
	if err := describe(a.UUID, "stale"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("transaction on the removed node = %v, want a conflict", err)
	}
	if err := describe(a.UUID, "stale"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("retried transaction on the removed node = %v, want not found", err)
	}
	if got, err := s.GetNode(ctx, "b"); err != nil || got.Description != "" {
		t.Fatalf("node b after a transaction on the removed node: %+v, %v", got, err)
	}
	// The UUID enrolled again: a new row, found.
	again := &store.Node{UUID: a.UUID, Name: "a2", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, again); err != nil {
		t.Fatal(err)
	}
	if err := describe(a.UUID, "again"); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetNode(ctx, a.UUID)
	if err != nil || got.Name != "a2" || got.Description != "again" {
		t.Fatalf("re-enrolled node: %+v, %v", got, err)
	}
	if b2, _ := s.GetNode(ctx, "b"); b2.Description != "" {
		t.Fatalf("node b changed: %+v", b2)
	}
	// A deletion through the store forgets the row ID.
	if err := s.WithNodeLock(ctx, a.UUID, func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.ids.Load(a.UUID); ok {
		t.Fatal("a deleted node's row ID is still remembered")
	}
}

// TestMemoizedColumnsReadAsStored: with the decode memo, a node reads
// back exactly as its stored JSON decodes — a value written as an int
// reads as a JSON number, and a reader changing the maps it was given
// changes nothing another reader sees.
func TestMemoizedColumnsReadAsStored(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	ctx := context.Background()
	pad := strings.Repeat("x", 100)
	n := &store.Node{Name: "n1", Driver: "fake-hardware", InstanceInfo: map[string]any{"image_source": "http://127.0.0.1/" + pad}}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	write := func(v any) {
		t.Helper()
		if err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
			tx.Node().DriverInternalInfo["steps"] = v
			tx.Node().DriverInternalInfo["pad"] = pad
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	read := func() *store.Node {
		t.Helper()
		got, err := s.GetNode(ctx, n.UUID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	write([]any{map[string]any{"priority": 80}}) // an int: not memoized as one
	got := read()
	if p := got.DriverInternalInfo["steps"].([]any)[0].(map[string]any)["priority"]; p != 80.0 {
		t.Fatalf("priority read back as %#v, want float64 80", p)
	}
	got.DriverInternalInfo["steps"].([]any)[0].(map[string]any)["priority"] = 1.0
	got.InstanceInfo["image_source"] = "vandalised"
	if again := read(); again.DriverInternalInfo["steps"].([]any)[0].(map[string]any)["priority"] != 80.0 ||
		again.InstanceInfo["image_source"] != "http://127.0.0.1/"+pad {
		t.Fatalf("a reader's change leaked into the next read: %v %v", again.DriverInternalInfo, again.InstanceInfo)
	}
	write([]any{map[string]any{"priority": 60.0}}) // JSON values: memoized at the write
	if s.memo.Len() == 0 {
		t.Fatal("nothing memoized")
	}
	if p := read().DriverInternalInfo["steps"].([]any)[0].(map[string]any)["priority"]; p != 60.0 {
		t.Fatalf("priority after the second write %#v", p)
	}
	vals, err := nodeValues(read(), nil)
	if err != nil || !strings.Contains(vals[firstMapColumn].(string), "image_source") ||
		!strings.Contains(vals[firstMapColumn+2].(string), `"steps"`) {
		t.Fatalf("firstMapColumn does not index instance_info: %v %v", vals, err)
	}
}

// TestCommitterIsLabelled: the committer goroutine carries the profile
// label that sets it apart in CPU and goroutine profiles.
func TestCommitterIsLabelled(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	createNode(t, s, "n1") // the committer has run: it is in commitLoop
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%q:%q", ProfileLabel, "committer")
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, want) {
			if !strings.Contains(g, "commitLoop") {
				t.Fatalf("the label is on another goroutine:\n%s", g)
			}
			return
		}
	}
	t.Fatalf("no goroutine labelled %s in:\n%s", want, b.String())
}
