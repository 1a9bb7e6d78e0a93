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

// writingAgent reports an execute_deploy_step that is still writing, with
// the progress the test sets; anything else is an error.
type writingAgent struct {
	noAgent
	mu      sync.Mutex
	written int64
}

func (a *writingAgent) Commands(context.Context, agentclient.Endpoint) (*wire.CommandList, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res, _ := json.Marshal(wire.ProgressResult{Progress: &wire.Progress{Phase: "download", BytesWritten: a.written, TotalBytes: 1 << 30}})
	return &wire.CommandList{Commands: []wire.CommandResult{
		{ID: "1", CommandName: "get_deploy_steps", CommandStatus: wire.StatusSucceeded},
		{ID: "2", CommandName: "execute_deploy_step", CommandStatus: wire.StatusRunning, CommandResult: res},
	}}, nil
}

// TestHeartbeatWhileWritingChangesNoState: the heartbeat of a node whose
// agent is still writing is recorded and its progress stored in one
// update, with the node kept in wait call-back; an unchanged progress is
// not written again.
func TestHeartbeatWhileWritingChangesNoState(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fk, _ := fake.New(fake.Config{})
	agent := &writingAgent{written: 4 << 20}
	start := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	now := start
	e, err := New(st, []power.Driver{fk}, agent, Config{Logger: discardLogger(),
		StateDir: t.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	n := deployWaitNode(t, st, fk.Name(), start, map[string]any{
		"agent_url": "http://127.0.0.1:9", "agent_secret_token": "t", "agent_cached_deploy_steps": map[string]any{},
		"deploy_steps": []any{
			map[string]any{"step": "deploy", "interface": "deploy", "priority": 100},
			map[string]any{"step": "write_image", "interface": "deploy", "priority": 80},
		},
		"deploy_step_index": 1, "deploy_step_started": true, "agent_heartbeat_pending": "2026-11-21T12:00:00.000000",
	})

	now = start.Add(time.Minute)
	e.ramdisk.processHeartbeat(ctx, n.UUID)
	got, _ := st.GetNode(ctx, n.UUID)
	p, _ := got.DriverInternalInfo["deploy_progress"].(map[string]any)
	if got.ProvisionState != statemachine.DeployWait || internalinfo.HeartbeatPending(got) ||
		!got.ProvisionUpdatedAt.Equal(now) || p["bytes_written"] != float64(4<<20) {
		t.Fatalf("after a heartbeat during the write: state %q, pending %v, updated %v, progress %v",
			got.ProvisionState, internalinfo.HeartbeatPending(got), got.ProvisionUpdatedAt, p)
	}
	if !e.jobs.polls.tracking(n.UUID) {
		t.Fatal("the node is not known to be writing")
	}

	// The same progress a second time: the heartbeat is still recorded,
	// the progress is left as it was.
	now = start.Add(2 * time.Minute)
	e.ramdisk.processHeartbeat(ctx, n.UUID)
	again, _ := st.GetNode(ctx, n.UUID)
	if !again.ProvisionUpdatedAt.Equal(now) || again.ProvisionState != statemachine.DeployWait {
		t.Fatalf("second heartbeat: updated %v, state %q", again.ProvisionUpdatedAt, again.ProvisionState)
	}
}

// deployWaitNode creates node n1 of driver waiting for its agent in a
// deploy since at, with the driver_internal_info keys given.
func deployWaitNode(t *testing.T, st store.Store, driver string, at time.Time, internal map[string]any) *store.Node {
	t.Helper()
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: driver}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	err := st.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
		n := tx.Node()
		n.ProvisionState, n.TargetProvisionState = statemachine.DeployWait, statemachine.Active
		for k, v := range internal {
			n.SetInternal(k, v)
		}
		n.ProvisionUpdatedAt = at
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writeCounter counts node transactions.
type writeCounter struct {
	store.Store
	mu     sync.Mutex
	writes int
}

func (c *writeCounter) WithNodeLock(ctx context.Context, ident string, fn func(store.Tx) error) error {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Store.WithNodeLock(ctx, ident, fn)
}

func (c *writeCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// TestFirstHeartbeatStartsTheNextStepInTheResumeWrite: the first
// heartbeat of a deploy, whose current step is the conductor's ramdisk
// boot, resumes the node, caches the agent's steps and makes write_image
// the current step in one write; the step is started on the agent and
// the node waits again in a second one. The agent is not asked for its
// commands.
func TestFirstHeartbeatStartsTheNextStepInTheResumeWrite(t *testing.T) {
	ctx := context.Background()
	inner, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	st := &writeCounter{Store: inner}
	fk, _ := fake.New(fake.Config{})
	agent := &scriptedAgent{}
	e, err := New(st, []power.Driver{fk}, agent, Config{APIURL: "http://127.0.0.1:6385", Logger: discardLogger(),
		StateDir: t.TempDir(), ProgressPollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n := seedDeployWait(t, e, st, strings.Repeat("t", 43))
	_, _, err = e.nodes.update(ctx, n.UUID, statemachine.DeployWait, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		info.Agent.URL, info.Agent.Version = "http://10.0.0.5:9999", "9.0.0"
		info.Agent.HeartbeatPending = agentTimestamp(time.Now())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := st.count()
	e.ramdisk.processHeartbeat(ctx, n.UUID)
	if got := st.count() - before; got != 2 {
		t.Errorf("the heartbeat took %d node writes, want 2 (resume with the next step current, then wait)", got)
	}
	want := []string{"deploy.get_deploy_steps@http://10.0.0.5:9999", "deploy.execute_deploy_step@http://10.0.0.5:9999"}
	if got := agent.Calls(); !slices.Equal(got, want) {
		t.Errorf("agent calls = %v, want %v", got, want)
	}
	got, info, err := e.nodes.read(ctx, n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	step, ok := info.Deploy.Current()
	if got.ProvisionState != statemachine.DeployWait || !ok || step.Name() != "deploy.write_image" || !info.Deploy.Started ||
		info.Deploy.SkipCurrent || info.Deploy.Cached == nil || info.Agent.HeartbeatPending != "" {
		t.Fatalf("after the heartbeat: state %q, step %q (%v), started %v, skip %v, cached %v, pending %q",
			got.ProvisionState, step.Name(), ok, info.Deploy.Started, info.Deploy.SkipCurrent,
			info.Deploy.Cached != nil, info.Agent.HeartbeatPending)
	}
}

// TestKnownAgentHeartbeatIsCheckedWithoutAWrite: the heartbeat of the
// agent on record, for a node waiting for it, is checked from the store's
// snapshot of the node (SQLite) or from a copy (a store without
// snapshots), accepted without a write and queued for its job; a wrong
// token is refused the same way.
func TestKnownAgentHeartbeatIsCheckedWithoutAWrite(t *testing.T) {
	for name, wrap := range map[string]func(store.Store) store.Store{
		"snapshot": func(s store.Store) store.Store { return s },
		"copy":     func(s store.Store) store.Store { return &writeCounter{Store: s} },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rivet.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			st := wrap(db)
			fk, _ := fake.New(fake.Config{})
			e, err := New(st, []power.Driver{fk}, &writingAgent{}, Config{Logger: discardLogger(), StateDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			// The heartbeat's job only reports that it ran.
			jobsRun := make(chan string, 4)
			e.jobs.handle(jobHeartbeat, func(_ context.Context, uuid string) { jobsRun <- uuid })
			n := deployWaitNode(t, st, fk.Name(), time.Now(), map[string]any{"agent_url": "http://127.0.0.1:9",
				"agent_version": "10.0.0", "agent_secret_token": "token-0123456789abcdefghijklmnopqrstuv"})
			before, _ := st.GetNode(ctx, n.UUID)
			hb := wire.HeartbeatRequest{CallbackURL: "http://127.0.0.1:9", AgentVersion: "10.0.0", AgentToken: "wrong"}
			if err := e.ramdisk.Heartbeat(ctx, n.UUID, hb); err == nil || !strings.Contains(err.Error(), "Invalid or missing agent token") {
				t.Fatalf("heartbeat with a wrong token: %v", err)
			}
			hb.AgentToken = "token-0123456789abcdefghijklmnopqrstuv"
			if err := e.ramdisk.Heartbeat(ctx, n.UUID, hb); err != nil {
				t.Fatal(err)
			}
			select {
			case uuid := <-jobsRun:
				if uuid != n.UUID {
					t.Fatalf("job ran for %s", uuid)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the accepted heartbeat's job did not run")
			}
			after, _ := st.GetNode(ctx, n.UUID)
			if !after.UpdatedAt.Equal(before.UpdatedAt) {
				t.Fatal("the known agent's heartbeat wrote the node")
			}
			if wc, ok := st.(*writeCounter); ok && wc.count() != 1 {
				t.Fatalf("%d node transactions, want only the setup's", wc.count())
			}
			if _, ok := e.ramdisk.beats.take(n.UUID); !ok {
				t.Fatal("the accepted heartbeat was not recorded for its job")
			}
			if len(jobsRun) != 0 {
				t.Fatal("more than one heartbeat job ran")
			}
		})
	}
}
