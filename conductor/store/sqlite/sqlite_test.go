package sqlite

import (
	"context"
	"path/filepath"
	"testing"

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
