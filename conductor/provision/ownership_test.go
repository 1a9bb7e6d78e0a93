package provision

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
	"github.com/rivetmetal/rivet/wire"
)

// scriptedAgent is an in-memory agent that answers get_deploy_steps and
// runs every asynchronous command forever; it records every call.
type scriptedAgent struct {
	mu       sync.Mutex
	calls    []string
	commands []wire.CommandResult
}

func (a *scriptedAgent) Execute(_ context.Context, ep agentclient.Endpoint, name string, _ any, _ bool) (*wire.CommandResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, name+"@"+ep.URL)
	res := wire.CommandResult{ID: name, CommandName: agentclient.ShortName(name), CommandStatus: wire.StatusRunning}
	if name == "deploy.get_deploy_steps" {
		res.CommandStatus = wire.StatusSucceeded
		res.CommandResult = json.RawMessage(`{"deploy_steps":{"GenericHardwareManager":[{"step":"write_image","interface":"deploy","priority":0}]},"hardware_manager_version":{"generic_hardware_manager":"1.1"}}`)
	}
	a.commands = append(a.commands, res)
	return &res, nil
}

func (a *scriptedAgent) Commands(context.Context, agentclient.Endpoint) (*wire.CommandList, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &wire.CommandList{Commands: slices.Clone(a.commands)}, nil
}

func (a *scriptedAgent) Wait(context.Context, agentclient.Endpoint, string, time.Duration, int) (*wire.CommandResult, error) {
	return nil, agentclient.ErrWaitTimeout
}

func (a *scriptedAgent) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// leases is an Ownership a test flips: it owns the listed nodes under
// generation gen, and reports takeovers on Gained.
type leases struct {
	mu     sync.Mutex
	owned  map[string]bool
	gen    int64
	gained chan string
}

func newLeases() *leases {
	return &leases{owned: map[string]bool{}, gen: 1, gained: make(chan string, 4)}
}

func (l *leases) Lease(_ context.Context, uuid string) (store.Fence, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.owned[uuid] {
		return store.Fence{}, false, nil
	}
	return store.Fence{Owner: "test", Generation: l.gen}, true, nil
}

func (l *leases) Holds(uuid string, f store.Fence) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.owned[uuid] && f == store.Fence{Owner: "test", Generation: l.gen}
}

// lose gives up a node's lease, as a conductor paused past its lease
// finds it when it resumes.
func (l *leases) lose(uuid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.owned, uuid)
	l.gen++
}

func (l *leases) Gained() <-chan string { return l.gained }

func (l *leases) take(uuid string) {
	l.mu.Lock()
	l.owned[uuid] = true
	l.mu.Unlock()
	l.gained <- uuid
}

// conductorPair is two engines on one store: a and b, with their own
// agents and ownerships.
type conductorPair struct {
	st         store.Store
	drv        *fake.Driver
	a, b       *Engine
	agentA     *scriptedAgent
	agentB     *scriptedAgent
	ownA, ownB *leases
}

func newPair(t *testing.T) *conductorPair {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	drv, _ := fake.New(fake.Config{})
	p := &conductorPair{st: st, drv: drv, agentA: &scriptedAgent{}, agentB: &scriptedAgent{}, ownA: newLeases(), ownB: newLeases()}
	mk := func(ag Agent, own Ownership) *Engine {
		e, err := New(st, []power.Driver{drv}, ag, Config{
			APIURL: "http://127.0.0.1:6385", StateDir: t.TempDir(), Ownership: own,
			PendingPollInterval: 20 * time.Millisecond, CheckInterval: 50 * time.Millisecond,
			PowerStateInterval: 5 * time.Millisecond, ProgressPollInterval: -1,
			Logger: discardLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return e
	}
	p.a, p.b = mk(p.agentA, p.ownA), mk(p.agentB, p.ownB)
	t.Cleanup(func() {
		p.a.Close()
		p.b.Close()
		st.Close()
	})
	return p
}

// waitDeployWait puts a node in wait call-back as a deploy leaves it after
// booting the ramdisk, with an agent token.
func seedDeployWait(t *testing.T, e *Engine, st store.Store, token string) *store.Node {
	t.Helper()
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: fake.Name, InstanceInfo: map[string]any{
		"image_source": "http://127.0.0.1:6385/images/disk.raw", "image_checksum": strings.Repeat("a", 64)}}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	err := st.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
		n := tx.Node()
		for _, ev := range []statemachine.Event{statemachine.EvManage, statemachine.EvDone, statemachine.EvProvide,
			statemachine.EvDone, statemachine.EvDeploy} {
			if _, err := n.Advance(ev, time.Now()); err != nil {
				return err
			}
		}
		n.InstanceInfo["image_url"] = n.InstanceInfo["image_source"]
		info := &internalinfo.Info{}
		info.Deploy.Plan = e.provisioning.deploy.planSteps(n, info)
		info.Deploy.SetIndex(0)
		info.Deploy.SkipCurrent = true
		info.Agent.Token = token
		if _, err := n.Advance(statemachine.EvWait, time.Now()); err != nil {
			return err
		}
		return info.Encode(n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHeartbeatAtANonOwnerIsProcessedByTheOwner(t *testing.T) {
	p := newPair(t)
	tok := strings.Repeat("t", 43)
	n := seedDeployWait(t, p.a, p.st, tok)
	p.ownB.mu.Lock()
	p.ownB.owned[n.UUID] = true // b owns the node; a does not
	p.ownB.mu.Unlock()

	hb := wire.HeartbeatRequest{CallbackURL: "http://10.0.0.5:9999", AgentToken: tok, AgentVersion: "9.0.0"}
	if err := p.a.Ramdisk().Heartbeat(context.Background(), n.UUID, hb); err != nil {
		t.Fatal(err)
	}
	// Recorded by a (URL, time, pending marker) ...
	got, _ := p.st.GetNode(context.Background(), n.UUID)
	if got.InternalString("agent_url") != hb.CallbackURL || got.InternalString("agent_last_heartbeat") == "" {
		t.Fatalf("heartbeat not recorded: %v", got.DriverInternalInfo)
	}
	// ... and processed by b, which starts the image write.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ = p.st.GetNode(context.Background(), n.UUID)
		if got.ProvisionState == statemachine.DeployWait && got.DeployStep["step"] == "write_image" && !internalinfo.HeartbeatPending(got) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner did not process the heartbeat: %s step %v pending %v", got.ProvisionState, got.DeployStep, internalinfo.HeartbeatPending(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if calls := p.agentA.Calls(); len(calls) != 0 {
		t.Errorf("the non-owner talked to the agent: %v", calls)
	}
	want := []string{"deploy.get_deploy_steps@http://10.0.0.5:9999", "deploy.execute_deploy_step@http://10.0.0.5:9999"}
	if calls := p.agentB.Calls(); !slices.Equal(calls, want) {
		t.Errorf("owner's agent calls = %v, want %v", calls, want)
	}
}

func TestWorkCommittedByANonOwnerAndTakeovers(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: fake.Name}
	if err := p.st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	// The API of a (which owns nothing) commits manage; a does not verify.
	if err := p.a.Provisioning().Provision(ctx, "n1", Request{Target: "manage"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got, _ := p.st.GetNode(ctx, n.UUID); got.ProvisionState != statemachine.Verifying {
		t.Fatalf("a non-owner drove the node to %q", got.ProvisionState)
	}
	// b takes the node over (a dead conductor's lease) and resumes it.
	p.ownB.take(n.UUID)
	waitState(t, p.st, n.UUID, statemachine.Manageable)
}

func TestSingleConductorOwnsEverything(t *testing.T) {
	var o Ownership = SingleConductor{}
	if f, ok, err := o.Lease(context.Background(), "any"); !ok || err != nil || !f.IsZero() || !o.Holds("any", f) {
		t.Fatalf("Lease = %+v, %v, %v", f, ok, err)
	}
	if o.Gained() != nil || !ownsAll(o) || ownsAll(newLeases()) {
		t.Fatal("SingleConductor gains nodes or is not recognised")
	}
}
