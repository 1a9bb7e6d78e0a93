package changefeed

import (
	"sync"
)

// DefaultMaxPending is the number of distinct keys a subscription holds
// undelivered before it is told to resync instead.
const DefaultMaxPending = 16384

// Item is one value delivered to a subscriber: the latest value published
// under Key since the subscriber last took its items, and the sequence
// number of that publication.
type Item[T any] struct {
	Seq   uint64
	Key   string
	Value T
}

// Hub fans published values out to subscribers. Each subscription keeps at
// most one pending value per key — a newer value replaces the one not yet
// taken — so a slow subscriber costs memory bounded by the number of keys,
// never blocks a publisher, and sees every key's latest value. A
// subscription that collects more than its limit of distinct pending keys
// drops them all and is told to resync (reload its whole view) instead.
// The zero Hub is not usable; call NewHub.
type Hub[T any] struct {
	mu         sync.Mutex
	seq        uint64
	maxPending int
	merge      func(old, new T) T
	subs       map[*Subscription[T]]struct{}
}

// NewMergingHub is NewHub whose subscriptions, when a value replaces one
// not yet taken, keep merge(old, new) instead of new. merge must not
// modify its arguments (they are shared by every subscription).
func NewMergingHub[T any](maxPending int, merge func(old, new T) T) *Hub[T] {
	h := NewHub[T](maxPending)
	h.merge = merge
	return h
}

// NewHub returns a hub whose subscriptions hold at most maxPending keys
// (DefaultMaxPending when ≤ 0).
func NewHub[T any](maxPending int) *Hub[T] {
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	return &Hub[T]{maxPending: maxPending, subs: map[*Subscription[T]]struct{}{}}
}

// Publish hands v, under key, to every subscription and returns its
// sequence number. It never blocks on a subscriber.
func (h *Hub[T]) Publish(key string, v T) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	it := Item[T]{Seq: h.seq, Key: key, Value: v}
	for s := range h.subs {
		s.offer(it)
	}
	return h.seq
}

// ResyncAll tells every subscription to resync, dropping what they hold:
// for when changes may have been missed (a lost connection to the peers).
func (h *Hub[T]) ResyncAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	for s := range h.subs {
		s.overflow(h.seq)
	}
}

// Seq is the sequence number of the last publication.
func (h *Hub[T]) Seq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// Subscribers is the number of open subscriptions.
func (h *Hub[T]) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Subscribe opens a subscription to values published from now on. The
// caller must Close it.
func (h *Hub[T]) Subscribe() *Subscription[T] {
	return h.SubscribeLimit(0)
}

// SubscribeLimit is Subscribe with its own limit of pending keys (the
// hub's when ≤ 0).
func (h *Hub[T]) SubscribeLimit(maxPending int) *Subscription[T] {
	if maxPending <= 0 {
		maxPending = h.maxPending
	}
	s := &Subscription[T]{hub: h, max: maxPending, ready: make(chan struct{}, 1), pending: map[string]int{}}
	h.mu.Lock()
	s.seq = h.seq
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Subscription receives a hub's values. Its methods may be called from
// any goroutine.
type Subscription[T any] struct {
	hub   *Hub[T]
	max   int
	ready chan struct{}

	mu      sync.Mutex
	pending map[string]int // key → index in queue
	queue   []Item[T]
	resync  bool
	resyncs uint64
	seq     uint64 // last sequence number offered or at subscription
	closed  bool
}

// offer queues it, replacing the pending value of its key. Called with
// the hub's lock held.
func (s *Subscription[T]) offer(it Item[T]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.seq = it.Seq
	if s.resync {
		// Everything is reloaded on the resync: nothing to keep.
		s.signal()
		return
	}
	if i, ok := s.pending[it.Key]; ok {
		if s.hub.merge != nil {
			it.Value = s.hub.merge(s.queue[i].Value, it.Value)
		}
		s.queue[i] = it
	} else if len(s.queue) >= s.max {
		s.dropLocked()
	} else {
		s.pending[it.Key] = len(s.queue)
		s.queue = append(s.queue, it)
	}
	s.signal()
}

func (s *Subscription[T]) overflow(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.seq = seq
	s.dropLocked()
	s.signal()
}

func (s *Subscription[T]) dropLocked() {
	s.queue = nil
	clear(s.pending)
	if !s.resync {
		s.resyncs++
	}
	s.resync = true
}

func (s *Subscription[T]) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready receives a value whenever items (or a resync) may be waiting; the
// subscriber then calls Take.
func (s *Subscription[T]) Ready() <-chan struct{} { return s.ready }

// Take returns the pending items, oldest key first, each with its key's
// latest value, and empties the queue. When resync is true the
// subscription fell behind (or the hub asked it to): items is empty, and
// the subscriber must reload its whole view from the source, which
// already holds every change published before Take returned.
func (s *Subscription[T]) Take() (items []Item[T], resync bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resync {
		s.resync = false
		return nil, true
	}
	items = s.queue
	s.queue = nil
	clear(s.pending)
	return items, false
}

// Seq is the sequence number of the last publication this subscription
// was offered (or, before any, of the hub when it subscribed).
func (s *Subscription[T]) Seq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// Resyncs counts the times this subscription fell behind.
func (s *Subscription[T]) Resyncs() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resyncs
}

// Close ends the subscription; pending items are dropped.
func (s *Subscription[T]) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	clear(s.pending)
	s.mu.Unlock()
}
