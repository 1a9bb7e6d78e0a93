package provision

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// listGate is a scriptedAgent whose command list, once armed, is held
// until the caller's context ends; it records why it ended.
type listGate struct {
	scriptedAgent
	armed   atomic.Bool
	reached chan struct{}
	once    sync.Once
	cause   atomic.Value // error
	ended   atomic.Bool
}

func (a *listGate) Commands(ctx context.Context, ep agentclient.Endpoint) (*wire.CommandList, error) {
	if a.armed.Load() {
		a.once.Do(func() { close(a.reached) })
		<-ctx.Done()
		a.cause.Store(context.Cause(ctx))
		a.ended.Store(true)
		return nil, ctx.Err()
	}
	return a.scriptedAgent.Commands(ctx, ep)
}

// TestAbortCancelsTheRunningJob: an abort of a deploy waiting for its
// agent cancels the job that is talking to the agent, waits for it, and
// only then powers the node off.
func TestAbortCancelsTheRunningJob(t *testing.T) {
	drv, _ := fake.New(fake.Config{})
	agent := &listGate{reached: make(chan struct{})}
	e, st := openEngine(t, filepath.Join(t.TempDir(), "rivet.db"), drv, agent, Config{
		APIURL: "http://127.0.0.1:6385", ProgressPollInterval: -1})
	tok := strings.Repeat("t", 43)
	n := seedDeployWait(t, e, st, tok)
	ctx := context.Background()
	hb := wire.HeartbeatRequest{CallbackURL: "http://10.0.0.5:9999", AgentToken: tok, AgentVersion: "9.0.0"}
	if err := e.Ramdisk().Heartbeat(ctx, n.UUID, hb); err != nil {
		t.Fatal(err)
	}
	// The first heartbeat starts the image write, which runs on.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := st.GetNode(ctx, n.UUID)
		if got.ProvisionState == statemachine.DeployWait && got.DriverInternalInfo["deploy_step_started"] == true && !e.jobs.busy(n.UUID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the write did not start: %s %v", got.ProvisionState, got.DriverInternalInfo)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The next heartbeat's job is reading the agent's commands when the
	// abort comes.
	agent.armed.Store(true)
	if err := e.Ramdisk().Heartbeat(ctx, n.UUID, hb); err != nil {
		t.Fatal(err)
	}
	<-agent.reached
	if err := e.Provisioning().Provision(ctx, n.UUID, Request{Target: "abort"}); err != nil {
		t.Fatal(err)
	}
	if !agent.ended.Load() {
		t.Fatal("abort returned before the running job stopped")
	}
	if c, _ := agent.cause.Load().(error); !errors.Is(c, errAborted) {
		t.Fatalf("the job was cancelled by %v, want the abort", c)
	}
	got := waitState(t, st, n.UUID, statemachine.DeployFailed)
	if !strings.Contains(got.LastError, "aborted") {
		t.Errorf("last_error %q", got.LastError)
	}
	for {
		if ps, _ := drv.PowerState(ctx, power.Node{UUID: n.UUID}); ps == power.Off {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the aborted node was not powered off")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// slowDriver is the fake driver whose power changes block: until their
// context ends (cancellable), or until released (stubborn).
type slowDriver struct {
	*fake.Driver
	stubborn bool
	started  chan struct{}
	release  chan struct{}
	once     sync.Once
	cause    atomic.Value // error
}

func (d *slowDriver) SetPowerState(ctx context.Context, node power.Node, st power.State) error {
	d.once.Do(func() { close(d.started) })
	if d.stubborn {
		<-d.release
	} else {
		<-ctx.Done()
		d.cause.Store(context.Cause(ctx))
		return ctx.Err()
	}
	return d.Driver.SetPowerState(ctx, node, st)
}

func TestDeleteNode(t *testing.T) {
	ctx := context.Background()
	newEngine := func(t *testing.T, stubborn bool) (*Engine, store.Store, *slowDriver) {
		fk, _ := fake.New(fake.Config{})
		drv := &slowDriver{Driver: fk, stubborn: stubborn, started: make(chan struct{}), release: make(chan struct{})}
		e, st := openEngine(t, filepath.Join(t.TempDir(), "rivet.db"), drv, noAgent{}, Config{
			APIURL: "http://127.0.0.1:6385", DisableAutomatedClean: true, JobStopTimeout: 300 * time.Millisecond,
			Conductor: "c1"})
		return e, st, drv
	}
	create := func(t *testing.T, st store.Store, name string, fn func(n *store.Node) error) *store.Node {
		t.Helper()
		n := &store.Node{Name: name, Driver: fake.Name}
		if err := st.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if fn != nil {
			if err := st.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { return fn(tx.Node()) }); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	advance := func(evs ...statemachine.Event) func(n *store.Node) error {
		return func(n *store.Node) error {
			for _, ev := range evs {
				if _, err := n.Advance(ev, time.Now()); err != nil {
					return err
				}
			}
			return nil
		}
	}
	gone := func(t *testing.T, st store.Store, uuid string) bool {
		_, err := st.GetNode(ctx, uuid)
		return errors.Is(err, errdefs.ErrNotFound)
	}

	t.Run("Ironic's rules", func(t *testing.T) {
		e, st, _ := newEngine(t, false)
		active := create(t, st, "active", advance(statemachine.EvManage, statemachine.EvDone, statemachine.EvProvide,
			statemachine.EvDone, statemachine.EvDeploy, statemachine.EvDone))
		err := e.Provisioning().DeleteNode(ctx, "active")
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), `while it is in provision state "active"`) {
			t.Fatalf("delete of an active node = %v", err)
		}
		associated := create(t, st, "assoc", func(n *store.Node) error { n.InstanceUUID = "inst-1"; return nil })
		err = e.Provisioning().DeleteNode(ctx, "assoc")
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "is associated with instance inst-1") {
			t.Fatalf("delete of an associated node = %v", err)
		}
		if gone(t, st, active.UUID) || gone(t, st, associated.UUID) {
			t.Fatal("a refused delete deleted the node")
		}
		// Maintenance lifts both rules.
		for _, name := range []string{"active", "assoc"} {
			if err := st.WithNodeLock(ctx, name, func(tx store.Tx) error { tx.Node().Maintenance = true; return nil }); err != nil {
				t.Fatal(err)
			}
			if err := e.Provisioning().DeleteNode(ctx, name); err != nil {
				t.Fatalf("delete of %s in maintenance: %v", name, err)
			}
		}
		if !gone(t, st, active.UUID) || !gone(t, st, associated.UUID) {
			t.Fatal("nodes in maintenance not deleted")
		}
	})

	t.Run("cancels the running job", func(t *testing.T) {
		e, st, drv := newEngine(t, false)
		n := create(t, st, "n1", nil)
		if err := e.Power().ChangePowerState(ctx, "n1", power.On, 0); err != nil {
			t.Fatal(err)
		}
		<-drv.started
		if err := e.Provisioning().DeleteNode(ctx, "n1"); err != nil {
			t.Fatalf("delete with a running power change: %v", err)
		}
		if c, _ := drv.cause.Load().(error); !errors.Is(c, errDeleted) {
			t.Fatalf("power change ended by %v, want the delete", c)
		}
		if !gone(t, st, n.UUID) || e.jobs.busy(n.UUID) {
			t.Fatal("node not deleted, or its work not stopped")
		}
	})

	t.Run("a job that does not stop makes it 409", func(t *testing.T) {
		e, st, drv := newEngine(t, true)
		n := create(t, st, "n1", nil)
		if err := e.Power().ChangePowerState(ctx, "n1", power.On, 0); err != nil {
			t.Fatal(err)
		}
		<-drv.started
		err := e.Provisioning().DeleteNode(ctx, "n1")
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "is locked by host c1, please retry") {
			t.Fatalf("delete with a stubborn job = %v", err)
		}
		if gone(t, st, n.UUID) {
			t.Fatal("deleted under a running job")
		}
		close(drv.release)
		deadline := time.Now().Add(10 * time.Second)
		for e.jobs.busy(n.UUID) {
			if time.Now().After(deadline) {
				t.Fatal("the job did not end")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := e.Provisioning().DeleteNode(ctx, "n1"); err != nil {
			t.Fatalf("delete after the job ended: %v", err)
		}
	})
}
