package changefeed

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
)

// Peer messages are "<origin> <entry> <entry> …": the sending feed's
// random origin (a feed skips its own messages), then one entry per
// changed thing — "n<uuid>" node changed, "d<uuid>" node deleted,
// "p<uuid>" a port of that node changed — or the single entry "R": the
// sender lost track, every listener resyncs.
const (
	entryNode   = 'n'
	entryDelete = 'd'
	entryPorts  = 'p'
	entryResync = "R"
)

// peerQueue collects the entries to send in the next message.
type peerQueue struct {
	mu       sync.Mutex
	max      int
	entries  map[string]struct{}
	overflow bool
}

func newPeerQueue(max int) *peerQueue {
	return &peerQueue{max: max, entries: map[string]struct{}{}}
}

func (q *peerQueue) add(c Change) {
	var e string
	switch c.Kind {
	case NodeChanged:
		e = string(entryNode) + c.NodeUUID
	case NodeDeleted:
		e = string(entryDelete) + c.NodeUUID
	default:
		if c.NodeUUID == "" {
			return
		}
		e = string(entryPorts) + c.NodeUUID
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow {
		return
	}
	if len(q.entries) >= q.max {
		q.overflow = true
		clear(q.entries)
		return
	}
	q.entries[e] = struct{}{}
}

// markLost makes the next message a resync.
func (q *peerQueue) markLost() {
	q.mu.Lock()
	q.overflow = true
	clear(q.entries)
	q.mu.Unlock()
}

// take returns the messages to send (nil when nothing is queued).
func (q *peerQueue) take(origin string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow {
		q.overflow = false
		return []string{origin + " " + entryResync}
	}
	if len(q.entries) == 0 {
		return nil
	}
	es := make([]string, 0, len(q.entries))
	for e := range q.entries {
		es = append(es, e)
	}
	clear(q.entries)
	sort.Strings(es)
	var (
		msgs []string
		b    strings.Builder
	)
	for _, e := range es {
		if b.Len() > 0 && b.Len()+1+len(e) > MaxPeerPayload {
			msgs = append(msgs, b.String())
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(origin)
		}
		b.WriteByte(' ')
		b.WriteString(e)
	}
	return append(msgs, b.String())
}

// sendLoop sends the queued entries every PeerFlushInterval until ctx
// ends, then once more.
func (f *Feed) sendLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.PeerFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			f.flush(sctx)
			cancel()
			return
		case <-t.C:
			f.flush(ctx)
		}
	}
}

func (f *Feed) flush(ctx context.Context) {
	for _, m := range f.out.take(f.origin) {
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f.peers.NotifyPeers(nctx, m)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				f.log.Warn("change feed: notifying the other conductors failed; they will resync", "error", err)
			}
			f.out.markLost()
			return
		}
	}
}

// listenLoop listens to the other conductors until ctx ends; each time
// listening (re)starts, every subscriber resyncs, since changes may have
// been missed meanwhile.
func (f *Feed) listenLoop(ctx context.Context) {
	for {
		err := f.peers.ListenPeers(ctx, f.hub.ResyncAll, func(p string) { f.onPeerMessage(ctx, p) })
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("change feed: listening to the other conductors failed; retrying", "error", err, "retry", f.cfg.PeerRetry)
		t := time.NewTimer(f.cfg.PeerRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// onPeerMessage publishes what another conductor committed: each node it
// names is read back from the store (under the node's order lock, so the
// read and its publication are ordered with this conductor's own commits
// of that node).
func (f *Feed) onPeerMessage(ctx context.Context, payload string) {
	fields := strings.Fields(payload)
	if len(fields) < 2 || fields[0] == f.origin {
		return
	}
	if f.hub.Subscribers() == 0 {
		return // nobody to tell; a subscriber starts from a fresh read
	}
	for _, e := range fields[1:] {
		if e == entryResync {
			f.hub.ResyncAll()
			return
		}
		if len(e) < 2 {
			continue
		}
		id := e[1:]
		switch e[0] {
		case entryNode:
			f.republishNode(ctx, id)
		case entryDelete:
			f.publish(Change{Kind: NodeDeleted, NodeUUID: id, Remote: true})
		case entryPorts:
			f.publish(Change{Kind: PortChanged, NodeUUID: id, Remote: true})
		}
	}
}

func (f *Feed) republishNode(ctx context.Context, id string) {
	unlock := f.order.lock("node/" + id)
	defer unlock()
	n, err := f.inner.GetNode(ctx, id)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		f.publish(Change{Kind: NodeDeleted, NodeUUID: id, Remote: true})
	case err != nil:
		if ctx.Err() == nil {
			f.log.Warn("change feed: reading a node another conductor changed failed; resyncing", "node", id, "error", err)
			f.hub.ResyncAll()
		}
	default:
		f.publish(Change{Kind: NodeChanged, NodeUUID: id, Node: n, Remote: true})
	}
}
