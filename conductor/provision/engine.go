// Package provision drives nodes through the provision state machine: it
// accepts provision actions (manage, provide, clean, inspect, adopt,
// active, rebuild, deleted, abort), answers the ramdisk's lookup and
// records its heartbeats, and runs the background work: verification,
// automated and manual cleaning and the agent-driven deploy as Ironic's
// steps, inspection, undeploy, callback timeouts, power changes.
//
// Work for one node runs serially, one job at a time, and always starts
// after the transition that asked for it was committed. Every provision
// state change goes through the state machine (store.Node.Advance) under
// the node lock, in one transaction. Only nodes this conductor owns
// (Ownership) are driven; a heartbeat that reaches a conductor which does
// not own the node is recorded in the store and processed by the owner.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Agent is what the engine needs of an agent API client
// (agentclient.Client).
type Agent interface {
	// Execute runs a command; with wait the result is final.
	Execute(ctx context.Context, ep agentclient.Endpoint, name string, params any, wait bool) (*wire.CommandResult, error)
	// Commands lists the agent's commands, oldest first.
	Commands(ctx context.Context, ep agentclient.Endpoint) (*wire.CommandList, error)
	// Wait polls until the last command named short has ended.
	Wait(ctx context.Context, ep agentclient.Endpoint, short string, interval time.Duration, attempts int) (*wire.CommandResult, error)
}

// Log collection policies (Ironic's [agent]deploy_logs_collect).
const (
	LogsOnFailure = "on_failure"
	LogsAlways    = "always"
	LogsNever     = "never"
)

// Config configures the engine. Zero durations and counts take the
// documented defaults.
type Config struct {
	// APIURL is the conductor's API URL as the conductor reaches it; a
	// node is given it through power.NodeView when its driver has one.
	APIURL string
	// DeployKernel and DeployRamdisk are the deploy ramdisk files used
	// when driver_info has no deploy_kernel / deploy_ramdisk.
	DeployKernel, DeployRamdisk string
	// StateDir holds the agents' certificates (certificates/), the agent
	// logs collected from ramdisks (agent-logs/) and scratch files; empty
	// means a directory under the system temporary directory.
	StateDir string
	// HeartbeatTimeout is given to agents in the lookup config
	// ([api]ramdisk_heartbeat_timeout, default 300 s).
	HeartbeatTimeout time.Duration
	// CallbackTimeout fails a deploy whose node sat in "wait call-back"
	// without a processed heartbeat this long
	// ([conductor]deploy_callback_timeout, default 1800 s).
	CallbackTimeout time.Duration
	// CleanCallbackTimeout is the same for "clean wait" (default 1800 s).
	CleanCallbackTimeout time.Duration
	// InspectWaitTimeout is the same for "inspect wait" (default 1800 s).
	InspectWaitTimeout time.Duration
	// CheckInterval is the period of the timeout checks (default 60 s).
	CheckInterval time.Duration
	// ProgressPollInterval is how often the agent's command list is read
	// while an image write runs, between heartbeats, to keep the progress
	// live (default 5 s; negative disables). A heartbeat that brought the
	// progress counts as a poll.
	ProgressPollInterval time.Duration
	// ProgressPollRate caps the progress polls of all nodes together, per
	// second (default 50): with thousands of nodes writing at once each
	// is polled less often rather than all at the same instant.
	ProgressPollRate int
	// PendingPollInterval is how often nodes this conductor owns are
	// searched for heartbeats recorded by other conductors and for work
	// committed elsewhere (default 2 s). Unused with SingleConductor.
	PendingPollInterval time.Duration
	// PowerOffRetries and PowerOffInterval bound the wait for a node to
	// power itself off at the end of a deploy before a hard power off
	// ([agent]post_deploy_get_power_state_retries, default 6 × 5 s); the
	// power state is read from 500 ms on, backing off to the interval.
	PowerOffRetries  int
	PowerOffInterval time.Duration
	// PowerStateTimeout bounds the wait for a requested power state to be
	// reached (default 60 s), polled every PowerStateInterval (default 1 s).
	PowerStateTimeout  time.Duration
	PowerStateInterval time.Duration
	// CommandWaitInterval and CommandWaitAttempts bound the polling of
	// image.install_bootloader ([agent]command_wait_interval and
	// command_wait_attempts, default 6 s × 100); polls start 250 ms apart
	// and back off to the interval.
	CommandWaitInterval time.Duration
	CommandWaitAttempts int
	// AutomatedClean runs automated cleaning on provide and after
	// undeploy ([conductor]automated_clean). Off by default: nodes then go
	// from cleaning to available at once.
	AutomatedClean bool
	// CleanStepPriorities overrides the priorities of agent clean steps
	// for automated cleaning, keyed "<interface>.<step>" (Ironic's
	// [deploy]erase_devices_priority and friends); 0 disables a step. Nil
	// means DefaultCleanStepPriorities: erase_devices_metadata only.
	CleanStepPriorities map[string]int
	// LogsCollect says when the agent's system logs are collected
	// (LogsOnFailure, the default; LogsAlways; LogsNever).
	LogsCollect string
	// FastTrack reuses a running agent for the next deploy or cleaning
	// instead of rebooting the node ([deploy]fast_track; per node also
	// driver_info.fast_track). Off by default.
	FastTrack bool
	// FastTrackTimeout is how recent the agent's last heartbeat must be
	// for fast-track (default and maximum 300 s).
	FastTrackTimeout time.Duration
	// DefaultBootMode is the boot mode of nodes that set none ("uefi",
	// the default, or "bios").
	DefaultBootMode string
	// RequireAgentTLS refuses heartbeats whose callback_url is not
	// https:// ([agent]require_tls), with Ironic's 400 "TLS is required
	// by configuration". Off by default.
	RequireAgentTLS bool
	// ImageCache, when set, serves nodes the images they must not fetch
	// from the source themselves (file:// sources, image_download_source
	// "http"/"local"); nil refuses such images.
	ImageCache images.Resolver
	// Ownership decides which nodes this conductor drives (default
	// SingleConductor: all of them).
	Ownership Ownership
	// Conductor is this conductor's host name (shown in node documents).
	Conductor string
	// Logger receives the engine's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultCleanStepPriorities runs erase_devices_metadata (IPA's 99) and
// not the full erase_devices shred in automated cleaning.
var DefaultCleanStepPriorities = map[string]int{
	"deploy.erase_devices":          0,
	"deploy.erase_devices_metadata": 99,
}

func (c *Config) setDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, 300*time.Second)
	def(&c.CallbackTimeout, 1800*time.Second)
	def(&c.CleanCallbackTimeout, 1800*time.Second)
	def(&c.InspectWaitTimeout, 1800*time.Second)
	def(&c.CheckInterval, 60*time.Second)
	def(&c.ProgressPollInterval, 5*time.Second)
	if c.ProgressPollRate <= 0 {
		c.ProgressPollRate = 50
	}
	def(&c.PendingPollInterval, 2*time.Second)
	def(&c.PowerOffInterval, 5*time.Second)
	def(&c.PowerStateTimeout, 60*time.Second)
	def(&c.PowerStateInterval, time.Second)
	def(&c.CommandWaitInterval, 6*time.Second)
	def(&c.FastTrackTimeout, 300*time.Second)
	if c.FastTrackTimeout > 300*time.Second {
		c.FastTrackTimeout = 300 * time.Second
	}
	if c.PowerOffRetries <= 0 {
		c.PowerOffRetries = 6
	}
	if c.CommandWaitAttempts <= 0 {
		c.CommandWaitAttempts = 100
	}
	if c.CleanStepPriorities == nil {
		c.CleanStepPriorities = DefaultCleanStepPriorities
	}
	switch c.LogsCollect {
	case "":
		c.LogsCollect = LogsOnFailure
	case LogsOnFailure, LogsAlways, LogsNever:
	default:
		return fmt.Errorf("provision: logs collection %q is none of %s, %s, %s", c.LogsCollect, LogsOnFailure, LogsAlways, LogsNever)
	}
	switch c.DefaultBootMode {
	case "":
		c.DefaultBootMode = string(power.BootModeUEFI)
	case string(power.BootModeUEFI), string(power.BootModeBIOS):
	default:
		return fmt.Errorf("provision: default boot mode %q is neither uefi nor bios", c.DefaultBootMode)
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(os.TempDir(), "rivet-conductor")
	}
	if c.Ownership == nil {
		c.Ownership = SingleConductor{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Engine runs provision actions and their background work.
type Engine struct {
	st      store.Store
	drivers map[string]power.Driver
	agent   Agent
	cfg     Config
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	closed  bool
	queues  map[string]*nodeQueue
	// writing holds the nodes whose agent writes an image, with the time
	// their progress was last refreshed (by a poll or a heartbeat).
	writing map[string]time.Time
	// beats holds heartbeats accepted without a write, by node, until the
	// job processing them records them.
	beats map[string]time.Time
}

type jobKind int

const (
	jobVerify    jobKind = iota // verifying -> manageable
	jobClean                    // cleaning: prepare or resume
	jobDeploy                   // deploying: run the steps from the first
	jobContinue                 // deploying: resume after a restart or takeover
	jobHeartbeat                // a wait state: process the agent's state
	jobPoll                     // wait call-back: refresh write progress only
	jobTimeout                  // a wait state: callback timeout
	jobTeardown                 // deleting -> cleaning
	jobInspect                  // inspecting: boot the ramdisk
	jobAdopt                    // adopting -> active
	jobAbort                    // after abort: power off and clean up
	jobPower                    // target_power_state set: change the power
)

var jobNames = map[jobKind]string{jobVerify: "verify", jobClean: "clean", jobDeploy: "deploy",
	jobContinue: "continue", jobHeartbeat: "heartbeat", jobPoll: "poll", jobTimeout: "timeout",
	jobTeardown: "teardown", jobInspect: "inspect", jobAdopt: "adopt", jobAbort: "abort", jobPower: "power"}

type nodeQueue struct {
	pending []jobKind
}

// New returns an engine over the store, the power drivers (by name) and
// an agent client. Call Start to run background work.
func New(st store.Store, drivers []power.Driver, agent Agent, cfg Config) (*Engine, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m := map[string]power.Driver{}
	for _, d := range drivers {
		if _, dup := m[d.Name()]; dup {
			return nil, fmt.Errorf("provision: driver %q listed twice", d.Name())
		}
		m[d.Name()] = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{st: st, drivers: m, agent: agent, cfg: cfg, log: cfg.Logger,
		ctx: ctx, cancel: cancel, queues: map[string]*nodeQueue{}, writing: map[string]time.Time{}, beats: map[string]time.Time{}}, nil
}

// HasDriver reports whether a driver of that name is enabled.
func (e *Engine) HasDriver(name string) bool {
	_, ok := e.drivers[name]
	return ok
}

// HeartbeatTimeout is the heartbeat timeout given to agents.
func (e *Engine) HeartbeatTimeout() time.Duration { return e.cfg.HeartbeatTimeout }

// Start resumes the work of owned nodes left in transient states by a
// previous run, and starts the periodic work (timeouts, progress polls,
// heartbeats recorded by other conductors, nodes gained from them). It
// returns at once.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.started || e.closed {
		e.mu.Unlock()
		return errors.New("provision: engine already started or closed")
	}
	e.started = true
	e.mu.Unlock()
	for _, sub := range []string{"certificates", "agent-logs"} {
		if err := os.MkdirAll(filepath.Join(e.cfg.StateDir, sub), 0o750); err != nil {
			return fmt.Errorf("provision: state dir: %w", err)
		}
	}
	if err := e.recover(ctx); err != nil {
		return err
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.periodic()
	}()
	if ch := e.cfg.Ownership.Gained(); ch != nil {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.watchGained(ch)
		}()
	}
	return nil
}

// Close stops all background work and waits for it. Nodes are left in
// their current, persisted state; Start on the next run (or the conductor
// that takes them over) resumes them.
func (e *Engine) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
}

// submit queues a job for a node; heartbeat and poll jobs are coalesced
// with a pending one.
func (e *Engine) submit(uuid string, kind jobKind) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	q, running := e.queues[uuid]
	if !running {
		q = &nodeQueue{}
		e.queues[uuid] = q
	}
	if kind == jobHeartbeat || kind == jobPoll {
		for i, p := range q.pending {
			if p == jobHeartbeat {
				return
			}
			if p == jobPoll {
				q.pending[i] = kind // a heartbeat supersedes a poll
				return
			}
		}
	}
	q.pending = append(q.pending, kind)
	if !running {
		e.wg.Add(1)
		go e.worker(uuid, q)
	}
}

// busy reports whether a node has a job queued or running here.
func (e *Engine) busy(uuid string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.queues[uuid]
	return ok
}

// worker runs a node's jobs one after the other until its queue is empty.
func (e *Engine) worker(uuid string, q *nodeQueue) {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		if len(q.pending) == 0 || e.ctx.Err() != nil {
			delete(e.queues, uuid)
			e.mu.Unlock()
			return
		}
		kind := q.pending[0]
		q.pending = q.pending[1:]
		e.mu.Unlock()
		e.run(e.ctx, uuid, kind)
	}
}

// owns asks the Ownership whether this conductor drives the node; an
// error counts as "no" (another conductor may hold it).
func (e *Engine) owns(ctx context.Context, uuid string) bool {
	ok, err := e.cfg.Ownership.Owns(ctx, uuid)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("cannot tell whether this conductor owns the node; leaving it alone", "node", uuid, "error", err)
		}
		return false
	}
	return ok
}

func (e *Engine) run(ctx context.Context, uuid string, kind jobKind) {
	if !e.owns(ctx, uuid) {
		e.log.Debug("node job dropped: another conductor owns the node", "node", uuid, "job", jobNames[kind])
		return
	}
	e.log.Debug("node job", "node", uuid, "job", jobNames[kind])
	switch kind {
	case jobVerify:
		e.verify(ctx, uuid)
	case jobClean:
		e.clean(ctx, uuid)
	case jobDeploy:
		e.startDeploy(ctx, uuid)
	case jobContinue:
		e.continueDeploy(ctx, uuid)
	case jobHeartbeat:
		e.processHeartbeat(ctx, uuid)
	case jobPoll:
		e.pollProgress(ctx, uuid)
	case jobTimeout:
		e.callbackTimeout(ctx, uuid)
	case jobTeardown:
		e.teardown(ctx, uuid)
	case jobInspect:
		e.inspect(ctx, uuid)
	case jobAdopt:
		e.adopt(ctx, uuid)
	case jobAbort:
		e.afterAbort(ctx, uuid)
	case jobPower:
		e.changePower(ctx, uuid)
	}
}

// resumeJob is the job that carries on the work of a node in state s, if
// any. Wait states need none: the agent's next heartbeat (or the timeout)
// moves them.
func resumeJob(s statemachine.State) (jobKind, bool) {
	switch s {
	case statemachine.Verifying:
		return jobVerify, true
	case statemachine.Cleaning:
		return jobClean, true
	case statemachine.Deleting:
		return jobTeardown, true
	case statemachine.Deploying:
		return jobContinue, true
	case statemachine.Inspecting:
		return jobInspect, true
	case statemachine.Adopting:
		return jobAdopt, true
	}
	return 0, false
}

// resume queues the work a node needs after a restart or a takeover: the
// job of its transient state, a heartbeat recorded but not processed, and
// a power change requested but not done.
func (e *Engine) resume(n *store.Node) {
	if job, ok := resumeJob(n.ProvisionState); ok {
		e.log.Info("resuming interrupted work", "node", n.UUID, "provision_state", string(n.ProvisionState),
			"deploy_step", n.DeployStep["step"], "clean_step_index", n.DriverInternalInfo["clean_step_index"])
		e.submit(n.UUID, job)
	}
	if heartbeatPending(n) && (n.ProvisionState == statemachine.DeployWait || n.ProvisionState == statemachine.CleanWait) {
		e.submit(n.UUID, jobHeartbeat)
	}
	if n.TargetPowerState != "" {
		e.submit(n.UUID, jobPower)
	}
}

// recover queues the work of owned nodes a previous run left behind.
func (e *Engine) recover(ctx context.Context) error {
	nodes, err := e.st.ListNodes(ctx, store.NodeFilter{})
	if err != nil {
		return fmt.Errorf("provision: resume nodes: %w", err)
	}
	for _, n := range nodes {
		if e.owns(ctx, n.UUID) {
			e.resume(n)
		}
	}
	return nil
}

// watchGained resumes the nodes this conductor takes over.
func (e *Engine) watchGained(ch <-chan string) {
	for {
		select {
		case <-e.ctx.Done():
			return
		case uuid, ok := <-ch:
			if !ok {
				return
			}
			n, err := e.st.GetNode(e.ctx, uuid)
			if err != nil {
				if e.ctx.Err() == nil {
					e.log.Error("node taken over but not readable", "node", uuid, "error", err)
				}
				continue
			}
			e.log.Info("took over node from another conductor", "node", uuid, "provision_state", string(n.ProvisionState))
			e.resume(n)
		}
	}
}

// periodic runs the timeout checks, the progress polls and the search for
// work other conductors left, until the engine closes.
func (e *Engine) periodic() {
	check := time.NewTicker(e.cfg.CheckInterval)
	defer check.Stop()
	var pollC, pendingC <-chan time.Time
	if e.cfg.ProgressPollInterval > 0 {
		poll := time.NewTicker(pollTick(e.cfg.ProgressPollInterval))
		defer poll.Stop()
		pollC = poll.C
	}
	if !ownsAll(e.cfg.Ownership) && e.cfg.PendingPollInterval > 0 {
		pending := time.NewTicker(e.cfg.PendingPollInterval)
		defer pending.Stop()
		pendingC = pending.C
	}
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-check.C:
			e.checkTimeouts(e.ctx)
		case <-pollC:
			for _, uuid := range e.duePolls(e.now()) {
				e.submit(uuid, jobPoll)
			}
		case <-pendingC:
			e.pickUpPending(e.ctx)
		}
	}
}

// pendingStates are searched for work left by other conductors.
var pendingStates = []statemachine.State{statemachine.DeployWait, statemachine.CleanWait,
	statemachine.Verifying, statemachine.Cleaning, statemachine.Deploying, statemachine.Deleting,
	statemachine.Inspecting, statemachine.Adopting}

// pickUpPending queues, for owned nodes with nothing running here, the
// heartbeats other conductors recorded and the work whose transition
// another conductor committed (after a grace period, so that a job this
// conductor is about to queue itself is not doubled).
func (e *Engine) pickUpPending(ctx context.Context) {
	grace := 2 * e.cfg.PendingPollInterval
	for _, s := range pendingStates {
		nodes, err := e.st.ListNodes(ctx, store.NodeFilter{ProvisionState: s})
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("searching for pending work failed", "provision_state", string(s), "error", err)
			}
			return
		}
		for _, n := range nodes {
			if e.busy(n.UUID) || !e.owns(ctx, n.UUID) {
				continue
			}
			if statemachine.AgentWait[s] {
				if heartbeatPending(n) {
					e.submit(n.UUID, jobHeartbeat)
				}
				continue
			}
			if e.cfg.Now().Sub(n.ProvisionUpdatedAt) > grace {
				e.resume(n)
			}
		}
	}
}

// checkTimeouts queues the timeout job of owned nodes that waited too
// long for their agent.
func (e *Engine) checkTimeouts(ctx context.Context) {
	for s := range statemachine.AgentWait {
		nodes, err := e.st.ListNodes(ctx, store.NodeFilter{ProvisionState: s})
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("callback timeout check failed", "error", err)
			}
			return
		}
		for _, n := range nodes {
			if e.timedOut(n) && !e.busy(n.UUID) && e.owns(ctx, n.UUID) {
				e.submit(n.UUID, jobTimeout)
			}
		}
	}
}

// timeoutFor is the callback timeout of a wait state (0: none).
func (e *Engine) timeoutFor(s statemachine.State) time.Duration {
	switch s {
	case statemachine.DeployWait:
		return e.cfg.CallbackTimeout
	case statemachine.CleanWait:
		return e.cfg.CleanCallbackTimeout
	case statemachine.InspectWait:
		return e.cfg.InspectWaitTimeout
	}
	return 0
}

func (e *Engine) timedOut(n *store.Node) bool {
	d := e.timeoutFor(n.ProvisionState)
	return d > 0 && e.cfg.Now().Sub(n.ProvisionUpdatedAt) > d
}

// callbackTimeout fails an operation whose agent did not call back in time.
func (e *Engine) callbackTimeout(ctx context.Context, uuid string) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil || !e.timedOut(n) {
		return
	}
	switch n.ProvisionState {
	case statemachine.DeployWait:
		e.failDeploy(ctx, uuid, statemachine.DeployWait,
			fmt.Sprintf("Timeout reached while waiting for callback for node %s", uuid))
	case statemachine.CleanWait:
		e.failClean(ctx, uuid, statemachine.CleanWait, fmt.Sprintf(
			"Timeout reached while cleaning the node. Please check if the ramdisk responsible for the cleaning is running on the node. Failed on step %s.",
			pyRepr(n.CleanStep())))
	case statemachine.InspectWait:
		e.failInspect(ctx, uuid, statemachine.InspectWait, "Timeout reached while inspecting the node")
	}
}

func (e *Engine) setWriting(uuid string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !on {
		delete(e.writing, uuid)
	} else if _, ok := e.writing[uuid]; !ok {
		e.writing[uuid] = e.now()
	}
}

// progressRefreshed records that a writing node's progress was just read
// (a heartbeat brought it), which postpones its next poll.
func (e *Engine) progressRefreshed(uuid string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.writing[uuid]; ok {
		e.writing[uuid] = e.now()
	}
}

// pollTick is how often the poll schedule is looked at: a fraction of the
// interval, so that polls spread over it, at most every 250 ms.
func pollTick(interval time.Duration) time.Duration {
	return max(min(interval/4, 250*time.Millisecond), 10*time.Millisecond)
}

// duePolls returns the writing nodes whose progress is older than the poll
// interval, oldest first, as many as the poll rate allows for one tick, and
// marks them refreshed so that the next tick does not pick them again.
func (e *Engine) duePolls(now time.Time) []string {
	budget := max(1, int(float64(e.cfg.ProgressPollRate)*pollTick(e.cfg.ProgressPollInterval).Seconds()))
	e.mu.Lock()
	defer e.mu.Unlock()
	var due []string
	for uuid, last := range e.writing {
		if now.Sub(last) >= e.cfg.ProgressPollInterval {
			due = append(due, uuid)
		}
	}
	sort.Slice(due, func(i, j int) bool { return e.writing[due[i]].Before(e.writing[due[j]]) })
	if len(due) > budget {
		due = due[:budget]
	}
	for _, uuid := range due {
		e.writing[uuid] = now
	}
	return due
}

// errStateChanged reports that a node left the state a job expected; the
// job stops quietly.
var errStateChanged = errors.New("provision state changed")

func isStateChanged(err error) bool { return errors.Is(err, errStateChanged) }

// update runs fn on the node under its lock, provided the node is in state
// expect ("" = any), and returns the node as committed. A transition made
// by fn is logged after the commit.
func (e *Engine) update(ctx context.Context, uuid string, expect statemachine.State, fn func(tx store.Tx, n *store.Node) error) (*store.Node, error) {
	var (
		out  *store.Node
		from statemachine.State
	)
	err := e.st.WithNodeLock(ctx, uuid, func(tx store.Tx) error {
		n := tx.Node()
		if expect != "" && n.ProvisionState != expect {
			return fmt.Errorf("node %s: in %q, expected %q: %w", uuid, n.ProvisionState, expect, errStateChanged)
		}
		from = n.ProvisionState
		if fn != nil {
			if err := fn(tx, n); err != nil {
				return err
			}
		}
		out = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out.ProvisionState != from {
		e.logMove(out, from)
	}
	return out, nil
}

// waitCycle are the moves heartbeat processing makes on every heartbeat
// (a wait state and its working state, both ways); they are logged at
// debug level.
var waitCycle = map[[2]statemachine.State]bool{
	{statemachine.DeployWait, statemachine.Deploying}:   true,
	{statemachine.Deploying, statemachine.DeployWait}:   true,
	{statemachine.CleanWait, statemachine.Cleaning}:     true,
	{statemachine.Cleaning, statemachine.CleanWait}:     true,
	{statemachine.InspectWait, statemachine.Inspecting}: true,
	{statemachine.Inspecting, statemachine.InspectWait}: true,
}

// logMove logs a committed provision-state change.
func (e *Engine) logMove(n *store.Node, from statemachine.State) {
	level := slog.LevelInfo
	if waitCycle[[2]statemachine.State{from, n.ProvisionState}] {
		level = slog.LevelDebug
	}
	attrs := []any{"node", n.UUID, "from", string(from), "to", string(n.ProvisionState),
		"target", string(n.TargetProvisionState)}
	if statemachine.Failure[n.ProvisionState] {
		level = slog.LevelError
		attrs = append(attrs, "last_error", n.LastError)
	}
	e.log.Log(context.Background(), level, "node moved to "+string(n.ProvisionState), attrs...)
}

// logJobError logs a job's failure to persist, unless it was cancelled or
// the node moved on.
func (e *Engine) logJobError(uuid, job string, err error) {
	if err == nil || e.ctx.Err() != nil || isStateChanged(err) {
		return
	}
	e.log.Error("node job failed", "node", uuid, "job", job, "error", err)
}

func (e *Engine) now() time.Time { return e.cfg.Now().UTC() }
