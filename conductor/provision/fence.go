package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/rivetmetal/rivet/conductor/store"
)

// Fencing (docs/security.md, "Conductor state"). A job runs under the
// lease this conductor held on the node when the job started
// (Ownership.Lease): its context carries that fence. The seams check it
// before acting for the job — nodes.update inside every transaction
// (store.Tx.CheckFence, the database's word), machines and agents before
// every power-driver and agent call (Ownership.Holds, this conductor's own
// clock) — and the first failed check cancels the job, which then stops
// as it does on shutdown: nothing more is written or called. Work outside
// jobs (API requests any conductor serves) is not fenced.

// errLeaseLost is the cause a job is cancelled with when this conductor
// no longer holds the node's lease it started under.
var errLeaseLost = errors.New("this conductor no longer holds the node's lease")

// Causes a job is cancelled with by the API.
var (
	errAborted = errors.New("the operation was aborted")
	errDeleted = errors.New("the node is being deleted")
)

// jobScope is what a job's context carries: the fence it runs under and
// the cancellation of the job.
type jobScope struct {
	fence  store.Fence
	cancel context.CancelCauseFunc
}

type scopeKey struct{}

// withScope returns ctx carrying a job's scope.
func withScope(ctx context.Context, s *jobScope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// scopeOf is the scope of the job ctx belongs to, nil outside jobs.
func scopeOf(ctx context.Context) *jobScope {
	s, _ := ctx.Value(scopeKey{}).(*jobScope)
	return s
}

// isFenced reports whether err is (or follows from) a refused fence.
func isFenced(err error) bool {
	return errors.Is(err, errLeaseLost) || errors.Is(err, store.ErrFenced)
}

// fenced is the check made before every power-driver and agent call: for
// a job whose conductor no longer holds the node's lease under the job's
// fence (by this conductor's clock), it cancels the job and refuses the
// call. Outside jobs it lets every call through.
func (ns *nodes) fenced(ctx context.Context, uuid string) error {
	s := scopeOf(ctx)
	if s == nil || ns.own.Holds(uuid, s.fence) {
		return nil
	}
	s.cancel(errLeaseLost)
	return fmt.Errorf("node %s: %w", uuid, errLeaseLost)
}

// fenceTx is the check made inside every node transaction of a job: the
// lease must still be held as the job's fence says, first by this
// conductor's clock, then by the store (which keeps it so until the
// commit). A refusal cancels the job.
func (ns *nodes) fenceTx(ctx context.Context, tx store.Tx, uuid string) error {
	s := scopeOf(ctx)
	if s == nil || s.fence.IsZero() {
		return nil
	}
	if err := ns.fenced(ctx, uuid); err != nil {
		return err
	}
	if err := tx.CheckFence(ctx, s.fence); err != nil {
		if errors.Is(err, store.ErrFenced) {
			s.cancel(errLeaseLost)
		}
		return err
	}
	return nil
}
