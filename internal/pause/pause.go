// Package pause is how Rivet code pauses: a sleep that a context cuts
// short, so that no retry loop or poll outlives its caller's cancellation.
package pause

import (
	"context"
	"time"
)

// For waits d, or until ctx ends, in which case it returns ctx.Err().
func For(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
