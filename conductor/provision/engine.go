// Package provision drives nodes through the provision state machine: it
// accepts provision actions (manage, provide, active, deleted), answers the
// ramdisk's lookup and records its heartbeats, and runs the background work
// (verification, the agent-driven deploy, undeploy, callback timeouts).
// Work for one node runs serially, one job at a time, and always starts
// after the transition that asked for it was committed.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/agent/wire"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Agent is what the engine needs of an agent API client.
type Agent interface {
	Execute(ctx context.Context, agentURL, token, name string, params any, wait bool) (*wire.CommandResult, error)
	Commands(ctx context.Context, agentURL, token string) (*wire.CommandList, error)
}

// Config configures the engine. Zero durations and counts take the
// documented defaults.
type Config struct {
	// APIURL is the conductor's API URL as the conductor reaches it; a
	// node is given it through power.NodeView when its driver has one.
	APIURL string
	// DeployKernel and DeployRamdisk are the deploy ramdisk files used
	// when driver_info has no deploy_kernel / deploy_ramdisk.
	DeployKernel, DeployRamdisk string
	// HeartbeatTimeout is given to agents in the lookup config
	// ([api]ramdisk_heartbeat_timeout, default 300 s).
	HeartbeatTimeout time.Duration
	// CallbackTimeout fails a deploy whose node sat in "wait call-back"
	// without a processed heartbeat this long (default 1800 s).
	CallbackTimeout time.Duration
	// CheckInterval is the period of the callback-timeout check
	// (default 60 s).
	CheckInterval time.Duration
	// ProgressPollInterval is how often the agent's command list is read
	// while an image write runs, between heartbeats, to keep the progress
	// live (default 5 s; negative disables).
	ProgressPollInterval time.Duration
	// PowerOffRetries and PowerOffInterval bound the wait for a node to
	// power itself off at the end of a deploy before a hard power off
	// (default 6 × 5 s).
	PowerOffRetries  int
	PowerOffInterval time.Duration
	// PowerStateTimeout bounds the wait for a requested power state to be
	// reached (default 60 s), polled every PowerStateInterval (default 1 s).
	PowerStateTimeout  time.Duration
	PowerStateInterval time.Duration
	// AutomatedClean enables automated cleaning on provide and undeploy.
	// Not implemented yet: it must be false (the default), and nodes go
	// from cleaning to available at once.
	AutomatedClean bool
	// Conductor is this conductor's host name (shown in node documents).
	Conductor string
	// Logger receives the engine's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, 300*time.Second)
	def(&c.CallbackTimeout, 1800*time.Second)
	def(&c.CheckInterval, 60*time.Second)
	def(&c.ProgressPollInterval, 5*time.Second)
	def(&c.PowerOffInterval, 5*time.Second)
	def(&c.PowerStateTimeout, 60*time.Second)
	def(&c.PowerStateInterval, time.Second)
	if c.PowerOffRetries <= 0 {
		c.PowerOffRetries = 6
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
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
	writing map[string]bool
}

type jobKind int

const (
	jobVerify    jobKind = iota // enroll -> manageable
	jobClean                    // cleaning -> available
	jobDeploy                   // deploying: boot the ramdisk (step "deploy")
	jobContinue                 // deploying: run the out-of-band steps from the current one
	jobHeartbeat                // wait call-back: process the agent's state
	jobPoll                     // wait call-back: refresh write progress only
	jobTimeout                  // wait call-back: callback timeout
	jobTeardown                 // deleting -> cleaning -> available
)

var jobNames = map[jobKind]string{jobVerify: "verify", jobClean: "clean", jobDeploy: "deploy",
	jobContinue: "continue", jobHeartbeat: "heartbeat", jobPoll: "poll", jobTimeout: "timeout",
	jobTeardown: "teardown"}

type nodeQueue struct {
	pending []jobKind
}

// New returns an engine over the store, the power drivers (by name) and
// an agent client. Call Start to run background work.
func New(st store.Store, drivers []power.Driver, agent Agent, cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if cfg.AutomatedClean {
		return nil, errors.New("provision: automated cleaning is not implemented yet; leave it disabled")
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
		ctx: ctx, cancel: cancel, queues: map[string]*nodeQueue{}, writing: map[string]bool{}}, nil
}

// HasDriver reports whether a driver of that name is enabled.
func (e *Engine) HasDriver(name string) bool {
	_, ok := e.drivers[name]
	return ok
}

// HeartbeatTimeout is the heartbeat timeout given to agents.
func (e *Engine) HeartbeatTimeout() time.Duration { return e.cfg.HeartbeatTimeout }

// Start resumes the work of nodes left in transient states by a previous
// run, and starts the periodic checks. It returns at once.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.started || e.closed {
		e.mu.Unlock()
		return errors.New("provision: engine already started or closed")
	}
	e.started = true
	e.mu.Unlock()
	if err := e.recover(ctx); err != nil {
		return err
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.periodic()
	}()
	return nil
}

// Close stops all background work and waits for it. Nodes are left in
// their current, persisted state; Start on the next run resumes them.
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

func (e *Engine) run(ctx context.Context, uuid string, kind jobKind) {
	e.log.Debug("node job", "node", uuid, "job", jobNames[kind])
	switch kind {
	case jobVerify:
		e.verify(ctx, uuid)
	case jobClean:
		e.clean(ctx, uuid)
	case jobDeploy:
		e.runSteps(ctx, uuid, 0)
	case jobContinue:
		e.continueSteps(ctx, uuid)
	case jobHeartbeat:
		e.processHeartbeat(ctx, uuid)
	case jobPoll:
		e.pollProgress(ctx, uuid)
	case jobTimeout:
		e.callbackTimeout(ctx, uuid)
	case jobTeardown:
		e.teardown(ctx, uuid)
	}
}

// recover queues the work of nodes a previous run left in a transient
// state.
func (e *Engine) recover(ctx context.Context) error {
	nodes, err := e.st.ListNodes(ctx, store.NodeFilter{})
	if err != nil {
		return fmt.Errorf("provision: resume nodes: %w", err)
	}
	for _, n := range nodes {
		switch n.ProvisionState {
		case statemachine.Verifying:
			e.submit(n.UUID, jobVerify)
		case statemachine.Cleaning:
			e.submit(n.UUID, jobClean)
		case statemachine.Deleting:
			e.submit(n.UUID, jobTeardown)
		case statemachine.Deploying:
			e.log.Info("resuming interrupted deploy", "node", n.UUID, "deploy_step", n.DeployStep["step"])
			e.submit(n.UUID, jobContinue)
		default:
			continue
		}
	}
	return nil
}

// periodic runs the callback-timeout check and the progress polls until
// the engine closes.
func (e *Engine) periodic() {
	check := time.NewTicker(e.cfg.CheckInterval)
	defer check.Stop()
	var pollC <-chan time.Time
	if e.cfg.ProgressPollInterval > 0 {
		poll := time.NewTicker(e.cfg.ProgressPollInterval)
		defer poll.Stop()
		pollC = poll.C
	}
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-check.C:
			e.checkCallbackTimeouts(e.ctx)
		case <-pollC:
			e.mu.Lock()
			var nodes []string
			for uuid := range e.writing {
				nodes = append(nodes, uuid)
			}
			e.mu.Unlock()
			for _, uuid := range nodes {
				e.submit(uuid, jobPoll)
			}
		}
	}
}

func (e *Engine) checkCallbackTimeouts(ctx context.Context) {
	nodes, err := e.st.ListNodes(ctx, store.NodeFilter{ProvisionState: statemachine.DeployWait})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("callback timeout check failed", "error", err)
		}
		return
	}
	for _, n := range nodes {
		if e.timedOut(n) {
			e.submit(n.UUID, jobTimeout)
		}
	}
}

func (e *Engine) timedOut(n *store.Node) bool {
	return n.ProvisionState == statemachine.DeployWait &&
		e.cfg.Now().Sub(n.ProvisionUpdatedAt) > e.cfg.CallbackTimeout
}

func (e *Engine) setWriting(uuid string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on {
		e.writing[uuid] = true
	} else {
		delete(e.writing, uuid)
	}
}

// errStateChanged reports that a node left the state a job expected; the
// job stops quietly.
var errStateChanged = errors.New("provision state changed")

// update runs fn on the node under its lock, provided the node is in state
// expect, and returns the node as committed. A transition made by fn is
// logged after the commit.
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

// logMove logs a committed provision-state change.
func (e *Engine) logMove(n *store.Node, from statemachine.State) {
	level := slog.LevelInfo
	if (from == statemachine.DeployWait && n.ProvisionState == statemachine.Deploying) ||
		(from == statemachine.Deploying && n.ProvisionState == statemachine.DeployWait && n.DeployStep["step"] != "deploy") {
		level = slog.LevelDebug // heartbeat processing, every heartbeat
	}
	attrs := []any{"node", n.UUID, "from", string(from), "to", string(n.ProvisionState),
		"target", string(n.TargetProvisionState)}
	if statemachine.Failure[n.ProvisionState] {
		level = slog.LevelError
		attrs = append(attrs, "last_error", n.LastError)
	}
	e.log.Log(context.Background(), level, "node moved to "+string(n.ProvisionState), attrs...)
}

func (e *Engine) now() time.Time { return e.cfg.Now().UTC() }
