package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// fakeRegistry is an in-memory Registry with the PostgreSQL store's
// semantics, on the real clock.
type fakeRegistry struct {
	mu         sync.Mutex
	conductors map[string]time.Time
	nodes      []string
	states     map[string]statemachine.State
	leases     map[string]*fakeLease
}

type fakeLease struct {
	owner       string
	incarnation string
	expires     time.Time
	generation  int
}

func newFakeRegistry(nodes int, state statemachine.State) *fakeRegistry {
	r := &fakeRegistry{conductors: map[string]time.Time{}, states: map[string]statemachine.State{},
		leases: map[string]*fakeLease{}}
	for _, n := range nodeNames(nodes) {
		r.nodes = append(r.nodes, n)
		r.states[n] = state
	}
	return r
}

func (r *fakeRegistry) Heartbeat(ctx context.Context, name, apiURL string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conductors[name] = time.Now()
	return nil
}

func (r *fakeRegistry) LiveConductors(ctx context.Context, within time.Duration) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for c, at := range r.conductors {
		if time.Since(at) <= within {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (r *fakeRegistry) Leave(ctx context.Context, h Holder) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conductors, h.Name)
	for _, l := range r.leases {
		if l.owner == h.Name && l.incarnation == h.Incarnation {
			l.owner, l.incarnation, l.expires = "", "", time.Now()
		}
	}
	return nil
}

func (r *fakeRegistry) LeaseHolder(ctx context.Context, node string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.leases[node]; l != nil && time.Now().Before(l.expires) {
		return l.owner, nil
	}
	return "", nil
}

func (r *fakeRegistry) NodeLeases(ctx context.Context) ([]NodeLease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []NodeLease
	for _, n := range r.nodes {
		nl := NodeLease{NodeUUID: n, ProvisionState: r.states[n]}
		if l := r.leases[n]; l != nil {
			nl.Owner, nl.Expired = l.owner, time.Now().After(l.expires)
		}
		out = append(out, nl)
	}
	return out, nil
}

func (r *fakeRegistry) AcquireLease(ctx context.Context, node string, h Holder, ttl time.Duration) (int64, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.states[node]; !ok {
		return 0, false, nil
	}
	l := r.leases[node]
	switch {
	case l == nil:
		l = &fakeLease{owner: h.Name, incarnation: h.Incarnation, expires: time.Now().Add(ttl), generation: 1}
		r.leases[node] = l
	case l.owner == h.Name && l.incarnation == h.Incarnation:
		l.expires = time.Now().Add(ttl)
	case l.owner == "" || time.Now().After(l.expires):
		l.owner, l.incarnation, l.expires = h.Name, h.Incarnation, time.Now().Add(ttl)
		l.generation++
	default:
		return 0, false, nil
	}
	return int64(l.generation), true, nil
}

func (r *fakeRegistry) RenewLeases(ctx context.Context, h Holder, ttl time.Duration, adopt bool) ([]HeldLease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []HeldLease
	for n, l := range r.leases {
		if adopt && l.owner == h.Name && l.incarnation != h.Incarnation && time.Now().Before(l.expires) {
			l.incarnation = h.Incarnation
			l.generation++
		}
		if l.owner == h.Name && l.incarnation == h.Incarnation {
			l.expires = time.Now().Add(ttl)
			out = append(out, HeldLease{NodeUUID: n, Generation: int64(l.generation)})
		}
	}
	return out, nil
}

func (r *fakeRegistry) ReleaseLease(ctx context.Context, node string, h Holder, states []statemachine.State) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.leases[node]
	if l == nil || l.owner != h.Name || l.incarnation != h.Incarnation || !slices.Contains(states, r.states[node]) {
		return false, nil
	}
	l.owner, l.incarnation, l.expires = "", "", time.Now()
	return true, nil
}

func (r *fakeRegistry) setState(node string, st statemachine.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states[node] = st
}

// owners maps each node to its lease's current holder ("" if none).
func (r *fakeRegistry) owners() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for _, n := range r.nodes {
		if l := r.leases[n]; l != nil && time.Now().Before(l.expires) {
			out[n] = l.owner
		} else {
			out[n] = ""
		}
	}
	return out
}

func (r *fakeRegistry) generation(node string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.leases[node]; l != nil {
		return l.generation
	}
	return 0
}

// fastConfig is a member config with test-sized periods.
func fastConfig(name string) Config {
	return Config{Name: name, Interval: 20 * time.Millisecond, DeadAfter: 200 * time.Millisecond,
		LeaseTTL: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// started is a running member and the nodes it reported on Gained.
type started struct {
	*Member
	mu     sync.Mutex
	gained []string
	done   chan struct{}
}

func start(t *testing.T, reg Registry, name string) *started {
	t.Helper()
	m, err := New(reg, fastConfig(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := &started{Member: m, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for u := range m.Gained() {
			s.mu.Lock()
			s.gained = append(s.gained, u)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.Close(); <-s.done })
	return s
}

// crash stops a member as a killed process would: no unregistering, no
// lease released.
func (s *started) crash() {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.Member.gained)
	<-s.done
}

func (s *started) gainedSet() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, u := range s.gained {
		out[u] = true
	}
	return out
}

// eventually polls cond until it holds, failing after a generous bound
// (a liveness bound, not a timing claim).
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ownedAsChosen checks that every node is held by the live conductor
// rendezvous hashing picks.
func ownedAsChosen(reg *fakeRegistry, live []string) func() error {
	return func() error {
		for n, owner := range reg.owners() {
			if want := Choose(live, n); owner != want {
				return fmt.Errorf("node %s held by %q, want %q", n, owner, want)
			}
		}
		return nil
	}
}

func TestMembersSplitNodes(t *testing.T) {
	reg := newFakeRegistry(60, statemachine.Available)
	a := start(t, reg, "a")
	eventually(t, "a alone owns every node", ownedAsChosen(reg, []string{"a"}))
	b := start(t, reg, "b")
	eventually(t, "the nodes split between a and b", ownedAsChosen(reg, []string{"a", "b"}))
	for n, owner := range reg.owners() {
		held := a.Held()
		if owner == "b" {
			held = b.Held()
		}
		if !slices.Contains(held, n) {
			t.Fatalf("node %s: the registry says %s holds it, the member does not know", n, owner)
		}
	}
	eventually(t, "b reports its nodes on Gained", func() error {
		got := b.gainedSet()
		for _, n := range b.Held() {
			if !got[n] {
				return fmt.Errorf("node %s held but not reported", n)
			}
		}
		return nil
	})
}

func TestDeadMembersNodesAreTakenOver(t *testing.T) {
	reg := newFakeRegistry(40, statemachine.Available)
	a := start(t, reg, "a")
	b := start(t, reg, "b")
	eventually(t, "the nodes split", ownedAsChosen(reg, []string{"a", "b"}))
	aNodes := a.Held()
	if len(aNodes) == 0 {
		t.Fatal("a holds no node")
	}
	// a is mid-deploy on its nodes when it dies.
	for _, n := range aNodes {
		reg.setState(n, statemachine.DeployWait)
	}
	a.crash()
	eventually(t, "b owns every node", ownedAsChosen(reg, []string{"b"}))
	// Gained is delivered by its own goroutine: it may trail the lease.
	eventually(t, "b reports the dead conductor's nodes on Gained", func() error {
		got := b.gainedSet()
		for _, n := range aNodes {
			if !got[n] {
				return fmt.Errorf("node %s was taken over but not reported on Gained", n)
			}
		}
		return nil
	})
	for _, n := range aNodes {
		if g := reg.generation(n); g < 2 {
			t.Fatalf("node %s: lease generation %d after a takeover", n, g)
		}
	}
}

func TestBusyNodesAreNotHandedOver(t *testing.T) {
	reg := newFakeRegistry(40, statemachine.Deploying)
	var bound []string // the nodes b should own once it joins
	for _, n := range reg.nodes {
		if Choose([]string{"a", "b"}, n) == "b" {
			bound = append(bound, n)
		}
	}
	if len(bound) < 3 {
		t.Fatalf("only %d of 40 nodes go to b", len(bound))
	}
	idle, finishing, busy := bound[0], bound[1], bound[2:]
	reg.setState(idle, statemachine.Active)
	start(t, reg, "a")
	eventually(t, "a owns every node", ownedAsChosen(reg, []string{"a"}))
	start(t, reg, "b")
	owner := func(n, want string) func() error {
		return func() error {
			if o := reg.owners()[n]; o != want {
				return fmt.Errorf("node %s held by %q, want %q", n, o, want)
			}
			return nil
		}
	}
	eventually(t, "the idle node moves to b", owner(idle, "b"))
	time.Sleep(5 * fastConfig("").Interval)
	for _, n := range append(busy, finishing) {
		if err := owner(n, "a")(); err != nil {
			t.Fatalf("a node mid-deploy moved: %v", err)
		}
	}
	// Once its deploy is over, a busy node moves too.
	reg.setState(finishing, statemachine.Active)
	eventually(t, "the finished node moves to b", owner(finishing, "b"))
}

func TestOwns(t *testing.T) {
	ctx := context.Background()
	reg := newFakeRegistry(0, "")
	a, err := New(reg, fastConfig("a"))
	if err != nil {
		t.Fatal(err)
	}
	// Not started: a counts only itself as live, and has no scan loop.
	defer a.Close()
	a.mu.Lock()
	a.live = []string{"a", "b"}
	a.mu.Unlock()
	var mine, theirs string
	for _, n := range nodeNames(10) {
		reg.nodes = append(reg.nodes, n)
		reg.states[n] = statemachine.Available
		if Choose([]string{"a", "b"}, n) == "a" {
			mine = n
		} else {
			theirs = n
		}
	}
	if ok, err := a.Owns(ctx, theirs); ok || err != nil {
		t.Fatalf("Owns(node b should own) = %v, %v", ok, err)
	}
	if o := reg.owners()[theirs]; o != "" {
		t.Fatalf("Owns took the lease of a node b should own (%q)", o)
	}
	if ok, err := a.Owns(ctx, mine); !ok || err != nil {
		t.Fatalf("Owns(free node a should own) = %v, %v", ok, err)
	}
	if o := reg.owners()[mine]; o != "a" {
		t.Fatalf("lease of %s held by %q after Owns", mine, o)
	}
	if ok, _ := a.Owns(ctx, "no-such-node"); ok {
		t.Fatal("Owns(unknown node) = true")
	}
	f, ok, err := a.Lease(ctx, mine)
	if !ok || err != nil || f.Owner != "a" || f.Generation != 1 || !a.Holds(mine, f) {
		t.Fatalf("Lease(%s) = %+v, %v, %v; Holds %v", mine, f, ok, err, a.Holds(mine, f))
	}
	if a.Holds(mine, store.Fence{Owner: "a", Generation: 2}) || a.Holds(theirs, f) {
		t.Fatal("Holds accepts another generation or another node")
	}
	// b holds a node a should own: a must not take it.
	reg.leases[mine].owner = "b"
	a.mu.Lock()
	a.held[mine].deadline = time.Time{} // our lease has lapsed locally
	a.mu.Unlock()
	if ok, _ := a.Owns(ctx, mine); ok {
		t.Fatal("Owns = true for a node another conductor took over")
	}
	if slices.Contains(a.Held(), mine) {
		t.Fatal("a still believes it holds a lost lease")
	}
	if a.Holds(mine, f) {
		t.Fatal("Holds = true for a lost lease")
	}
}

func TestRestartTakesLeasesBack(t *testing.T) {
	reg := newFakeRegistry(20, statemachine.DeployWait)
	a := start(t, reg, "a")
	eventually(t, "a owns every node", ownedAsChosen(reg, []string{"a"}))
	before := a.Held()
	a.crash()
	// Restarted before its leases expire, the conductor holds them again
	// as soon as Start returns; its engine finds them through Owns.
	again := start(t, reg, "a")
	if got := again.Held(); !slices.Equal(got, before) {
		t.Fatalf("after restart holds %d nodes, want the %d it held", len(got), len(before))
	}
	for _, n := range before {
		if ok, err := again.Owns(context.Background(), n); !ok || err != nil {
			t.Fatalf("Owns(%s) after restart = %v, %v", n, ok, err)
		}
		// The new process is a new holder: the generation went up, so
		// work the old process started is fenced out.
		if g := reg.generation(n); g != 2 {
			t.Fatalf("node %s: generation %d, want 2 (taken over by the restarted process)", n, g)
		}
	}
	time.Sleep(3 * fastConfig("").Interval)
	if got := again.gainedSet(); len(got) != 0 {
		t.Fatalf("leases held at Start reported on Gained: %v", got)
	}
}

func TestCloseReleasesAndStops(t *testing.T) {
	before := runtime.NumGoroutine()
	reg := newFakeRegistry(10, statemachine.Available)
	m, err := New(reg, fastConfig("a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(m.Held()) != 10 {
		t.Fatalf("holds %d nodes after Start, want 10", len(m.Held()))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-m.Gained(); open {
		// Undelivered gains are dropped at Close; the channel must
		// still end up closed.
		for range m.Gained() {
		}
	}
	for n, o := range reg.owners() {
		if o != "" {
			t.Fatalf("node %s still held by %q after Close", n, o)
		}
	}
	if live, _ := reg.LiveConductors(context.Background(), time.Hour); len(live) != 0 {
		t.Fatalf("conductor still registered after Close: %v", live)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	eventually(t, "goroutines end", func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

func TestConfigChecks(t *testing.T) {
	if _, err := New(newFakeRegistry(0, ""), Config{}); err == nil {
		t.Fatal("New accepted an empty name")
	}
	_, err := New(newFakeRegistry(0, ""), Config{Name: "a", Interval: time.Second, LeaseTTL: time.Second})
	if err == nil {
		t.Fatal("New accepted a lease TTL shorter than two intervals")
	}
	m, err := New(newFakeRegistry(0, ""), Config{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.Interval != 5*time.Second || m.cfg.LeaseTTL != 30*time.Second || m.cfg.DeadAfter != 30*time.Second {
		t.Fatalf("defaults: %+v", m.cfg)
	}
}

// failingRegistry cannot record heartbeats.
type failingRegistry struct{ fakeRegistry }

func (*failingRegistry) Heartbeat(context.Context, string, string) error {
	return errors.New("database down")
}

func TestStartFailsWithoutDatabase(t *testing.T) {
	m, err := New(&failingRegistry{}, fastConfig("a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded with the database down")
	}
	m.Close()
}

// TestPausedMemberIsFencedOut: a member paused past its lease (its loop
// not running, as under SIGSTOP) stops holding it by its own clock, with
// no database round trip; once another member takes the node over, the
// paused one, resumed, neither renews nor retakes it, and its old fence
// never holds again.
func TestPausedMemberIsFencedOut(t *testing.T) {
	ctx := context.Background()
	reg := newFakeRegistry(4, statemachine.DeployWait)
	a := start(t, reg, "a")
	node := reg.nodes[0]
	f, ok, err := a.Lease(ctx, node)
	if !ok || err != nil || !a.Holds(node, f) {
		t.Fatalf("Lease = %+v, %v, %v", f, ok, err)
	}
	// Pause a: its loop stops; its leases stay in the database.
	a.cancel()
	a.wg.Wait()
	eventually(t, "a's own clock says its lease ran out", func() error {
		if a.Holds(node, f) {
			return errors.New("still held")
		}
		return nil
	})
	b := start(t, reg, "b")
	eventually(t, "b takes every node over", func() error {
		for n, o := range reg.owners() {
			if o != "b" {
				return fmt.Errorf("node %s held by %q", n, o)
			}
		}
		return nil
	})
	if g := reg.generation(node); g != 2 {
		t.Fatalf("generation %d after the takeover, want 2", g)
	}
	// Resume a: one round of its loop, then the engine asking again.
	a.tick(ctx, true, false)
	if slices.Contains(a.Held(), node) || a.Holds(node, f) {
		t.Fatal("the resumed member still holds the lost lease")
	}
	if _, ok, err := a.Lease(ctx, node); ok || err != nil {
		t.Fatalf("the resumed member retook a lease b holds: %v, %v", ok, err)
	}
	if bf, ok, _ := b.Lease(ctx, node); !ok || bf.Generation != 2 || !b.Holds(node, bf) || b.Holds(node, f) {
		t.Fatalf("b's fence %+v (ok %v); the old fence must not hold for b either", bf, ok)
	}
}
