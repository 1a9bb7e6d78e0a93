package history_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/auth"
	"github.com/rivetmetal/rivet/conductor/history"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
	"github.com/rivetmetal/rivet/conductor/store/storetest"
)

// open returns a history-recording store on a fresh SQLite file.
func open(t *testing.T, cfg history.Config) (*history.Store, store.Store) {
	t.Helper()
	inner, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	if cfg.Conductor == "" {
		cfg.Conductor = "c1"
	}
	return history.New(inner, cfg), inner
}

func as(user string) context.Context {
	return auth.WithIdentity(context.Background(), auth.Identity{Name: user, Role: auth.RoleAdmin})
}

// line renders an event as "SEVERITY type user: text".
func line(e *store.HistoryEvent) string {
	u := e.User
	if u == "" {
		u = "-"
	}
	return e.Severity + " " + e.EventType + " " + u + ": " + e.Event
}

func events(t *testing.T, s store.Store, n *store.Node) []string {
	t.Helper()
	evs, err := s.NodeHistory(context.Background(), n.ID, store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Conductor != "c1" {
			t.Errorf("event %q recorded by conductor %q, want c1", e.Event, e.Conductor)
		}
		out = append(out, line(e))
	}
	return out
}

// TestChangesBecomeEvents walks a node through an operator's requests
// and the conductor's work and checks each transaction's events: the
// user of each request, none for the conductor's own work, the wait
// cycles left out, failures as errors with last_error, the deploy's
// recorded total, power and maintenance.
func TestChangesBecomeEvents(t *testing.T) {
	s, _ := open(t, history.Config{})
	alice, bg := as("alice"), context.Background()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(alice, n); err != nil {
		t.Fatal(err)
	}
	change := func(ctx context.Context, f func(n *store.Node)) {
		t.Helper()
		if err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { f(tx.Node()); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	move := func(ctx context.Context, to, target statemachine.State, lastError string) {
		t.Helper()
		change(ctx, func(n *store.Node) {
			n.ProvisionState, n.TargetProvisionState, n.LastError = to, target, lastError
		})
	}
	move(alice, statemachine.Verifying, statemachine.Manageable, "")
	move(bg, statemachine.Enroll, statemachine.NoState, "Failed to get power state for node: no BMC")
	move(alice, statemachine.Verifying, statemachine.Manageable, "")
	change(bg, func(n *store.Node) {
		n.ProvisionState, n.TargetProvisionState, n.LastError, n.PowerState = statemachine.Manageable, "", "", "power off"
	})
	move(alice, statemachine.Available, statemachine.NoState, "")
	move(alice, statemachine.Deploying, statemachine.Active, "")
	change(bg, func(n *store.Node) { n.PowerState = "power on" })
	for range 3 {
		move(bg, statemachine.DeployWait, statemachine.Active, "")
		move(bg, statemachine.Deploying, statemachine.Active, "")
	}
	change(bg, func(n *store.Node) { n.Extra = map[string]any{"unrelated": true} })
	change(bg, func(n *store.Node) {
		n.ProvisionState, n.TargetProvisionState = statemachine.Active, statemachine.NoState
		n.DriverInternalInfo = map[string]any{"deploy_timings": map[string]any{"total": 23.4, "download_write": 12.0}}
	})
	change(alice, func(n *store.Node) { n.TargetPowerState = "power off" })
	change(bg, func(n *store.Node) {
		n.TargetPowerState, n.LastError = "", "Failed to change power state to 'power off' by 'power off'. Error: BMC timeout"
	})
	change(alice, func(n *store.Node) { n.Maintenance, n.MaintenanceReason = true, "disk swap" })
	change(alice, func(n *store.Node) { n.Maintenance, n.MaintenanceReason = false, "" })
	move(alice, statemachine.Deploying, statemachine.Active, "")
	move(bg, statemachine.DeployWait, statemachine.Active, "")
	move(bg, statemachine.DeployFailed, statemachine.NoState, "Timeout reached while waiting for callback for node n1")

	want := []string{
		"INFO provisioning alice: Node created in enroll (driver fake-hardware)",
		"INFO provisioning alice: enroll → verifying (target manageable)",
		"ERROR verifying -: verifying → enroll: Failed to get power state for node: no BMC",
		"INFO provisioning alice: enroll → verifying (target manageable)",
		"INFO provisioning -: verifying → manageable",
		"INFO power -: Power state none → power off",
		"INFO provisioning alice: manageable → available",
		"INFO provisioning alice: available → deploying (target active)",
		"INFO power -: Power state power off → power on",
		"INFO provisioning -: deploying → active; deployed in 23.4 s",
		"INFO power alice: Power state change to power off requested",
		"ERROR power -: Failed to change power state to 'power off' by 'power off'. Error: BMC timeout",
		"INFO maintenance alice: Maintenance set: disk swap",
		"INFO maintenance alice: Maintenance cleared",
		"INFO provisioning alice: active → deploying (target active)",
		"ERROR deploying -: wait call-back → deploy failed: Timeout reached while waiting for callback for node n1",
	}
	if got := events(t, s, n); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestNothingRecordedForNoChangeDeletionOrFailure checks that a
// transaction that changes nothing, fails, or deletes the node records
// nothing, and that a long error is cut.
func TestNothingRecordedForNoChangeDeletionOrFailure(t *testing.T) {
	s, inner := open(t, history.Config{})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := s.WithNodeLock(ctx, "n1", func(store.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		tx.Node().Maintenance = true
		return context.Canceled
	}); err != context.Canceled {
		t.Fatalf("failing transaction: %v", err)
	}
	if got := events(t, s, n); len(got) != 1 {
		t.Fatalf("history after no change and a failure: %q", got)
	}
	if err := s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		tx.Node().LastError = strings.Repeat("x", 2*history.MaxEventBytes)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.NodeHistory(ctx, n.ID, store.HistoryQuery{Descending: true, Limit: 1})
	if len(got[0].Event) != history.MaxEventBytes || !strings.HasSuffix(got[0].Event, "...") || got[0].Severity != store.SeverityError {
		t.Fatalf("long error event: %d bytes, severity %s", len(got[0].Event), got[0].Severity)
	}
	if err := s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		tx.Node().Maintenance = true
		return tx.DeleteNode(ctx)
	}); err != nil {
		t.Fatal(err)
	}
	if left, err := inner.PruneHistory(ctx, 0, 0); err != nil || left != 0 {
		t.Fatalf("events left after the node's deletion: %d, %v", left, err)
	}
}

// TestPruneKeepsTheNewest checks the retention: MaxEntries per node, at
// most CleanupBatch per pruning.
func TestPruneKeepsTheNewest(t *testing.T) {
	s, _ := open(t, history.Config{MaxEntries: 2, CleanupBatch: 3})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if err := s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
			tx.Node().Maintenance = i%2 == 0
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got := events(t, s, n); len(got) != 7 {
		t.Fatalf("%d events before pruning, want 7", len(got))
	}
	for _, want := range []int64{3, 2, 0} {
		if got, err := s.Prune(ctx); err != nil || got != want {
			t.Fatalf("Prune = %d, %v; want %d", got, err, want)
		}
	}
	want := []string{"INFO maintenance -: Maintenance set", "INFO maintenance -: Maintenance cleared"}
	if got := events(t, s, n); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("kept %q, want %q", got, want)
	}
}

// TestPortUpdatesPassThrough: the decorator keeps the inner store's port
// updates (the API's port PATCH and inspection's ports use them).
func TestPortUpdatesPassThrough(t *testing.T) {
	s, _ := open(t, history.Config{})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	p := &store.Port{NodeID: n.ID, Address: "52:54:00:12:34:56", PXEEnabled: true}
	if err := s.CreatePort(ctx, p); err != nil {
		t.Fatal(err)
	}
	var st store.Store = s
	pu, ok := st.(store.PortUpdater)
	if !ok {
		t.Fatal("the history store hides UpdatePort")
	}
	p.PXEEnabled = false
	if err := pu.UpdatePort(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetPort(ctx, p.UUID); err != nil || got.PXEEnabled {
		t.Fatalf("port after UpdatePort: %+v, %v", got, err)
	}
}

// TestHistoryNamesNodesWithoutReading: the history store passes a look-up
// by MAC for the node's UUID through to the inner store's NodeNamer
// instead of reading the node.
func TestHistoryNamesNodesWithoutReading(t *testing.T) {
	inner, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	storetest.NamingPassesThrough(t, inner, func(s store.Store) store.Store { return history.New(s, history.Config{Conductor: "c1"}) })
}
