package provision

import "context"

// Ownership decides which nodes this conductor drives.
type Ownership interface {
	// Owns reports whether this conductor drives node now (holding, renewing or just taking its lease).
	Owns(ctx context.Context, nodeUUID string) (bool, error)
	// Gained delivers UUIDs of nodes this conductor took over (from a dead conductor); the engine resumes their work.
	Gained() <-chan string
}

// SingleConductor is the Ownership of a conductor that runs alone: it owns
// every node and never gains any. It is the engine's default.
type SingleConductor struct{}

// Owns implements Ownership: always true.
func (SingleConductor) Owns(context.Context, string) (bool, error) { return true, nil }

// Gained implements Ownership: a nil channel, which never delivers.
func (SingleConductor) Gained() <-chan string { return nil }

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
