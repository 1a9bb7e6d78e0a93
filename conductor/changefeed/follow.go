package changefeed

import (
	"context"
	"time"
)

// View is a consumer's copy of some of the store's state, kept up to date
// by Follow.
type View interface {
	// Load replaces the view with a full read of the store.
	Load(ctx context.Context) error
	// Apply applies changes committed after the last Load started, in
	// order, each node's latest first-pending.
	Apply(items []Item[Change])
}

// FollowOptions tune Follow. Zero values take the defaults.
type FollowOptions struct {
	// MaxPending is the subscription's limit of pending keys (the feed's
	// by default); past it the view is reloaded.
	MaxPending int
	// Reload reloads the view this often even without a resync, as a
	// safety net against changes no feed saw (a write by a process
	// without one); 0 never does.
	Reload time.Duration
	// Retry is the pause after a failed Load (default 2 s).
	Retry time.Duration
	// Loaded, when set, is called after every successful Load.
	Loaded func()
}

// Follow keeps v up to date until ctx ends: it subscribes, loads v, then
// applies every batch of changes, and loads v again whenever the
// subscription must resync (or Reload passed). A failed Load is retried.
func (f *Feed) Follow(ctx context.Context, v View, o FollowOptions) {
	if o.Retry <= 0 {
		o.Retry = 2 * time.Second
	}
	sub := f.SubscribeLimit(o.MaxPending)
	defer sub.Close()
	var reload <-chan time.Time
	if o.Reload > 0 {
		t := time.NewTicker(o.Reload)
		defer t.Stop()
		reload = t.C
	}
	load := func() bool {
		for {
			// Whatever was pending is in the fresh read.
			sub.Take()
			err := v.Load(ctx)
			if err == nil {
				if o.Loaded != nil {
					o.Loaded()
				}
				return true
			}
			if ctx.Err() != nil {
				return false
			}
			f.log.Warn("change feed: loading a view failed; retrying", "error", err, "retry", o.Retry)
			t := time.NewTimer(o.Retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
	}
	if !load() {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			if !load() {
				return
			}
		case <-sub.Ready():
			items, resync := sub.Take()
			if resync {
				if !load() {
					return
				}
				continue
			}
			if len(items) > 0 {
				v.Apply(items)
			}
		}
	}
}
