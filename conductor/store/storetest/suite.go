// Package storetest is the conformance suite every store.Store
// implementation runs (SQLite, PostgreSQL, and the change feed's decorator).
package storetest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Run runs the suite; newStore returns a fresh, empty store for each
// subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("NodeCRUD", func(t *testing.T) { testNodeCRUD(t, newStore(t)) })
	t.Run("LockAdvance", func(t *testing.T) { testLockAdvance(t, newStore(t)) })
	t.Run("LockSerialises", func(t *testing.T) { testLockSerialises(t, newStore(t)) })
	t.Run("Ports", func(t *testing.T) { testPorts(t, newStore(t)) })
	t.Run("History", func(t *testing.T) { testHistory(t, newStore(t)) })
	t.Run("Attributes", func(t *testing.T) { testAttributes(t, newStore(t)) })
	t.Run("UpdatePort", func(t *testing.T) { testUpdatePort(t, newStore(t)) })
	t.Run("ListNodesUpdatedBefore", func(t *testing.T) { testListNodesUpdatedBefore(t, newStore(t)) })
}

// testListNodesUpdatedBefore checks the provision_updated_at filter, alone
// and with the state's: nodes moved at different times, times whose text
// has fractions of different lengths, and a node never moved (unset).
func testListNodesUpdatedBefore(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	moves := map[string]time.Time{ // a fraction of 9, 1 and 3 digits, and none
		"a": t0.Add(-time.Hour + 123456789),
		"b": t0.Add(-time.Second + 100*time.Millisecond),
		"c": t0.Add(250 * time.Millisecond),
		"d": t0.Add(time.Hour),
	}
	for _, name := range []string{"a", "b", "c", "d", "never"} {
		if err := s.CreateNode(ctx, &store.Node{Name: name, Driver: "fake-hardware"}); err != nil {
			t.Fatal(err)
		}
		at, ok := moves[name]
		if !ok {
			continue
		}
		if err := s.WithNodeLock(ctx, name, func(tx store.Tx) error {
			_, err := tx.Node().Advance(statemachine.EvManage, at)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	names := func(f store.NodeFilter) string {
		t.Helper()
		nodes, err := s.ListNodes(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, n := range nodes {
			out += n.Name + " "
		}
		return out
	}
	if got := names(store.NodeFilter{ProvisionUpdatedBefore: t0}); got != "a b never " {
		t.Errorf("updated before t0: %q, want a, b and the node never moved", got)
	}
	if got := names(store.NodeFilter{ProvisionUpdatedBefore: t0.Add(time.Second)}); got != "a b c never " {
		t.Errorf("updated before t0+1s: %q", got)
	}
	if got := names(store.NodeFilter{ProvisionState: statemachine.Verifying, ProvisionUpdatedBefore: t0.Add(time.Second)}); got != "a b c " {
		t.Errorf("verifying and updated before t0+1s: %q", got)
	}
	if got := names(store.NodeFilter{ProvisionState: statemachine.Enroll, ProvisionUpdatedBefore: t0}); got != "never " {
		t.Errorf("enroll and updated before t0: %q", got)
	}
}

// testAttributes checks that the fields of later API versions survive a
// create, a locked update and a read, unchanged in type.
func testAttributes(t *testing.T, s store.Store) {
	ctx := context.Background()
	off := false
	n := &store.Node{Name: "n1", Driver: "ipmi", NodeAttributes: store.NodeAttributes{
		AutomatedClean: &off, DisablePowerOff: true, Lessee: "proj",
		NetworkData: map[string]any{"links": []any{map[string]any{"id": "eth0", "ethernet_mac_address": "52:54:00:12:34:56"}}},
		Interfaces:  map[string]string{"boot_interface": "ipxe", "inspect_interface": "agent"},
		Traits:      []string{"CUSTOM_GPU", "CUSTOM_FAST"},
	}}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.NodeAttributes, n.NodeAttributes) {
		t.Fatalf("attributes read back %+v, want %+v", got.NodeAttributes, n.NodeAttributes)
	}
	err = s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		on := true
		tx.Node().AutomatedClean = &on
		tx.Node().Traits = nil
		tx.Node().TargetRAIDConfig = map[string]any{"logical_disks": []any{map[string]any{"size_gb": "MAX", "raid_level": "1"}}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetNode(ctx, "n1")
	if got.AutomatedClean == nil || !*got.AutomatedClean || got.Traits != nil || !got.DisablePowerOff ||
		got.TargetRAIDConfig["logical_disks"] == nil || got.UpdatedAt.IsZero() {
		t.Fatalf("after the update: %+v", got.NodeAttributes)
	}
	nodes, err := s.ListNodes(ctx, store.NodeFilter{})
	if err != nil || len(nodes) != 1 || nodes[0].Lessee != "proj" {
		t.Fatalf("ListNodes: %v %v", nodes, err)
	}
}

// testUpdatePort checks stores that update ports (store.PortUpdater).
func testUpdatePort(t *testing.T, s store.Store) {
	pu, ok := s.(store.PortUpdater)
	if !ok {
		t.Skip("the store cannot update ports")
	}
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	p := &store.Port{NodeID: n.ID, Address: "52:54:00:12:34:56", PXEEnabled: true}
	other := &store.Port{NodeID: n.ID, Address: "52:54:00:12:34:57"}
	for _, x := range []*store.Port{p, other} {
		if err := s.CreatePort(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	p.PXEEnabled = false
	p.Extra = map[string]any{"client-id": "ff:00"}
	p.PortAttributes = store.PortAttributes{Name: "eth0", Vendor: "0x8086", Category: "data"}
	if err := pu.UpdatePort(ctx, p); err != nil {
		t.Fatalf("UpdatePort: %v", err)
	}
	got, err := s.GetPort(ctx, p.UUID)
	if err != nil || got.PXEEnabled || got.Extra["client-id"] != "ff:00" || got.Name != "eth0" ||
		got.Category != "data" || got.UpdatedAt.IsZero() || got.NodeUUID != n.UUID {
		t.Fatalf("after UpdatePort: %+v %v", got, err)
	}
	p.Address = other.Address
	if err := pu.UpdatePort(ctx, p); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("UpdatePort to a used address: %v, want ErrAlreadyExists", err)
	}
	if err := pu.UpdatePort(ctx, &store.Port{UUID: "0d6b1c2e-6c34-4f1e-9d55-8a2f1b3c4d5e", Address: "52:54:00:00:00:09"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("UpdatePort of an unknown port: %v, want ErrNotFound", err)
	}
}

func testNodeCRUD(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "fake-hardware",
		DriverInfo: map[string]any{"ipmi_password": "secret"},
		Properties: map[string]any{"memory_mb": 4096.0}}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatalf("CreateNode: %v", err)
	}
	if n.UUID == "" || n.ID == 0 || n.ProvisionState != statemachine.Enroll || n.CreatedAt.IsZero() {
		t.Fatalf("CreateNode did not fill the node: %+v", n)
	}
	for _, ident := range []string{n.UUID, "n1"} {
		got, err := s.GetNode(ctx, ident)
		if err != nil {
			t.Fatalf("GetNode(%s): %v", ident, err)
		}
		if got.UUID != n.UUID || got.DriverInfo["ipmi_password"] != "secret" || got.Properties["memory_mb"] != 4096.0 {
			t.Fatalf("GetNode(%s) = %+v", ident, got)
		}
	}
	if _, err := s.GetNode(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetNode(nope) = %v, want ErrNotFound", err)
	}
	if err := s.CreateNode(ctx, &store.Node{Name: "n1", Driver: "fake-hardware"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate name: %v, want ErrAlreadyExists", err)
	}
	if err := s.CreateNode(ctx, &store.Node{Driver: "fake-hardware"}); err != nil {
		t.Fatalf("CreateNode without name: %v", err)
	}
	if err := s.CreateNode(ctx, &store.Node{Driver: "fake-hardware"}); err != nil {
		t.Fatalf("second CreateNode without name: %v", err)
	}
	all, err := s.ListNodes(ctx, store.NodeFilter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("ListNodes = %d nodes, %v; want 3", len(all), err)
	}
	err = s.WithNodeLock(ctx, "n1", func(tx store.Tx) error { return tx.DeleteNode(ctx) })
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := s.GetNode(ctx, "n1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetNode after delete = %v", err)
	}
}

func testLockAdvance(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err := s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		if _, err := tx.Node().Advance(statemachine.EvManage, now); err != nil {
			return err
		}
		tx.Node().SetInternal("k", "v")
		return nil
	})
	if err != nil {
		t.Fatalf("WithNodeLock: %v", err)
	}
	got, _ := s.GetNode(ctx, n.UUID)
	if got.ProvisionState != statemachine.Verifying || got.TargetProvisionState != statemachine.Manageable ||
		got.InternalString("k") != "v" || got.UpdatedAt.IsZero() || got.ProvisionUpdatedAt.IsZero() {
		t.Fatalf("after advance: %+v", got)
	}

	boom := errors.New("boom")
	err = s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		tx.Node().LastError = "should not persist"
		if _, err := tx.Node().Advance(statemachine.EvDone, now); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WithNodeLock error = %v, want boom", err)
	}
	got, _ = s.GetNode(ctx, n.UUID)
	if got.ProvisionState != statemachine.Verifying || got.LastError != "" {
		t.Fatalf("rolled-back change persisted: %+v", got)
	}

	err = s.WithNodeLock(ctx, "n1", func(tx store.Tx) error {
		_, err := tx.Node().Advance(statemachine.EvDeploy, now)
		return err
	})
	var bad *statemachine.InvalidTransitionError
	if !errors.As(err, &bad) {
		t.Fatalf("invalid event error = %v", err)
	}
}

func testLockSerialises(t *testing.T, s store.Store) {
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half of them urgent (store.Urgent): committed first where
			// the store queues writes, serialised all the same.
			wctx := ctx
			if i%2 == 0 {
				wctx = store.Urgent(ctx)
			}
			errs <- s.WithNodeLock(wctx, n.UUID, func(tx store.Tx) error {
				c, _ := tx.Node().Extra["count"].(float64)
				if tx.Node().Extra == nil {
					tx.Node().Extra = map[string]any{}
				}
				tx.Node().Extra["count"] = c + 1
				return nil
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.GetNode(ctx, n.UUID)
	if got.Extra["count"] != float64(workers) {
		t.Fatalf("count = %v, want %d (lost updates)", got.Extra["count"], workers)
	}
}

func testPorts(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := &store.Node{Name: "a", Driver: "fake-hardware"}
	b := &store.Node{Name: "b", Driver: "fake-hardware"}
	for _, n := range []*store.Node{a, b} {
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	pa := &store.Port{NodeID: a.ID, Address: "52:54:00:12:34:56", PXEEnabled: true}
	if err := s.CreatePort(ctx, pa); err != nil {
		t.Fatalf("CreatePort: %v", err)
	}
	if pa.UUID == "" || pa.NodeUUID != a.UUID {
		t.Fatalf("CreatePort did not fill the port: %+v", pa)
	}
	if err := s.CreatePort(ctx, &store.Port{NodeID: b.ID, Address: "52:54:00:12:34:56"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate MAC: %v, want ErrAlreadyExists", err)
	}
	if err := s.CreatePort(ctx, &store.Port{NodeID: b.ID, Address: "52:54:00:aa:bb:cc"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.NodeByMACs(ctx, []string{"00:00:00:00:00:01", "52:54:00:12:34:56"})
	if err != nil || got.UUID != a.UUID {
		t.Fatalf("NodeByMACs = %v, %v; want node a", got, err)
	}
	if _, err := s.NodeByMACs(ctx, []string{"52:54:00:12:34:56", "52:54:00:aa:bb:cc"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("MACs of two nodes: %v, want ErrNotFound", err)
	}
	if _, err := s.NodeByMACs(ctx, []string{"00:00:00:00:00:01"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown MAC: %v, want ErrNotFound", err)
	}
	// The same answers by UUID (store.NodeNamer where the store is one).
	if u, err := store.NodeUUIDByMACs(ctx, s, []string{"00:00:00:00:00:01", "52:54:00:12:34:56"}); err != nil || u != a.UUID {
		t.Fatalf("NodeUUIDByMACs = %q, %v; want node a's %s", u, err, a.UUID)
	}
	for _, macs := range [][]string{{"52:54:00:12:34:56", "52:54:00:aa:bb:cc"}, {"00:00:00:00:00:01"}, nil} {
		if u, err := store.NodeUUIDByMACs(ctx, s, macs); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("NodeUUIDByMACs(%v) = %q, %v; want ErrNotFound", macs, u, err)
		}
	}
	var txPorts []*store.Port
	err = s.WithNodeLock(ctx, "a", func(tx store.Tx) error {
		var err error
		txPorts, err = tx.Ports(ctx)
		return err
	})
	if err != nil || len(txPorts) != 1 || txPorts[0].Address != "52:54:00:12:34:56" {
		t.Fatalf("tx.Ports = %v, %v", txPorts, err)
	}
	if err := s.WithNodeLock(ctx, "a", func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPort(ctx, pa.UUID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("port of deleted node: %v, want ErrNotFound", err)
	}
	all, err := s.ListPorts(ctx, store.PortFilter{})
	if err != nil || len(all) != 1 {
		t.Fatalf("ListPorts = %d, %v; want 1", len(all), err)
	}
	if err := s.DeletePort(ctx, all[0].UUID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePort(ctx, all[0].UUID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second DeletePort: %v", err)
	}
}

// namingStore names every set of MACs "named" (store.NodeNamer) and
// refuses to read a node by MAC.
type namingStore struct{ store.Store }

func (namingStore) NodeByMACs(context.Context, []string) (*store.Node, error) {
	return nil, errors.New("the node was read")
}

func (namingStore) NodeUUIDByMACs(context.Context, []string) (string, error) { return "named", nil }

// NamingPassesThrough checks that a store decorator (wrap) passes a
// look-up by MAC for the node's UUID through to the inner store's
// store.NodeNamer instead of reading the node; inner is any store.
func NamingPassesThrough(t *testing.T, inner store.Store, wrap func(store.Store) store.Store) {
	t.Helper()
	got, err := store.NodeUUIDByMACs(context.Background(), wrap(namingStore{inner}), []string{"52:54:00:00:00:01"})
	if err != nil || got != "named" {
		t.Fatalf("NodeUUIDByMACs through the decorator = %q, %v; want the inner store's answer", got, err)
	}
}
