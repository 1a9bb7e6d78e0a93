package provision

import (
	"context"

	"github.com/rivetmetal/rivet/conductor/store"
)

// Ownership decides which nodes this conductor drives, and fences the
// work it does on them (conductor/cluster implements it).
type Ownership interface {
	// Lease reports whether this conductor drives node now (holding,
	// renewing or just taking its lease) and, when it does, the fence of
	// that lease: a job started now runs under it.
	Lease(ctx context.Context, nodeUUID string) (store.Fence, bool, error)
	// Holds reports, without asking the database, whether this conductor
	// still holds the node's lease under fence f, unexpired by its own
	// clock (with a margin). It is asked before every power-driver and
	// agent call a job makes.
	Holds(nodeUUID string, f store.Fence) bool
	// Gained delivers UUIDs of nodes this conductor took over (from a dead conductor); the engine resumes their work.
	Gained() <-chan string
}

// SingleConductor is the Ownership of a conductor that runs alone: it owns
// every node, under the zero fence, and never gains any. It is the
// engine's default.
type SingleConductor struct{}

// Lease implements Ownership: always held, under the zero fence.
func (SingleConductor) Lease(context.Context, string) (store.Fence, bool, error) {
	return store.Fence{}, true, nil
}

// Holds implements Ownership: always true.
func (SingleConductor) Holds(string, store.Fence) bool { return true }

// Gained implements Ownership: a nil channel, which never delivers.
func (SingleConductor) Gained() <-chan string { return nil }

// holderNamer is implemented by Ownerships that can name the conductor
// holding a node's lease (cluster.Member): it names the host in a
// "locked by" refusal.
type holderNamer interface {
	Holder(ctx context.Context, nodeUUID string) (string, error)
}

// ownsAll reports whether o is known to own every node, so that no other
// conductor can leave work (recorded heartbeats, committed transitions)
// for this one to pick up.
func ownsAll(o Ownership) bool {
	switch o.(type) {
	case SingleConductor, *SingleConductor:
		return true
	}
	return false
}
