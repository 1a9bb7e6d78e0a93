// Package cluster lets several conductors share one database (the
// PostgreSQL store) and split the nodes between them. Each conductor is a
// Member: it registers and heartbeats in the database, and owns nodes
// through expiring leases taken and renewed with conditional updates, so a
// lease has at most one holder at a time. Rendezvous hashing over the live
// conductors decides who should own each node: a conductor takes the free
// and expired leases of the nodes it should own, hands over idle nodes
// (in a stable provision state) that should now be another's, and so takes
// over a dead conductor's nodes once their leases run out — about LeaseTTL
// after its last renewal, well within a minute with the defaults.
//
// Leases are fenced: each has a generation that goes up whenever it
// changes hands (another conductor, or a new process of the same one), and
// the engine's work on a node carries the lease it started under
// (store.Fence). Every node transaction checks it in the database, and
// every power-driver and agent call checks it first against this member's
// own clock (Holds), so a conductor that lost a node — paused past its
// lease, then resumed — makes no write and no call for it.
//
// Member implements the provision engine's Ownership seam: Lease before
// working on a node, Holds before every call out, Gained for nodes whose
// work must be resumed.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// NodeLease is a node and its lease as the database sees them.
type NodeLease struct {
	NodeUUID       string
	ProvisionState statemachine.State
	// Owner holds (or last held) the lease; "" when the node has none.
	Owner string
	// Expired reports that the lease ran out (by the database's clock).
	Expired bool
}

// Holder is who holds a lease: a conductor (its name) and the incarnation
// of its process, random at every start. A conductor restarted under the
// same name takes its leases over as a new holder, so that its previous
// process, were it still running, is fenced out.
type Holder struct {
	Name        string
	Incarnation string
}

// HeldLease is a lease as its holder knows it.
type HeldLease struct {
	NodeUUID string
	// Generation is the lease's fencing number: it goes up whenever the
	// lease changes holder.
	Generation int64
}

// Registry is the shared database the members meet in (implemented by
// conductor/store/postgres). Every time it compares is the database's, so
// the conductors' clocks never need to agree.
type Registry interface {
	// Heartbeat records that conductor name, serving at apiURL, is alive
	// now, registering it when new.
	Heartbeat(ctx context.Context, name, apiURL string) error
	// LiveConductors lists the conductors whose last heartbeat is no
	// older than within.
	LiveConductors(ctx context.Context, within time.Duration) ([]string, error)
	// Leave unregisters conductor h.Name and releases all h's leases.
	Leave(ctx context.Context, h Holder) error
	// NodeLeases lists every node with its lease.
	NodeLeases(ctx context.Context) ([]NodeLease, error)
	// LeaseHolder names the conductor that holds the node's lease, ""
	// when the lease is free or expired (or the node does not exist).
	LeaseHolder(ctx context.Context, nodeUUID string) (string, error)
	// AcquireLease gives h the node's lease for ttl if it is free,
	// expired or already h's (a renewal), and returns its generation,
	// which goes up whenever the holder changes. It reports false when
	// another holder has it (another conductor, or another incarnation of
	// this one) or the node does not exist.
	AcquireLease(ctx context.Context, nodeUUID string, h Holder, ttl time.Duration) (int64, bool, error)
	// RenewLeases extends every lease h holds to ttl from now and returns
	// them. With adopt (a restart), it first takes over the unexpired
	// leases earlier incarnations of h.Name hold, each with a new
	// generation.
	RenewLeases(ctx context.Context, h Holder, ttl time.Duration, adopt bool) ([]HeldLease, error)
	// ReleaseLease gives up h's lease of the node, provided the node's
	// provision state is one of states at that moment (checked in the same
	// statement). It reports whether the lease was released.
	ReleaseLease(ctx context.Context, nodeUUID string, h Holder, states []statemachine.State) (bool, error)
}

// Config configures a Member. Zero durations take the defaults.
type Config struct {
	// Name identifies the conductor in the cluster; it must be unique
	// among the conductors sharing the database and stable across
	// restarts (a restarted conductor takes its unexpired leases back).
	Name string
	// APIURL is recorded with the registration, for operators.
	APIURL string
	// Interval is the period of the heartbeat, the lease renewal and the
	// ownership scan (default 5 s).
	Interval time.Duration
	// DeadAfter is how old a conductor's last heartbeat may be before the
	// others stop counting it as live (default 30 s, at least 2 Interval).
	DeadAfter time.Duration
	// LeaseTTL is how long a lease lasts unless renewed (default 30 s, at
	// least 2 Interval). A dead conductor's nodes are taken over after at
	// most max(LeaseTTL, DeadAfter) + Interval.
	LeaseTTL time.Duration
	// Logger receives the member's logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Name == "" {
		return errors.New("cluster: conductor name is empty")
	}
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 30 * time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 30 * time.Second
	}
	if c.DeadAfter < 2*c.Interval || c.LeaseTTL < 2*c.Interval {
		return fmt.Errorf("cluster: dead-after %s and lease TTL %s must be at least twice the interval %s",
			c.DeadAfter, c.LeaseTTL, c.Interval)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// stableStates are the states in which a node has no work in flight, so
// its lease may be handed to the conductor that should own it.
var stableStates = func() []statemachine.State {
	var out []statemachine.State
	for _, s := range statemachine.States() {
		if statemachine.IsStable(s) {
			out = append(out, s)
		}
	}
	return out
}()

// lease is a lease this member holds.
type lease struct {
	// generation is the lease's fencing number in the database.
	generation int64
	// deadline is when the lease may expire, by our clock: the time the
	// acquiring or renewing request was sent plus 9/10 of the TTL. The
	// database expires it no earlier.
	deadline time.Time
	// asked is when Owns last answered true for it; a node asked about
	// within the last TTL is not handed over.
	asked time.Time
}

// Member is one conductor's membership of the cluster.
type Member struct {
	reg Registry
	cfg Config
	log *slog.Logger
	// me is this process as a lease holder.
	me Holder

	gained chan string
	signal chan struct{}
	// own is held shared by Owns and exclusively by a hand-over, so that
	// no Owns answers true for a lease being released.
	own    sync.RWMutex
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	live    []string
	held    map[string]*lease
	queue   []string // gained, not yet delivered
	started bool
	closed  bool
}

// New returns a member of the cluster kept in reg. Call Start to join.
func New(reg Registry, cfg Config) (*Member, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var inc [8]byte
	if _, err := rand.Read(inc[:]); err != nil {
		return nil, fmt.Errorf("cluster: incarnation: %w", err)
	}
	return &Member{reg: reg, cfg: cfg, log: cfg.Logger.With("conductor", cfg.Name),
		me:     Holder{Name: cfg.Name, Incarnation: hex.EncodeToString(inc[:])},
		gained: make(chan string), signal: make(chan struct{}, 1),
		live: []string{cfg.Name}, held: map[string]*lease{}}, nil
}

// Name is the conductor's name in the cluster.
func (m *Member) Name() string { return m.cfg.Name }

// Start joins the cluster: a first heartbeat, renewal and scan run before
// it returns, then they repeat every Interval in the background until
// Close. The leases held when Start returns (its own unexpired ones after
// a restart, free nodes it should own) are not reported on Gained: the
// engine's recovery, which runs next, finds them through Owns. Start fails
// when the first heartbeat cannot be recorded.
func (m *Member) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started || m.closed {
		m.mu.Unlock()
		return errors.New("cluster: member already started or closed")
	}
	m.started = true
	m.mu.Unlock()
	if err := m.reg.Heartbeat(ctx, m.cfg.Name, m.cfg.APIURL); err != nil {
		m.mu.Lock()
		m.started = false
		m.mu.Unlock()
		return fmt.Errorf("cluster: join as %s: %w", m.cfg.Name, err)
	}
	m.tick(ctx, false, true)
	m.mu.Lock()
	m.queue = nil
	m.mu.Unlock()
	lctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.loop(lctx)
	}()
	go func() {
		defer m.wg.Done()
		m.deliver(lctx)
	}()
	m.log.Info("joined the conductor cluster", "live", m.Live(), "held", len(m.Held()))
	return nil
}

// Close leaves the cluster: the background work stops, the conductor is
// unregistered and its leases are released, so the others take its nodes
// over at once. Stop the engine first: its work must not outlive the
// leases. Gained is closed.
func (m *Member) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	started := m.started
	m.mu.Unlock()
	if !started {
		close(m.gained)
		return nil
	}
	m.cancel()
	m.wg.Wait()
	close(m.gained)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.mu.Lock()
	n := len(m.held)
	m.held = map[string]*lease{}
	m.mu.Unlock()
	if err := m.reg.Leave(ctx, m.me); err != nil {
		return fmt.Errorf("cluster: leave as %s: %w", m.cfg.Name, err)
	}
	m.log.Info("left the conductor cluster", "released", n)
	return nil
}

// Owns reports whether this conductor owns the node, holding, renewing or
// just taking its lease: a held lease answers at once; an unknown or
// lapsing one costs a conditional update, and a free or expired lease is
// taken only if rendezvous hashing picks this conductor. A node taken here
// is not reported on Gained: the caller is already working on it. A node
// that does not exist is not owned.
func (m *Member) Owns(ctx context.Context, nodeUUID string) (bool, error) {
	_, ok, err := m.Lease(ctx, nodeUUID)
	return ok, err
}

// Lease is Owns that also returns the fence of the lease held: the work
// this conductor starts on the node now is done under it (store.Fence).
func (m *Member) Lease(ctx context.Context, nodeUUID string) (store.Fence, bool, error) {
	m.own.RLock()
	defer m.own.RUnlock()
	now := time.Now()
	m.mu.Lock()
	l, wasHeld := m.held[nodeUUID]
	if wasHeld && now.Before(l.deadline) {
		l.asked = now
		f := m.fence(l)
		m.mu.Unlock()
		return f, true, nil
	}
	desired := Choose(m.live, nodeUUID)
	m.mu.Unlock()
	if !wasHeld && desired != m.cfg.Name {
		return store.Fence{}, false, nil
	}
	gen, ok, err := m.reg.AcquireLease(ctx, nodeUUID, m.me, m.cfg.LeaseTTL)
	if err != nil {
		return store.Fence{}, false, fmt.Errorf("cluster: own node %s: %w", nodeUUID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ok {
		if _, still := m.held[nodeUUID]; still {
			delete(m.held, nodeUUID)
			m.log.Warn("lease lost to another conductor", "node", nodeUUID)
		}
		return store.Fence{}, false, nil
	}
	l = &lease{generation: gen, deadline: m.deadline(now), asked: now}
	m.held[nodeUUID] = l
	return m.fence(l), true, nil
}

// Holds reports whether this conductor still holds the node's lease under
// fence f: the same generation, and not past its deadline by this
// conductor's own clock (which falls a tenth of the TTL before the
// database's expiry). It asks nothing of the database, and it is false
// for a conductor that was paused past its lease until a renewal, made
// since, confirmed the lease unchanged. The engine asks it before every
// power-driver and agent call.
func (m *Member) Holds(nodeUUID string, f store.Fence) bool {
	if f.Owner != m.cfg.Name {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[nodeUUID]
	return ok && l.generation == f.Generation && time.Now().Before(l.deadline)
}

// Holder names the conductor holding the node's lease, "" when it is free
// or expired.
func (m *Member) Holder(ctx context.Context, nodeUUID string) (string, error) {
	h, err := m.reg.LeaseHolder(ctx, nodeUUID)
	if err != nil {
		return "", fmt.Errorf("cluster: lease holder of node %s: %w", nodeUUID, err)
	}
	return h, nil
}

// fence is the fence of a held lease; m.mu is held.
func (m *Member) fence(l *lease) store.Fence {
	return store.Fence{Owner: m.cfg.Name, Generation: l.generation}
}

// Gained delivers the nodes whose lease this conductor came to hold in
// the background after Start — nodes of a dead conductor, nodes handed
// over, new nodes — so the engine resumes their work. It is closed by
// Close. Deliveries wait for a reader without holding up renewals.
func (m *Member) Gained() <-chan string { return m.gained }

// Live is the conductors counted live at the last scan, sorted.
func (m *Member) Live() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.live)
}

// Held lists the nodes whose lease this conductor holds, sorted.
func (m *Member) Held() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.held))
	for u := range m.held {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// deadline is the local deadline of a lease requested at sent.
func (m *Member) deadline(sent time.Time) time.Time {
	return sent.Add(m.cfg.LeaseTTL * 9 / 10)
}

func (m *Member) loop(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.tick(ctx, true, false)
		}
	}
}

// tick is one round: heartbeat, renew, scan. Failures are logged; leases
// that cannot be renewed lapse on their own. The first round after a
// start adopts the leases of this conductor's previous process.
func (m *Member) tick(ctx context.Context, heartbeat, first bool) {
	if heartbeat {
		if err := m.reg.Heartbeat(ctx, m.cfg.Name, m.cfg.APIURL); err != nil {
			m.logErr(ctx, "cluster heartbeat failed", err)
		}
	}
	if live, err := m.reg.LiveConductors(ctx, m.cfg.DeadAfter); err != nil {
		m.logErr(ctx, "listing live conductors failed", err)
	} else {
		if !slices.Contains(live, m.cfg.Name) {
			live = append(live, m.cfg.Name)
		}
		slices.Sort(live)
		m.mu.Lock()
		if !slices.Equal(live, m.live) {
			m.log.Info("live conductors changed", "live", live, "before", m.live)
		}
		m.live = live
		m.mu.Unlock()
	}
	m.renew(ctx, first)
	m.scan(ctx)
}

// renew extends all our leases and reconciles the held set with the
// database: leases we did not know we held (adopted after a restart) are
// gained, leases gone from the database are lost, and a changed
// generation fences out the work started under the old one.
func (m *Member) renew(ctx context.Context, adopt bool) {
	sent := time.Now()
	leases, err := m.reg.RenewLeases(ctx, m.me, m.cfg.LeaseTTL, adopt)
	if err != nil {
		m.logErr(ctx, "renewing leases failed", err)
		return
	}
	renewed := make(map[string]bool, len(leases))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range leases {
		renewed[r.NodeUUID] = true
		if l, ok := m.held[r.NodeUUID]; ok {
			l.deadline = m.deadline(sent)
			l.generation = r.Generation
			continue
		}
		m.held[r.NodeUUID] = &lease{generation: r.Generation, deadline: m.deadline(sent)}
		m.gain(r.NodeUUID)
	}
	for u := range m.held {
		if !renewed[u] {
			delete(m.held, u)
			m.log.Warn("lease lost to another conductor", "node", u)
		}
	}
}

// scan takes the free and expired leases of the nodes this conductor
// should own, and hands over idle nodes another live conductor should own.
func (m *Member) scan(ctx context.Context) {
	leases, err := m.reg.NodeLeases(ctx)
	if err != nil {
		m.logErr(ctx, "listing node leases failed", err)
		return
	}
	m.mu.Lock()
	live := m.live
	m.mu.Unlock()
	for _, l := range leases {
		if ctx.Err() != nil {
			return
		}
		desired := Choose(live, l.NodeUUID)
		switch {
		case l.Owner == m.cfg.Name && !l.Expired && desired != m.cfg.Name:
			m.handOver(ctx, l, desired)
		case (l.Owner == "" || l.Expired) && desired == m.cfg.Name:
			m.take(ctx, l)
		}
	}
}

// take acquires a free or expired lease and reports the node as gained.
func (m *Member) take(ctx context.Context, l NodeLease) {
	sent := time.Now()
	gen, ok, err := m.reg.AcquireLease(ctx, l.NodeUUID, m.me, m.cfg.LeaseTTL)
	if err != nil {
		m.logErr(ctx, "taking a lease failed", err, "node", l.NodeUUID)
		return
	}
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.held[l.NodeUUID]; ok {
		h.deadline = m.deadline(sent)
		h.generation = gen
		return
	}
	m.held[l.NodeUUID] = &lease{generation: gen, deadline: m.deadline(sent)}
	if l.Owner != "" && l.Owner != m.cfg.Name {
		m.log.Info("took over node from conductor", "node", l.NodeUUID, "from", l.Owner,
			"provision_state", string(l.ProvisionState), "lease_generation", gen)
	}
	m.gain(l.NodeUUID)
}

// handOver releases the lease of a node that should be another's, if it
// is idle: in a stable state (checked by the database at release) and not
// asked about by the engine within the last LeaseTTL.
func (m *Member) handOver(ctx context.Context, l NodeLease, to string) {
	if !statemachine.IsStable(l.ProvisionState) {
		return
	}
	m.own.Lock()
	defer m.own.Unlock()
	m.mu.Lock()
	h, ok := m.held[l.NodeUUID]
	busy := ok && time.Since(h.asked) < m.cfg.LeaseTTL
	m.mu.Unlock()
	if busy {
		return
	}
	released, err := m.reg.ReleaseLease(ctx, l.NodeUUID, m.me, stableStates)
	if err != nil {
		m.logErr(ctx, "releasing a lease failed", err, "node", l.NodeUUID)
		return
	}
	if released {
		m.mu.Lock()
		delete(m.held, l.NodeUUID)
		m.mu.Unlock()
		m.log.Debug("handed node over", "node", l.NodeUUID, "to", to)
	}
}

// gain queues a node for Gained; m.mu is held.
func (m *Member) gain(uuid string) {
	m.queue = append(m.queue, uuid)
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

// deliver sends queued gained nodes to the Gained channel's reader.
func (m *Member) deliver(ctx context.Context) {
	for {
		m.mu.Lock()
		q := m.queue
		m.queue = nil
		m.mu.Unlock()
		for _, u := range q {
			select {
			case m.gained <- u:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-m.signal:
		case <-ctx.Done():
			return
		}
	}
}

func (m *Member) logErr(ctx context.Context, msg string, err error, attrs ...any) {
	if ctx.Err() != nil {
		return
	}
	m.log.Warn(msg, append(attrs, "error", err)...)
}
