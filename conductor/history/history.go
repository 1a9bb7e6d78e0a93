// Package history records node history — Ironic's node_history, served
// by the API from 1.78 and shown on the dashboard's node page — in one
// place: a decorator of the conductor's store (Store) through which the
// provision engine and the API write. Every committed node transaction is
// compared with the node as it was read, and what changed becomes events
// saved in the same transaction: provision-state moves (failures as
// errors, with the node's last_error), power-state changes and requests,
// maintenance set and cleared, new errors, and node creation. The user is
// the one the API authenticated for the request that made the change
// (conductor/auth's identity in the context); the conductor's own work
// has none. The moves heartbeat processing makes on every heartbeat (a
// wait state and its working state, both ways) are left out, as they are
// from the engine's info logs.
//
// Store.Run prunes each node's history to its newest MaxEntries events
// (Ironic's [conductor]node_history_max_entries), periodically.
package history

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/rivetmetal/rivet/conductor/auth"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Event types (Ironic's where it has one).
const (
	TypeProvisioning  = "provisioning"
	TypeDeploying     = "deploying"
	TypeCleaning      = "cleaning"
	TypeVerifying     = "verifying"
	TypeIntrospection = "introspection"
	TypeAdoption      = "adoption"
	TypeUnprovision   = "unprovision"
	TypeServicing     = "servicing"
	TypeRescue        = "rescue"
	TypePower         = "power"
	TypeMaintenance   = "maintenance"
)

// MaxEventBytes bounds an event's text (a last_error can be long); longer
// texts are cut and end with "...".
const MaxEventBytes = 16 << 10

// Config configures the history. Zero values take the defaults.
type Config struct {
	// Conductor names the conductor in the events it records.
	Conductor string
	// MaxEntries is the number of events kept per node (default 300,
	// Ironic's node_history_max_entries); negative keeps everything.
	MaxEntries int
	// CleanupInterval is the period of the pruning (default 24 h, Ironic's
	// node_history_cleanup_interval); negative disables it.
	CleanupInterval time.Duration
	// CleanupBatch bounds the events one pruning deletes (default 1000,
	// Ironic's node_history_cleanup_batch_count).
	CleanupBatch int
	// Logger receives pruning errors (default slog.Default()).
	Logger *slog.Logger
}

// Store is a store.Store that records node history with every node
// transaction. Reads, ports and everything else pass through.
type Store struct {
	store.Store
	cfg Config
}

// New returns inner decorated with history recording.
func New(inner store.Store, cfg Config) *Store {
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 300
	}
	if cfg.CleanupInterval == 0 {
		cfg.CleanupInterval = 24 * time.Hour
	}
	if cfg.CleanupBatch <= 0 {
		cfg.CleanupBatch = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Store{Store: inner, cfg: cfg}
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.PortUpdater = (*Store)(nil)
)

// UpdatePort passes a port update through to the inner store (ports have
// no history), so that decorating a store keeps its optional port updates
// (store.PortUpdater: the API's port PATCH, ports from inspection).
func (s *Store) UpdatePort(ctx context.Context, p *store.Port) error {
	pu, ok := s.Store.(store.PortUpdater)
	if !ok {
		return errdefs.NotImplemented("the store cannot update ports")
	}
	return pu.UpdatePort(ctx, p)
}

// ViewNode passes a node view through to the inner store (store.NodeViewer),
// so that decorating a store keeps its shared snapshots.
func (s *Store) ViewNode(ctx context.Context, ident string, fn func(*store.Node) error) error {
	return store.ViewNode(ctx, s.Store, ident, fn)
}

// NodeUUIDByMACs passes the look-up through to the inner store
// (store.NodeNamer).
func (s *Store) NodeUUIDByMACs(ctx context.Context, macs []string) (string, error) {
	return store.NodeUUIDByMACs(ctx, s.Store, macs)
}

// User is the authenticated user of the request ctx belongs to, "" when
// there is none.
func User(ctx context.Context) string {
	if id, ok := auth.IdentityFrom(ctx); ok {
		return id.Name
	}
	return ""
}

// CreateNode implements store.Store and records the creation.
func (s *Store) CreateNode(ctx context.Context, n *store.Node) error {
	if err := s.Store.CreateNode(ctx, n); err != nil {
		return err
	}
	ev := s.event(ctx, store.SeverityInfo, TypeProvisioning, fmt.Sprintf("Node created in %s (driver %s)", n.ProvisionState, n.Driver))
	ev.CreatedAt = n.CreatedAt
	err := s.Store.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
		tx.AddHistory(ev)
		return nil
	})
	if err != nil {
		// The node exists; only its first event is missing.
		s.cfg.Logger.Warn("recording a node's creation in its history failed", "node", n.UUID, "error", err)
	}
	return nil
}

// WithNodeLock implements store.NodeLocker: fn's changes to the node are
// recorded as history events in the same transaction.
func (s *Store) WithNodeLock(ctx context.Context, ident string, fn func(store.Tx) error) error {
	return s.Store.WithNodeLock(ctx, ident, func(tx store.Tx) error {
		before := snapshotOf(tx.Node())
		ht := &histTx{Tx: tx}
		if err := fn(ht); err != nil {
			return err
		}
		if ht.deleted {
			return nil
		}
		for _, ev := range s.changes(ctx, before, tx.Node()) {
			tx.AddHistory(ev)
		}
		return nil
	})
}

// histTx notes a deletion.
type histTx struct {
	store.Tx
	deleted bool
}

// DeleteNode implements store.Tx.
func (t *histTx) DeleteNode(ctx context.Context) error {
	if err := t.Tx.DeleteNode(ctx); err != nil {
		return err
	}
	t.deleted = true
	return nil
}

// snapshot is what events are made of, as the transaction read it.
type snapshot struct {
	provision, target        statemachine.State
	power, targetPower       string
	maintenance              bool
	maintenanceReason, error string
}

func snapshotOf(n *store.Node) snapshot {
	return snapshot{provision: n.ProvisionState, target: n.TargetProvisionState, power: n.PowerState,
		targetPower: n.TargetPowerState, maintenance: n.Maintenance, maintenanceReason: n.MaintenanceReason,
		error: n.LastError}
}

// waitCycle are the moves heartbeat processing makes on every heartbeat.
var waitCycle = map[[2]statemachine.State]bool{
	{statemachine.DeployWait, statemachine.Deploying}:   true,
	{statemachine.Deploying, statemachine.DeployWait}:   true,
	{statemachine.CleanWait, statemachine.Cleaning}:     true,
	{statemachine.Cleaning, statemachine.CleanWait}:     true,
	{statemachine.InspectWait, statemachine.Inspecting}: true,
	{statemachine.Inspecting, statemachine.InspectWait}: true,
	{statemachine.ServiceWait, statemachine.Servicing}:  true,
	{statemachine.Servicing, statemachine.ServiceWait}:  true,
}

// activity is the event type of an error met in state s (Ironic's event
// types: the operation that failed).
func activity(s statemachine.State) string {
	switch s {
	case statemachine.Deploying, statemachine.DeployWait, statemachine.DeployFailed, statemachine.DeployHold:
		return TypeDeploying
	case statemachine.Cleaning, statemachine.CleanWait, statemachine.CleanFailed, statemachine.CleanHold:
		return TypeCleaning
	case statemachine.Verifying:
		return TypeVerifying
	case statemachine.Inspecting, statemachine.InspectWait, statemachine.InspectFail:
		return TypeIntrospection
	case statemachine.Adopting, statemachine.AdoptFailed:
		return TypeAdoption
	case statemachine.Deleting, statemachine.Error:
		return TypeUnprovision
	case statemachine.Servicing, statemachine.ServiceWait, statemachine.ServiceFail, statemachine.ServiceHold:
		return TypeServicing
	case statemachine.Rescuing, statemachine.RescueWait, statemachine.RescueFailed,
		statemachine.Unrescuing, statemachine.UnrescueFail:
		return TypeRescue
	}
	return TypeProvisioning
}

// changes are the events of one committed transaction: from the node as
// read (b) to the node as saved (n).
func (s *Store) changes(ctx context.Context, b snapshot, n *store.Node) []store.HistoryEvent {
	var out []store.HistoryEvent
	add := func(sev, typ, text string) { out = append(out, s.event(ctx, sev, typ, text)) }
	newError := n.LastError != "" && n.LastError != b.error
	reported := false
	if n.ProvisionState != b.provision {
		failed := statemachine.Failure[n.ProvisionState] || newError
		if failed || !waitCycle[[2]statemachine.State{b.provision, n.ProvisionState}] {
			text := fmt.Sprintf("%s → %s", display(b.provision), display(n.ProvisionState))
			if n.TargetProvisionState != statemachine.NoState {
				text += fmt.Sprintf(" (target %s)", n.TargetProvisionState)
			}
			switch {
			case failed && n.LastError != "":
				add(store.SeverityError, activity(b.provision), text+": "+n.LastError)
				reported = true
			case failed:
				add(store.SeverityError, activity(b.provision), text)
			default:
				if total, ok := deployTotal(n); ok && b.provision == statemachine.Deploying && n.ProvisionState == statemachine.Active {
					text += fmt.Sprintf("; deployed in %.1f s", total)
				}
				add(store.SeverityInfo, TypeProvisioning, text)
			}
		}
	}
	if n.TargetPowerState != "" && n.TargetPowerState != b.targetPower {
		add(store.SeverityInfo, TypePower, fmt.Sprintf("Power state change to %s requested", n.TargetPowerState))
	}
	if n.PowerState != b.power && n.PowerState != "" {
		add(store.SeverityInfo, TypePower, fmt.Sprintf("Power state %s → %s", display(statemachine.State(b.power)), n.PowerState))
	}
	if newError && !reported {
		typ := activity(n.ProvisionState)
		if b.targetPower != "" && n.TargetPowerState == "" {
			typ = TypePower // the power change that just ended failed
		}
		add(store.SeverityError, typ, n.LastError)
	}
	if n.Maintenance != b.maintenance || n.Maintenance && n.MaintenanceReason != b.maintenanceReason {
		text := "Maintenance cleared"
		if n.Maintenance {
			text = "Maintenance set"
			if n.MaintenanceReason != "" {
				text += ": " + n.MaintenanceReason
			}
		}
		add(store.SeverityInfo, TypeMaintenance, text)
	}
	return out
}

// event is an event of this conductor, by the request's user, now.
func (s *Store) event(ctx context.Context, severity, typ, text string) store.HistoryEvent {
	if len(text) > MaxEventBytes {
		text = text[:MaxEventBytes-3] + "..."
	}
	return store.HistoryEvent{Severity: severity, EventType: typ, Event: text, User: User(ctx), Conductor: s.cfg.Conductor}
}

// deployTotal is the recorded total of the node's deploy
// (driver_internal_info.deploy_timings.total).
func deployTotal(n *store.Node) (float64, bool) {
	t, ok := n.DriverInternalInfo["deploy_timings"].(map[string]any)
	if !ok {
		return 0, false
	}
	switch v := t["total"].(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	}
	return 0, false
}

func display(s statemachine.State) string {
	if s == statemachine.NoState {
		return "none"
	}
	return string(s)
}

// Run prunes every node's history to its newest MaxEntries events every
// CleanupInterval (at most CleanupBatch events each time) until ctx ends.
// With several conductors on one database each prunes; pruning is
// idempotent.
func (s *Store) Run(ctx context.Context) {
	if s.cfg.CleanupInterval < 0 || s.cfg.MaxEntries < 0 {
		return
	}
	t := time.NewTicker(s.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Prune(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("pruning node history failed", "error", err)
		}
	}
}

// Prune deletes events beyond each node's newest MaxEntries, at most
// CleanupBatch of them, and returns how many it deleted.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	if s.cfg.MaxEntries < 0 {
		return 0, nil
	}
	n, err := s.Store.PruneHistory(ctx, s.cfg.MaxEntries, s.cfg.CleanupBatch)
	if err == nil && n > 0 {
		s.cfg.Logger.Info("node history pruned", "events", n, "kept_per_node", s.cfg.MaxEntries)
	}
	return n, err
}
