package provision

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
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

// countingStore counts node transactions and the node reads made
// outside them. It names nodes by MAC through the inner store
// (store.NodeNamer) but hides its snapshots (store.NodeViewer): views are
// copies GetNode reads.
type countingStore struct {
	store.Store
	mu            sync.Mutex
	writes, reads int
}

func (c *countingStore) add(n *int) {
	c.mu.Lock()
	*n++
	c.mu.Unlock()
}

func (c *countingStore) WithNodeLock(ctx context.Context, ident string, fn func(store.Tx) error) error {
	c.add(&c.writes)
	return c.Store.WithNodeLock(ctx, ident, fn)
}

func (c *countingStore) GetNode(ctx context.Context, ident string) (*store.Node, error) {
	c.add(&c.reads)
	return c.Store.GetNode(ctx, ident)
}

func (c *countingStore) NodeByMACs(ctx context.Context, macs []string) (*store.Node, error) {
	c.add(&c.reads)
	return c.Store.NodeByMACs(ctx, macs)
}

func (c *countingStore) NodeUUIDByMACs(ctx context.Context, macs []string) (string, error) {
	return store.NodeUUIDByMACs(ctx, c.Store, macs)
}

// countingEngine is an engine on a counting SQLite store, with the fake
// power driver and agent; both are closed when the test ends.
func countingEngine(t *testing.T, agent Agent) (*Engine, *countingStore) {
	t.Helper()
	inner, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	st := &countingStore{Store: inner}
	e, err := New(st, []power.Driver{mustFake(t)}, agent, Config{APIURL: "http://127.0.0.1:6385", Logger: discardLogger(),
		StateDir: t.TempDir(), ProgressPollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, st
}

// count is the number of node transactions so far.
func (c *countingStore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// readCount is the number of node reads outside transactions so far.
func (c *countingStore) readCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// TestFirstHeartbeatStartsTheNextStepInTheResumeWrite: the first
// heartbeat of a deploy, whose current step is the conductor's ramdisk
// boot, resumes the node, caches the agent's steps and makes write_image
// the current step in one write; the step is started on the agent and
// the node waits again in a second one. The agent is not asked for its
// commands.
func TestFirstHeartbeatStartsTheNextStepInTheResumeWrite(t *testing.T) {
	ctx := context.Background()
	agent := &scriptedAgent{}
	e, st := countingEngine(t, agent)
	n := seedDeployWait(t, e, st, strings.Repeat("t", 43))
	_, _, err := e.nodes.update(ctx, n.UUID, statemachine.DeployWait, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
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
		"copy":     func(s store.Store) store.Store { return &countingStore{Store: s} },
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
			if wc, ok := st.(*countingStore); ok && wc.count() != 1 {
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

// firstBeatEngine is an engine on a write-counting SQLite store, with a
// node waiting in deploy wait for the agent holding token, whose
// heartbeat jobs only report that they were queued: the test runs them.
func firstBeatEngine(t *testing.T, token string) (*Engine, *countingStore, *scriptedAgent, *store.Node, chan string) {
	t.Helper()
	agent := &scriptedAgent{}
	e, st := countingEngine(t, agent)
	queued := make(chan string, 16)
	e.jobs.handle(jobHeartbeat, func(_ context.Context, uuid string) { queued <- uuid })
	return e, st, agent, seedDeployWait(t, e, st, token), queued
}

// acceptFirstBeat is firstBeatEngine with the first heartbeat of an agent
// with a certificate accepted and its job queued (not run); before is the
// node write count before the heartbeat.
func acceptFirstBeat(t *testing.T) (e *Engine, st *countingStore, agent *scriptedAgent, n *store.Node, queued chan string,
	before int, hb wire.HeartbeatRequest) {
	t.Helper()
	token := strings.Repeat("t", 43)
	e, st, agent, n, queued = firstBeatEngine(t, token)
	before = st.count()
	hb = wire.HeartbeatRequest{CallbackURL: "https://10.0.0.5:9999", AgentToken: token, AgentVersion: "9.0.0",
		AgentVerifyCA: testCertificatePEM(t)}
	if err := e.ramdisk.Heartbeat(context.Background(), n.UUID, hb); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, queued, n.UUID)
	return e, st, agent, n, queued, before, hb
}

// waitQueued waits for the heartbeat job of node uuid to be queued.
func waitQueued(t *testing.T, queued chan string, uuid string) {
	t.Helper()
	select {
	case got := <-queued:
		if got != uuid {
			t.Fatalf("heartbeat job queued for %s, want %s", got, uuid)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the accepted heartbeat's job was not queued")
	}
}

// testCertificatePEM is a fresh self-signed certificate, as an agent
// sends in agent_verify_ca.
func testCertificatePEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestFirstHeartbeatIsRecordedInTheResumeWrite: an agent's first
// heartbeat, for a node this conductor owns waiting for it, is checked
// from a read and accepted without a write; its job works with the agent
// (URL, token, certificate) and records it in the write that resumes the
// node. The boot's heartbeat takes two node writes, not three.
func TestFirstHeartbeatIsRecordedInTheResumeWrite(t *testing.T) {
	ctx := context.Background()
	e, st, agent, n, _, before, hb := acceptFirstBeat(t)
	ca := hb.AgentVerifyCA
	if got := st.count() - before; got != 0 {
		t.Fatalf("the first heartbeat wrote the node %d times before its job ran", got)
	}
	if _, info, _ := e.nodes.read(ctx, n.UUID); info.Agent.URL != "" {
		t.Fatalf("agent URL %q on record before the job ran", info.Agent.URL)
	}

	e.ramdisk.processHeartbeat(ctx, n.UUID)
	if got := st.count() - before; got != 2 {
		t.Errorf("the first heartbeat took %d node writes, want 2 (resume with the agent recorded, then wait)", got)
	}
	want := []string{"deploy.get_deploy_steps@https://10.0.0.5:9999", "deploy.execute_deploy_step@https://10.0.0.5:9999"}
	if got := agent.Calls(); !slices.Equal(got, want) {
		t.Errorf("agent calls = %v, want %v", got, want)
	}
	got, info, err := e.nodes.read(ctx, n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	a := info.Agent
	if a.URL != hb.CallbackURL || a.Version != "9.0.0" || a.LastHeartbeat == "" || a.VerifyCAPEM != ca ||
		a.VerifyCA != e.ramdisk.certs.path(n.UUID) || a.HeartbeatPending != "" {
		t.Fatalf("agent on record: %+v", a)
	}
	if step, _ := info.Deploy.Current(); got.ProvisionState != statemachine.DeployWait || step.Name() != "deploy.write_image" || !info.Deploy.Started {
		t.Fatalf("after the heartbeat: state %q, step %q, started %v", got.ProvisionState, step.Name(), info.Deploy.Started)
	}
	if _, ok := e.ramdisk.beats.take(n.UUID); ok {
		t.Fatal("the recorded heartbeat is still pending")
	}
}

// TestFirstHeartbeatPinsItsAgentUntilRecorded: until its job records it,
// a first heartbeat pins the callback URL and certificate as its write
// would have: another URL or certificate is refused with Ironic's error,
// a malformed certificate at once; the same agent again is accepted, with
// or without its certificate. A pending first heartbeat of an earlier
// boot (another token) pins nothing. A pre-generated token's first
// heartbeat is written at once.
func TestFirstHeartbeatPinsItsAgentUntilRecorded(t *testing.T) {
	ctx := context.Background()
	e, st, _, n, queued, before, hb := acceptFirstBeat(t)
	token, ca := hb.AgentToken, hb.AgentVerifyCA
	for _, c := range []struct {
		name string
		hb   wire.HeartbeatRequest
		want string
	}{
		{"another URL", wire.HeartbeatRequest{CallbackURL: "https://10.0.0.6:9999", AgentToken: token, AgentVersion: "9.0.0", AgentVerifyCA: ca},
			`Detected change in ramdisk provided "callback_url"`},
		{"another certificate", wire.HeartbeatRequest{CallbackURL: hb.CallbackURL, AgentToken: token, AgentVersion: "9.0.0", AgentVerifyCA: testCertificatePEM(t)},
			`Detected change in ramdisk provided "agent_verify_ca"`},
		{"malformed certificate", wire.HeartbeatRequest{CallbackURL: hb.CallbackURL, AgentToken: token, AgentVersion: "9.0.0", AgentVerifyCA: "not a certificate"},
			"Invalid agent_verify_ca: not a PEM certificate"},
		{"wrong token", wire.HeartbeatRequest{CallbackURL: hb.CallbackURL, AgentToken: strings.Repeat("u", 43), AgentVersion: "9.0.0", AgentVerifyCA: ca},
			"Invalid or missing agent token"},
	} {
		if err := e.ramdisk.Heartbeat(ctx, n.UUID, c.hb); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := e.ramdisk.Heartbeat(ctx, n.UUID, hb); err != nil {
		t.Fatalf("the same agent again: %v", err)
	}
	waitQueued(t, queued, n.UUID)
	// Without its certificate: no change, the pinned one stays.
	if err := e.ramdisk.Heartbeat(ctx, n.UUID, wire.HeartbeatRequest{CallbackURL: hb.CallbackURL, AgentToken: token, AgentVersion: "9.0.0"}); err != nil {
		t.Fatalf("the same agent without its certificate: %v", err)
	}
	waitQueued(t, queued, n.UUID)
	if got := st.count() - before; got != 0 {
		t.Fatalf("%d node writes for heartbeats accepted or refused from a read", got)
	}
	if a := e.ramdisk.beats.arriving(n.UUID); a == nil || a.url != hb.CallbackURL || a.caPEM != ca {
		t.Fatalf("pending agent %+v", a)
	}

	// A pending first heartbeat of an earlier boot (another token, its
	// job never ran) pins nothing for the agent of the next one.
	_, _, err := e.nodes.update(ctx, n.UUID, statemachine.DeployWait, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		info.Agent.Token = strings.Repeat("n", 43)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	next := wire.HeartbeatRequest{CallbackURL: "https://10.0.0.7:9999", AgentToken: strings.Repeat("n", 43), AgentVersion: "9.0.0"}
	if err := e.ramdisk.Heartbeat(ctx, n.UUID, next); err != nil {
		t.Fatalf("the next boot's agent: %v", err)
	}
	waitQueued(t, queued, n.UUID)
	if a := e.ramdisk.beats.arriving(n.UUID); a == nil || a.url != next.CallbackURL || a.caPEM != "" {
		t.Fatalf("pending agent after the next boot's heartbeat %+v", a)
	}

	// A pre-generated token: the first heartbeat is on record at once.
	_, _, err = e.nodes.update(ctx, n.UUID, statemachine.DeployWait, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		info.Agent.TokenPregenerated = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.ramdisk.beats.take(n.UUID)
	pre := hb
	pre.AgentToken = next.AgentToken
	if err := e.ramdisk.Heartbeat(ctx, n.UUID, pre); err != nil {
		t.Fatal(err)
	}
	if _, info, _ := e.nodes.read(ctx, n.UUID); info.Agent.URL != hb.CallbackURL || info.Agent.VerifyCAPEM != ca {
		t.Fatalf("pre-generated token's first heartbeat not on record: %+v", info.Agent)
	}
}

// TestFirstHeartbeatOfAReplacedAgentIsNotRecorded: when the node's token
// is wiped (a power off) or replaced (a new lookup) between a first
// heartbeat's acceptance and its job, the job records nothing, asks the
// agent nothing and leaves the node waiting; a pending first heartbeat's
// token is not released as undelivered.
func TestFirstHeartbeatOfAReplacedAgentIsNotRecorded(t *testing.T) {
	for name, change := range map[string]func(info *internalinfo.Info){
		"power off": func(info *internalinfo.Info) { info.WipeOnPowerOff() },
		"new token": func(info *internalinfo.Info) { info.Agent.Token = strings.Repeat("n", 43) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			token := strings.Repeat("t", 43)
			e, _, agent, n, queued := firstBeatEngine(t, token)
			hb := wire.HeartbeatRequest{CallbackURL: "http://10.0.0.5:9999", AgentToken: token, AgentVersion: "9.0.0"}
			if err := e.ramdisk.Heartbeat(ctx, n.UUID, hb); err != nil {
				t.Fatal(err)
			}
			waitQueued(t, queued, n.UUID)
			if err := e.ramdisk.ReleaseToken(ctx, n.UUID, token); err != nil {
				t.Fatal(err)
			}
			if _, info, _ := e.nodes.read(ctx, n.UUID); info.Agent.Token != token {
				t.Fatal("the token of a pending first heartbeat was released")
			}
			_, _, err := e.nodes.update(ctx, n.UUID, statemachine.DeployWait, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
				change(info)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			e.ramdisk.processHeartbeat(ctx, n.UUID)
			if calls := agent.Calls(); len(calls) != 0 {
				t.Errorf("the replaced agent was asked %v", calls)
			}
			got, info, err := e.nodes.read(ctx, n.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if got.ProvisionState != statemachine.DeployWait || info.Agent.URL != "" || info.Agent.LastHeartbeat != "" {
				t.Fatalf("after the stale heartbeat: state %q, agent %+v", got.ProvisionState, info.Agent)
			}
			if _, ok := e.ramdisk.beats.take(n.UUID); ok {
				t.Fatal("the stale heartbeat is still pending")
			}
		})
	}
}
