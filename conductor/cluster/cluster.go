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
// Member implements the provision engine's Ownership seam: Owns before
// working on a node, Gained for nodes whose work must be resumed.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/statemachine"
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
	// Leave unregisters conductor name and releases all its leases.
	Leave(ctx context.Context, name string) error
	// NodeLeases lists every node with its lease.
	NodeLeases(ctx context.Context) ([]NodeLease, error)
	// AcquireLease gives owner the node's lease for ttl if it is free,
	// expired or already owner's (a renewal). It reports false when
	// another conductor holds it or the node does not exist.
	AcquireLease(ctx context.Context, nodeUUID, owner string, ttl time.Duration) (bool, error)
	// RenewLeases extends every lease owner holds to ttl from now and
	// returns the nodes.
	RenewLeases(ctx context.Context, owner string, ttl time.Duration) ([]string, error)
	// ReleaseLease gives up owner's lease of the node, provided the node's
	// provision state is one of states at that moment (checked in the same
	// statement). It reports whether the lease was released.
	ReleaseLease(ctx context.Context, nodeUUID, owner string, states []statemachine.State) (bool, error)
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
	// Metrics, when set, counts the leases taken over from another
	// conductor (conductor/metrics.Metrics).
	Metrics interface{ LeaseTakeover() }
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
	return &Member{reg: reg, cfg: cfg, log: cfg.Logger.With("conductor", cfg.Name),
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
	m.tick(ctx, false)
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
	if err := m.reg.Leave(ctx, m.cfg.Name); err != nil {
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
	m.own.RLock()
	defer m.own.RUnlock()
	now := time.Now()
	m.mu.Lock()
	l, wasHeld := m.held[nodeUUID]
	if wasHeld && now.Before(l.deadline) {
		l.asked = now
		m.mu.Unlock()
		return true, nil
	}
	desired := Choose(m.live, nodeUUID)
	m.mu.Unlock()
	if !wasHeld && desired != m.cfg.Name {
		return false, nil
	}
	ok, err := m.reg.AcquireLease(ctx, nodeUUID, m.cfg.Name, m.cfg.LeaseTTL)
	if err != nil {
		return false, fmt.Errorf("cluster: own node %s: %w", nodeUUID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ok {
		m.held[nodeUUID] = &lease{deadline: m.deadline(now), asked: now}
	} else if _, still := m.held[nodeUUID]; still {
		delete(m.held, nodeUUID)
		m.log.Warn("lease lost to another conductor", "node", nodeUUID)
	}
	return ok, nil
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
			m.tick(ctx, true)
		}
	}
}

// tick is one round: heartbeat, renew, scan. Failures are logged; leases
// that cannot be renewed lapse on their own.
func (m *Member) tick(ctx context.Context, heartbeat bool) {
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
	m.renew(ctx)
	m.scan(ctx)
}

// renew extends all our leases and reconciles the held set with the
// database: leases we did not know we held (after a restart) are gained,
// leases gone from the database are lost.
func (m *Member) renew(ctx context.Context) {
	sent := time.Now()
	nodes, err := m.reg.RenewLeases(ctx, m.cfg.Name, m.cfg.LeaseTTL)
	if err != nil {
		m.logErr(ctx, "renewing leases failed", err)
		return
	}
	renewed := make(map[string]bool, len(nodes))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range nodes {
		renewed[u] = true
		if l, ok := m.held[u]; ok {
			l.deadline = m.deadline(sent)
			continue
		}
		m.held[u] = &lease{deadline: m.deadline(sent)}
		m.gain(u)
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
	ok, err := m.reg.AcquireLease(ctx, l.NodeUUID, m.cfg.Name, m.cfg.LeaseTTL)
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
		return
	}
	m.held[l.NodeUUID] = &lease{deadline: m.deadline(sent)}
	if l.Owner != "" && l.Owner != m.cfg.Name {
		m.log.Info("took over node from conductor", "node", l.NodeUUID, "from", l.Owner,
			"provision_state", string(l.ProvisionState))
		if m.cfg.Metrics != nil {
			m.cfg.Metrics.LeaseTakeover()
		}
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
	released, err := m.reg.ReleaseLease(ctx, l.NodeUUID, m.cfg.Name, stableStates)
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
