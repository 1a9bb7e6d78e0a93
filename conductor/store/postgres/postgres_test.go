package postgres

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/postgres/pgtest"
	"github.com/rivetmetal/rivet/conductor/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, pgtest.NewDatabase(t)) })
}

func TestStateSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
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
	s.Close()

	s = open(t, dsn)
	got, err := s.GetNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ProvisionState != statemachine.Verifying || got.InternalString("agent_url") != "http://127.0.0.1:9999" {
		t.Fatalf("after reopen: %+v", got)
	}
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil || v != SchemaVersion() {
		t.Fatalf("schema version = %d, %v; want %d", v, err, SchemaVersion())
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	if _, err := s.pool.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, dsn); err == nil {
		s.Close()
		t.Fatal("Open accepted a database from a newer conductor")
	}
}

// TestConcurrentOpenMigratesOnce opens the same empty database from
// several "conductors" at once: the advisory lock lets one migrate and
// the others find the schema done.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const conductors = 4
	var wg sync.WaitGroup
	stores := make([]*Store, conductors)
	errs := make([]error, conductors)
	for i := range conductors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), dsn)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	var rows int
	if err := stores[0].pool.QueryRow(context.Background(), `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(migrations) {
		t.Fatalf("schema_migrations has %d rows, want %d (one per migration)", rows, len(migrations))
	}
}

// TestLockExcludesOtherConductors holds a node's lock through one store
// (one conductor's pool) and checks that another store on the same
// database waits for it, and gives up when its context ends.
func TestLockExcludesOtherConductors(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := a.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	locked, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
			close(locked)
			<-release
			tx.Node().LastError = "from a"
			return nil
		})
	}()
	<-locked

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := b.WithNodeLock(short, n.UUID, func(tx store.Tx) error { return errors.New("must not run") })
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WithNodeLock while another conductor holds the lock = %v, want deadline exceeded", err)
	}

	got := make(chan string, 1)
	go func() {
		var seen string
		err := b.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
			seen = tx.Node().LastError
			tx.Node().LastError = seen + ", then b"
			return nil
		})
		if err != nil {
			seen = "error: " + err.Error()
		}
		got <- seen
	}()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if seen := <-got; seen != "from a" {
		t.Fatalf("second conductor saw last_error %q, want the first one's committed %q", seen, "from a")
	}
	final, err := a.GetNode(ctx, n.UUID)
	if err != nil || final.LastError != "from a, then b" {
		t.Fatalf("final node = %+v, %v", final, err)
	}
}

func TestJSONAndTimesRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.NewDatabase(t))
	n := &store.Node{Name: "n1", Driver: "fake-hardware",
		InstanceInfo: map[string]any{"image_source": "http://x/y", "nested": map[string]any{"a": []any{1.5, "b", nil, true}}},
		Extra:        map[string]any{"unicode": "nœud ✓"}}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	var held *store.Node
	err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
		_, err := tx.Node().Advance(statemachine.EvManage, time.Now())
		held = tx.Node()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetNode(ctx, n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ProvisionUpdatedAt.Equal(held.ProvisionUpdatedAt) || !got.UpdatedAt.Equal(held.UpdatedAt) || !got.CreatedAt.Equal(n.CreatedAt) {
		t.Fatalf("times differ between the committed node and the one read back: held %v/%v/%v, read %v/%v/%v",
			held.ProvisionUpdatedAt, held.UpdatedAt, n.CreatedAt, got.ProvisionUpdatedAt, got.UpdatedAt, got.CreatedAt)
	}
	nested, _ := got.InstanceInfo["nested"].(map[string]any)
	list, _ := nested["a"].([]any)
	if len(list) != 4 || list[0] != 1.5 || list[1] != "b" || list[2] != nil || list[3] != true || got.Extra["unicode"] != "nœud ✓" {
		t.Fatalf("JSON columns did not round-trip: %#v %#v", got.InstanceInfo, got.Extra)
	}
}

func TestIsDSN(t *testing.T) {
	for in, want := range map[string]bool{
		"postgres://u@127.0.0.1/rivet":   true,
		"postgresql://127.0.0.1/rivet":   true,
		"/var/lib/rivet/rivet.db":        false,
		"rivet.db":                       false,
		"file:postgres://not-really.txt": false,
	} {
		if got := IsDSN(in); got != want {
			t.Errorf("IsDSN(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestOpenDoesNotEchoPassword(t *testing.T) {
	_, err := Open(context.Background(), "postgres://rivet:s3cret@127.0.0.1:1/x?connect_timeout=abc")
	if err == nil {
		t.Fatal("Open with a bad DSN succeeded")
	}
	if got := err.Error(); strings.Contains(got, "s3cret") {
		t.Fatalf("error echoes the password: %s", got)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://rivet:pw@db:5432/rivet?sslmode=disable": "postgres://…@db:5432/rivet?sslmode=disable",
		"postgres://db/rivet":                               "postgres://db/rivet",
		"/var/lib/rivet/rivet.db":                           "/var/lib/rivet/rivet.db",
		"cannot parse `postgres://u:p@h/x`: bad":            "cannot parse `postgres://…@h/x`: bad",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
