package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// nodes is the seam of node transactions: every change the engine makes
// to a node goes through update, which checks a job's lease (fenceTx),
// decodes the node's typed driver_internal_info once, lets the caller
// change both, encodes it back and commits, and is the one place a
// committed provision-state change is logged. It also holds the lease
// check of the other seams (fenced).
type nodes struct {
	st     store.Store
	own    Ownership
	log    *slog.Logger
	now    func() time.Time
	phases *phaseMetrics
}

// errStateChanged reports that a node left the state a job expected; the
// job stops quietly.
var errStateChanged = errors.New("provision state changed")

func isStateChanged(err error) bool { return errors.Is(err, errStateChanged) }

// read returns a node and its typed driver_internal_info.
func (ns *nodes) read(ctx context.Context, ident string) (*store.Node, *internalinfo.Info, error) {
	n, err := ns.st.GetNode(ctx, ident)
	if err != nil {
		return nil, nil, err
	}
	info, err := internalinfo.Decode(n)
	if err != nil {
		return nil, nil, err
	}
	return n, info, nil
}

// update runs fn on the node and its typed driver_internal_info under the
// node's lock, provided the node is in state expect ("" = any) and, in a
// job, this conductor still holds the node's lease as the job's fence
// says; it returns both as committed.
func (ns *nodes) update(ctx context.Context, ident string, expect statemachine.State,
	fn func(tx store.Tx, n *store.Node, info *internalinfo.Info) error) (*store.Node, *internalinfo.Info, error) {
	var (
		out     *store.Node
		outInfo *internalinfo.Info
		from    statemachine.State
		marks   phaseMarks
	)
	err := ns.st.WithNodeLock(ctx, ident, func(tx store.Tx) error {
		n := tx.Node()
		if err := ns.fenceTx(ctx, tx, n.UUID); err != nil {
			return err
		}
		if expect != "" && n.ProvisionState != expect {
			return fmt.Errorf("node %s: in %q, expected %q: %w", n.UUID, n.ProvisionState, expect, errStateChanged)
		}
		from = n.ProvisionState
		info, err := internalinfo.Decode(n)
		if err != nil {
			return err
		}
		marks = markPhases(n, info)
		if fn != nil {
			if err := fn(tx, n, info); err != nil {
				return err
			}
		}
		if err := info.Encode(n); err != nil {
			return err
		}
		out, outInfo = n, info
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if out.ProvisionState != from {
		ns.logMove(out, from)
	}
	if ns.phases != nil {
		ns.phases.committed(marks, out, outInfo, ns.now())
	}
	return out, outInfo, nil
}

// advance applies event ev to the node within an update.
func (ns *nodes) advance(n *store.Node, ev statemachine.Event) error {
	_, err := n.Advance(ev, ns.now())
	return err
}

// waitCycle are the moves heartbeat processing makes on every heartbeat
// (a wait state and its working state, both ways); they are logged at
// debug level.
var waitCycle = map[[2]statemachine.State]bool{
	{statemachine.DeployWait, statemachine.Deploying}:   true,
	{statemachine.Deploying, statemachine.DeployWait}:   true,
	{statemachine.CleanWait, statemachine.Cleaning}:     true,
	{statemachine.Cleaning, statemachine.CleanWait}:     true,
	{statemachine.InspectWait, statemachine.Inspecting}: true,
	{statemachine.Inspecting, statemachine.InspectWait}: true,
}

// logMove logs a committed provision-state change: the one place every
// transition passes.
func (ns *nodes) logMove(n *store.Node, from statemachine.State) {
	level := slog.LevelInfo
	if waitCycle[[2]statemachine.State{from, n.ProvisionState}] {
		level = slog.LevelDebug
	}
	attrs := []any{"node", n.UUID, "from", string(from), "to", string(n.ProvisionState),
		"target", string(n.TargetProvisionState)}
	if statemachine.Failure[n.ProvisionState] {
		level = slog.LevelError
		attrs = append(attrs, "last_error", n.LastError)
	}
	ns.log.Log(context.Background(), level, "node moved to "+string(n.ProvisionState), attrs...)
}

// agentTimestamp formats a time as Ironic's timestamp_driver_internal_info.
func agentTimestamp(t time.Time) string { return t.UTC().Format(agentTimeLayout) }

// agentTimeLayout is Ironic's timestamp format in driver_internal_info.
const agentTimeLayout = "2006-01-02T15:04:05.000000"

// lastError is a failure whose text is the node's last_error verbatim
// (Ironic's wording).
type lastError string

// Error implements error.
func (e lastError) Error() string { return string(e) }
