package provision

import (
	"context"
	"errors"
	"os"
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
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// gatedAgent is a scriptedAgent whose first call of one command is held
// until the test releases it, as a request in flight when the conductor
// is paused.
type gatedAgent struct {
	scriptedAgent
	gate    string
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func newGatedAgent(gate string) *gatedAgent {
	return &gatedAgent{gate: gate, reached: make(chan struct{}), release: make(chan struct{})}
}

func (a *gatedAgent) Execute(ctx context.Context, ep agentclient.Endpoint, name string, p any, wait bool) (*wire.CommandResult, error) {
	held := false
	if name == a.gate {
		a.once.Do(func() { held = true; close(a.reached) })
	}
	if held {
		select {
		case <-a.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return a.scriptedAgent.Execute(ctx, ep, name, p, wait)
}

// callLog reads a fake driver's call log ("" lines when none).
func callLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestLeaseLostMidJobStopsEverything: a job in the middle of an agent call
// when the conductor loses the node's lease (paused past it; another
// conductor took the node) makes no store write, no power call and no
// agent call once the call returns, and stops.
func TestLeaseLostMidJobStopsEverything(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "power-calls.jsonl")
	drv, _ := fake.New(fake.Config{CallLog: logPath})
	agent := newGatedAgent("deploy.execute_deploy_step")
	own := newLeases()
	e, st := openEngine(t, filepath.Join(t.TempDir(), "rivet.db"), drv, agent, Config{
		APIURL: "http://127.0.0.1:6385", Ownership: own, ProgressPollInterval: -1})
	tok := strings.Repeat("t", 43)
	n := seedDeployWait(t, e, st, tok)
	own.mu.Lock()
	own.owned[n.UUID] = true
	own.mu.Unlock()
	ctx := context.Background()
	hb := wire.HeartbeatRequest{CallbackURL: "http://10.0.0.5:9999", AgentToken: tok, AgentVersion: "9.0.0"}
	if err := e.Ramdisk().Heartbeat(ctx, n.UUID, hb); err != nil {
		t.Fatal(err)
	}
	select {
	case <-agent.reached:
	case <-time.After(10 * time.Second):
		t.Fatalf("the job did not start the image write; agent calls %v", agent.Calls())
	}
	own.lose(n.UUID)
	before, err := st.GetNode(ctx, n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	powerCalls := callLog(t, logPath)
	close(agent.release) // the call in flight returns
	deadline := time.Now().Add(10 * time.Second)
	for e.jobs.busy(n.UUID) {
		if time.Now().After(deadline) {
			t.Fatal("the job did not stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	after, err := st.GetNode(ctx, n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if !after.UpdatedAt.Equal(before.UpdatedAt) || after.DriverInternalInfo["deploy_step_started"] != nil {
		t.Errorf("the node was written after the lease was lost: updated %v -> %v, %v",
			before.UpdatedAt, after.UpdatedAt, after.DriverInternalInfo)
	}
	if got := callLog(t, logPath); !slices.Equal(got, powerCalls) {
		t.Errorf("power calls after the lease was lost: %v", got[len(powerCalls):])
	}
	want := []string{"deploy.get_deploy_steps@http://10.0.0.5:9999", "deploy.execute_deploy_step@http://10.0.0.5:9999"}
	if got := agent.Calls(); !slices.Equal(got, want) {
		t.Errorf("agent calls = %v, want only %v (the last one in flight when the lease went)", got, want)
	}
}

// TestSeamsRefuseWithoutTheLease: in a job whose fence is no longer held,
// every seam refuses before acting and cancels the job; outside jobs (API
// requests) nothing is fenced; under a held fence everything goes.
func TestSeamsRefuseWithoutTheLease(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "power-calls.jsonl")
	drv, _ := fake.New(fake.Config{CallLog: logPath})
	agent := &scriptedAgent{}
	own := newLeases()
	e, st := openEngine(t, filepath.Join(t.TempDir(), "rivet.db"), drv, agent, Config{
		APIURL: "http://127.0.0.1:6385", Ownership: own, ProgressPollInterval: -1})
	n := seedDeployWait(t, e, st, strings.Repeat("t", 43))
	own.mu.Lock()
	own.owned[n.UUID] = true
	own.mu.Unlock()
	bg := context.Background()
	jobCtx := func(f store.Fence) (context.Context, context.CancelCauseFunc) {
		ctx, cancel := context.WithCancelCause(bg)
		return withScope(ctx, &jobScope{fence: f, cancel: cancel}), cancel
	}
	set := func(ctx context.Context) error {
		_, _, err := e.nodes.update(ctx, n.UUID, "", func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
			n.Description = "written"
			info.Agent.URL = "http://10.0.0.5:9999"
			return nil
		})
		return err
	}
	calls := func(ctx context.Context) []error {
		t.Helper()
		werr := set(ctx)
		tg, err := e.machines.load(bg, n.UUID)
		if err != nil {
			t.Fatal(err)
		}
		tg.info.Agent.URL = "http://10.0.0.5:9999"
		_, aerr := e.agents.execute(ctx, tg.node, tg.info, "deploy.get_deploy_steps", nil, true)
		_, perr := e.machines.powerState(ctx, tg)
		berr := e.machines.setBootDevice(ctx, tg, power.BootPXE, false)
		serr := e.machines.setPower(ctx, tg, power.Off)
		return []error{werr, aerr, perr, berr, serr}
	}

	held, _, _ := own.Lease(bg, n.UUID)
	ctx, cancel := jobCtx(held)
	for i, err := range calls(ctx) {
		if err != nil {
			t.Fatalf("call %d under the held lease: %v", i, err)
		}
	}
	cancel(nil)
	powerCalls, agentCalls := callLog(t, logPath), agent.Calls()
	if len(powerCalls) == 0 || len(agentCalls) == 0 {
		t.Fatalf("nothing reached the driver (%v) or the agent (%v)", powerCalls, agentCalls)
	}

	own.lose(n.UUID)
	if err := st.WithNodeLock(bg, n.UUID, func(tx store.Tx) error { tx.Node().Description = "before"; return nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = jobCtx(held)
	defer cancel(nil)
	for i, err := range calls(ctx) {
		if !errors.Is(err, errLeaseLost) {
			t.Errorf("call %d under a lost lease = %v, want errLeaseLost", i, err)
		}
	}
	if !errors.Is(context.Cause(ctx), errLeaseLost) {
		t.Errorf("the job was not cancelled: cause %v", context.Cause(ctx))
	}
	if got, _ := st.GetNode(bg, n.UUID); got.Description != "before" {
		t.Errorf("written under a lost lease: %q", got.Description)
	}
	if got := callLog(t, logPath); !slices.Equal(got, powerCalls) {
		t.Errorf("power calls under a lost lease: %v", got[len(powerCalls):])
	}
	if got := agent.Calls(); !slices.Equal(got, agentCalls) {
		t.Errorf("agent calls under a lost lease: %v", got[len(agentCalls):])
	}

	// An API request (no job) is not fenced.
	if err := set(bg); err != nil {
		t.Fatalf("API write: %v", err)
	}
}
