// Package changefeed publishes the conductor's node and port changes as
// they are committed, without touching the provision engine: a decorator
// around the conductor's store (store.Store) publishes, after each
// committed write, the node or port as committed, to subscribers that
// each get a coalescing queue (Hub) — one pending change per node or port,
// sequence-numbered, a "resync" when a subscriber falls too far behind —
// so that a slow subscriber never blocks a writer and memory stays
// bounded whatever the write rate.
//
// What a conductor's feed sees: with SQLite, every write (one conductor
// owns the file). With a PostgreSQL store shared by several conductors,
// its own writes at once, and the writes of the other conductors through
// PostgreSQL's LISTEN/NOTIFY (the store implements PeerChannel): each
// conductor's feed sends the UUIDs of what it committed, batched, and the
// others re-read those nodes and publish them as Remote changes. A
// notification lost while the listening connection was down is covered by
// a resync of every subscriber when it comes back.
//
// Order: the changes of one node are published in commit order (a
// per-node lock is held from inside the transaction until the change is
// published), so that a subscriber never sees a node go back in time.
package changefeed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Kind says what changed.
type Kind uint8

// Kinds of change.
const (
	// NodeChanged: a node was created or changed; Node is its committed
	// state.
	NodeChanged Kind = iota + 1
	// NodeDeleted: a node (and its ports) was deleted; Node is its last
	// state, nil when the deletion was another conductor's.
	NodeDeleted
	// PortChanged: a port was created or changed; Port is its committed
	// state, nil when the change was another conductor's (then only
	// NodeUUID is known: some port of that node changed).
	PortChanged
	// PortDeleted: a port was deleted; Port is its last state when known.
	PortDeleted
)

// String is the kind's name.
func (k Kind) String() string {
	switch k {
	case NodeChanged:
		return "node_changed"
	case NodeDeleted:
		return "node_deleted"
	case PortChanged:
		return "port_changed"
	case PortDeleted:
		return "port_deleted"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Change is one committed change. Node and Port are snapshots shared by
// every subscriber (a Node possibly with the store's cache too, see
// store.CommittedNodeLocker): read them, never modify them.
type Change struct {
	Kind     Kind
	NodeUUID string
	Node     *store.Node
	Port     *store.Port
	// Moves are the provision-state changes the node went through since
	// the subscriber last took a change of it, oldest first (a change that
	// replaced others not yet taken keeps theirs, up to MaxMoves). Nil for
	// another conductor's changes, which are known only by their result.
	Moves []Move
	// Remote is set on changes committed by another conductor sharing the
	// store.
	Remote bool
	// At is when the feed published the change (this conductor's clock).
	At time.Time
}

// Move is one provision-state change, at the node's ProvisionUpdatedAt.
type Move struct {
	From, To statemachine.State
	At       time.Time
}

// MaxMoves bounds the moves one pending change keeps.
const MaxMoves = 32

// mergeChanges keeps the moves of a replaced change.
func mergeChanges(old, new Change) Change {
	if len(old.Moves) == 0 || new.Kind != NodeChanged && new.Kind != NodeDeleted {
		return new
	}
	moves := make([]Move, 0, len(old.Moves)+len(new.Moves))
	moves = append(append(moves, old.Moves...), new.Moves...)
	if len(moves) > MaxMoves {
		moves = moves[len(moves)-MaxMoves:]
	}
	new.Moves = moves
	return new
}

// Key is the coalescing key of changes to one node (NodeChanged,
// NodeDeleted) or to the ports of one node.
func (c Change) Key() string {
	switch c.Kind {
	case PortChanged, PortDeleted:
		if c.Port != nil {
			return "port/" + c.Port.UUID
		}
		return "ports-of/" + c.NodeUUID
	}
	return "node/" + c.NodeUUID
}

// PeerChannel is implemented by stores several conductors share
// (postgres.Store): a broadcast of short text messages between the
// conductors connected to it.
type PeerChannel interface {
	// NotifyPeers sends payload (at most MaxPeerPayload bytes) to every
	// listener, this conductor's included.
	NotifyPeers(ctx context.Context, payload string) error
	// ListenPeers calls fn with each payload sent from the time it is
	// listening, then ready; it returns when ctx ends (nil) or the
	// connection fails.
	ListenPeers(ctx context.Context, ready func(), fn func(payload string)) error
}

// MaxPeerPayload bounds one peer message (PostgreSQL's NOTIFY takes less
// than 8000 bytes).
const MaxPeerPayload = 7900

// Config configures a feed. Zero values take the defaults.
type Config struct {
	// MaxPending is the default limit of distinct pending keys of a
	// subscription (DefaultMaxPending).
	MaxPending int
	// PeerFlushInterval is how often the UUIDs this conductor committed
	// are sent to the others sharing a PostgreSQL store (default 50 ms).
	PeerFlushInterval time.Duration
	// PeerMaxQueued bounds the UUIDs waiting for the next peer message;
	// past it the peers are told to resync instead (default 10,000).
	PeerMaxQueued int
	// PeerRetry is the pause before listening again after the peer
	// connection failed (default 2 s).
	PeerRetry time.Duration
	// Logger receives warnings (default slog.Default()).
	Logger *slog.Logger
}

// Feed is the change feed of one store. Its Store decorates the store;
// Subscribe opens a subscription; Start and Close run the exchange with
// the other conductors when the store is shared.
type Feed struct {
	inner store.Store
	cfg   Config
	log   *slog.Logger
	hub   *Hub[Change]
	order keyLocks

	peers  PeerChannel
	origin string
	out    *peerQueue

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns the feed of st. Writes are published only when they go
// through Store().
func New(st store.Store, cfg Config) *Feed {
	if cfg.PeerFlushInterval <= 0 {
		cfg.PeerFlushInterval = 50 * time.Millisecond
	}
	if cfg.PeerMaxQueued <= 0 {
		cfg.PeerMaxQueued = 10000
	}
	if cfg.PeerRetry <= 0 {
		cfg.PeerRetry = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Feed{inner: st, cfg: cfg, log: cfg.Logger, hub: NewMergingHub(cfg.MaxPending, mergeChanges)}
	if pc, ok := st.(PeerChannel); ok {
		var b [8]byte
		_, _ = rand.Read(b[:])
		f.peers, f.origin = pc, hex.EncodeToString(b[:])
		f.out = newPeerQueue(cfg.PeerMaxQueued)
	}
	return f
}

// Subscribe opens a subscription to the changes committed from now on.
// The caller must Close it.
func (f *Feed) Subscribe() *Subscription[Change] { return f.hub.Subscribe() }

// SubscribeLimit is Subscribe with its own limit of pending keys.
func (f *Feed) SubscribeLimit(maxPending int) *Subscription[Change] {
	return f.hub.SubscribeLimit(maxPending)
}

// Subscribers is the number of open subscriptions.
func (f *Feed) Subscribers() int { return f.hub.Subscribers() }

// Shared reports whether the feed exchanges changes with other conductors.
func (f *Feed) Shared() bool { return f.peers != nil }

// Store is the decorated store: every write that commits through it is
// published. It implements the optional store interfaces the inner store
// has that change data (UpdatePort).
func (f *Feed) Store() store.Store {
	if _, ok := f.inner.(portUpdater); ok {
		return &updatingStore{feedStore{f}}
	}
	return feedStore{f}
}

// Start starts the exchange with the other conductors when the store is
// shared; it is a no-op otherwise.
func (f *Feed) Start(ctx context.Context) {
	if f.peers == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		return
	}
	ctx, f.cancel = context.WithCancel(ctx)
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		f.sendLoop(ctx)
	}()
	go func() {
		defer f.wg.Done()
		f.listenLoop(ctx)
	}()
}

// Close stops the exchange with the other conductors and waits for it.
func (f *Feed) Close() {
	f.mu.Lock()
	cancel := f.cancel
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	f.wg.Wait()
}

// publish hands a change to the subscribers (and, for a local change, to
// the peers).
func (f *Feed) publish(c Change) {
	c.At = time.Now()
	f.hub.Publish(c.Key(), c)
	if f.out != nil && !c.Remote {
		f.out.add(c)
	}
}

type portUpdater interface {
	UpdatePort(ctx context.Context, p *store.Port) error
}

// feedStore is the decorator.
type feedStore struct{ f *Feed }

// updatingStore is the decorator of a store that can update ports.
type updatingStore struct{ feedStore }

var (
	_ store.Store = feedStore{}
	_ portUpdater = (*updatingStore)(nil)
)

// GetNode implements store.NodeReader.
func (s feedStore) GetNode(ctx context.Context, ident string) (*store.Node, error) {
	return s.f.inner.GetNode(ctx, ident)
}

// ViewNode implements store.NodeViewer, with the inner store's snapshot
// when it has them.
func (s feedStore) ViewNode(ctx context.Context, ident string, fn func(*store.Node) error) error {
	return store.ViewNode(ctx, s.f.inner, ident, fn)
}

// ListNodes implements store.NodeReader.
func (s feedStore) ListNodes(ctx context.Context, fl store.NodeFilter) ([]*store.Node, error) {
	return s.f.inner.ListNodes(ctx, fl)
}

// NodeByMACs implements store.NodeReader.
func (s feedStore) NodeByMACs(ctx context.Context, macs []string) (*store.Node, error) {
	return s.f.inner.NodeByMACs(ctx, macs)
}

// NodeUUIDByMACs implements store.NodeNamer, with the inner store's when
// it has one.
func (s feedStore) NodeUUIDByMACs(ctx context.Context, macs []string) (string, error) {
	return store.NodeUUIDByMACs(ctx, s.f.inner, macs)
}

// GetPort implements store.NodeReader.
func (s feedStore) GetPort(ctx context.Context, id string) (*store.Port, error) {
	return s.f.inner.GetPort(ctx, id)
}

// ListPorts implements store.NodeReader.
func (s feedStore) ListPorts(ctx context.Context, fl store.PortFilter) ([]*store.Port, error) {
	return s.f.inner.ListPorts(ctx, fl)
}

// NodeHistory implements store.HistoryStore.
func (s feedStore) NodeHistory(ctx context.Context, nodeID int64, q store.HistoryQuery) ([]*store.HistoryEvent, error) {
	return s.f.inner.NodeHistory(ctx, nodeID, q)
}

// NodeHistoryEvent implements store.HistoryStore.
func (s feedStore) NodeHistoryEvent(ctx context.Context, nodeID int64, uuid string) (*store.HistoryEvent, error) {
	return s.f.inner.NodeHistoryEvent(ctx, nodeID, uuid)
}

// PruneHistory implements store.HistoryStore (history is not published).
func (s feedStore) PruneHistory(ctx context.Context, keep, limit int) (int64, error) {
	return s.f.inner.PruneHistory(ctx, keep, limit)
}

// Close implements store.Store: it closes the inner store.
func (s feedStore) Close() error { return s.f.inner.Close() }

// CreateNode implements store.Store and publishes the created node.
func (s feedStore) CreateNode(ctx context.Context, n *store.Node) error {
	if n.UUID == "" {
		// Known before the insert, so that the node's order lock is held
		// before any transaction on it can commit.
		n.UUID = uuid.NewString()
	}
	unlock := s.f.order.lock("node/" + n.UUID)
	defer unlock()
	if err := s.f.inner.CreateNode(ctx, n); err != nil {
		return err
	}
	s.f.publish(Change{Kind: NodeChanged, NodeUUID: n.UUID, Node: n.Clone(),
		Moves: []Move{{From: statemachine.NoState, To: n.ProvisionState, At: n.CreatedAt}}})
	return nil
}

// WithNodeLock implements store.NodeLocker. Inside the transaction, the
// node's order lock is taken; once the transaction committed a change (the
// store stamps UpdatedAt when it saves) or a deletion, the node is
// published, and only then is the order lock released.
func (s feedStore) WithNodeLock(ctx context.Context, ident string, fn func(store.Tx) error) error {
	var (
		unlock  func()
		node    *store.Node
		before  time.Time
		from    statemachine.State
		deleted bool
	)
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	run := func(tx store.Tx) error {
		n := tx.Node()
		if unlock == nil {
			unlock = s.f.order.lock("node/" + n.UUID)
		}
		before, from = n.UpdatedAt, n.ProvisionState
		ft := &feedTx{Tx: tx}
		if err := fn(ft); err != nil {
			return err
		}
		node, deleted = n, ft.deleted
		return nil
	}
	// A store that keeps its committed nodes read-only hands over the one
	// to publish; otherwise the feed takes its own copy.
	var (
		committed *store.Node
		err       error
	)
	if cl, ok := s.f.inner.(store.CommittedNodeLocker); ok {
		committed, err = cl.WithNodeLockCommitted(ctx, ident, run)
	} else {
		err = s.f.inner.WithNodeLock(ctx, ident, run)
	}
	if err != nil || node == nil {
		return err
	}
	switch {
	case deleted:
		s.f.publish(Change{Kind: NodeDeleted, NodeUUID: node.UUID, Node: node.Clone()})
	case !node.UpdatedAt.Equal(before):
		if committed == nil {
			committed = node.Clone()
		}
		c := Change{Kind: NodeChanged, NodeUUID: node.UUID, Node: committed}
		if node.ProvisionState != from {
			c.Moves = []Move{{From: from, To: node.ProvisionState, At: node.ProvisionUpdatedAt}}
		}
		s.f.publish(c)
	}
	return nil
}

// feedTx notes a deletion.
type feedTx struct {
	store.Tx
	deleted bool
}

// DeleteNode implements store.Tx.
func (t *feedTx) DeleteNode(ctx context.Context) error {
	if err := t.Tx.DeleteNode(ctx); err != nil {
		return err
	}
	t.deleted = true
	return nil
}

// CreatePort implements store.Store and publishes the created port.
func (s feedStore) CreatePort(ctx context.Context, p *store.Port) error {
	if p.UUID == "" {
		p.UUID = uuid.NewString()
	}
	unlock := s.f.order.lock("port/" + p.UUID)
	defer unlock()
	if err := s.f.inner.CreatePort(ctx, p); err != nil {
		return err
	}
	s.f.publish(Change{Kind: PortChanged, NodeUUID: p.NodeUUID, Port: p.Clone()})
	return nil
}

// DeletePort implements store.Store and publishes the deletion with the
// port as it was.
func (s feedStore) DeletePort(ctx context.Context, id string) error {
	old, err := s.f.inner.GetPort(ctx, id)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return s.f.inner.DeletePort(ctx, id) // the store's own not-found answer
		}
		return err
	}
	unlock := s.f.order.lock("port/" + old.UUID)
	defer unlock()
	if err := s.f.inner.DeletePort(ctx, id); err != nil {
		return err
	}
	s.f.publish(Change{Kind: PortDeleted, NodeUUID: old.NodeUUID, Port: old})
	return nil
}

// UpdatePort implements the API's optional port update and publishes the
// port as saved.
func (s *updatingStore) UpdatePort(ctx context.Context, p *store.Port) error {
	unlock := s.f.order.lock("port/" + p.UUID)
	defer unlock()
	if err := s.f.inner.(portUpdater).UpdatePort(ctx, p); err != nil {
		return err
	}
	s.f.publish(Change{Kind: PortChanged, NodeUUID: p.NodeUUID, Port: p.Clone()})
	return nil
}

// keyLocks is a set of mutexes by key, each existing while used.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// lock takes key's mutex and returns its release.
func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
