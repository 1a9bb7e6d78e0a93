package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/nodequeue"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// jobKind is what a node's job does.
type jobKind = nodequeue.Job

const (
	jobVerify    jobKind = iota // verifying -> manageable
	jobClean                    // cleaning: prepare or resume
	jobDeploy                   // deploying: run or resume the steps
	jobHeartbeat                // a wait state: process the agent's state
	jobPoll                     // wait call-back: refresh write progress only
	jobTimeout                  // a wait state: callback timeout
	jobTeardown                 // deleting -> cleaning
	jobInspect                  // inspecting: boot the ramdisk, or finish
	jobAdopt                    // adopting -> active
	jobAbort                    // after abort: power off and clean up
	jobPower                    // target_power_state set: change the power
	jobService                  // servicing: prepare, run or resume the steps
)

var jobNames = map[jobKind]string{jobVerify: "verify", jobClean: "clean", jobDeploy: "deploy",
	jobHeartbeat: "heartbeat", jobPoll: "poll", jobTimeout: "timeout", jobTeardown: "teardown",
	jobInspect: "inspect", jobAdopt: "adopt", jobAbort: "abort", jobPower: "power", jobService: "service"}

// workFor is the job that carries on the work of a node in state s: the
// one table from transient state to job, used after a transition and when
// resuming. Wait states need none: the agent's next heartbeat (or the
// timeout) moves them.
func workFor(s statemachine.State) (jobKind, bool) {
	switch s {
	case statemachine.Verifying:
		return jobVerify, true
	case statemachine.Cleaning:
		return jobClean, true
	case statemachine.Deleting:
		return jobTeardown, true
	case statemachine.Deploying:
		return jobDeploy, true
	case statemachine.Inspecting:
		return jobInspect, true
	case statemachine.Adopting:
		return jobAdopt, true
	case statemachine.Servicing:
		return jobService, true
	}
	return 0, false
}

// jobs runs each node's jobs one at a time (nodequeue), only for nodes
// this conductor owns, each under the fence of the lease it holds when
// the job starts and with a context of its own (which lease loss, abort
// and delete cancel: stop), and the periodic work: callback timeouts,
// progress polls, work other conductors left, nodes taken over.
type jobs struct {
	nodes    *nodes
	cfg      *Config
	log      *slog.Logger
	queue    *nodequeue.Queue
	handlers map[jobKind]func(ctx context.Context, uuid string)
	// polls tracks the image writes whose progress is polled.
	polls *progressPolls
	wg    sync.WaitGroup
}

func newJobs(ns *nodes, cfg *Config) *jobs {
	j := &jobs{nodes: ns, cfg: cfg, log: cfg.Logger, handlers: map[jobKind]func(context.Context, string){}}
	j.polls = newProgressPolls(cfg.ProgressPollInterval, cfg.ProgressPollRate, ns.now)
	j.queue = nodequeue.New(context.Background(), nodequeue.Config{Run: j.run, Merge: mergeJobs})
	return j
}

// mergeJobs folds a heartbeat or poll job into a pending one: a heartbeat
// stands for a poll, never the other way round.
func mergeJobs(pending, job jobKind) (jobKind, bool) {
	refresh := func(k jobKind) bool { return k == jobHeartbeat || k == jobPoll }
	if !refresh(pending) || !refresh(job) {
		return 0, false
	}
	if pending == jobHeartbeat || job == jobHeartbeat {
		return jobHeartbeat, true
	}
	return jobPoll, true
}

// handle sets the function that does jobs of kind k.
func (j *jobs) handle(k jobKind, fn func(ctx context.Context, uuid string)) { j.handlers[k] = fn }

// submit queues a job for a node (dropped while the node's work is
// stopped).
func (j *jobs) submit(uuid string, k jobKind) {
	if !j.queue.Submit(uuid, k) && j.queue.Context().Err() == nil {
		j.log.Debug("node job dropped: the node's work is being stopped", "node", uuid, "job", jobNames[k])
	}
}

// submitWork queues the job a node's new state needs, if any.
func (j *jobs) submitWork(n *store.Node) {
	if k, ok := workFor(n.ProvisionState); ok {
		j.submit(n.UUID, k)
	}
}

// busy reports whether a node has a job queued or running here.
func (j *jobs) busy(uuid string) bool { return j.queue.Busy(uuid) }

// run runs one job of a node this conductor owns, under the fence of the
// lease held now; a job whose context was cancelled by a fence, an abort
// or a delete says so once.
func (j *jobs) run(ctx context.Context, uuid string, k jobKind) {
	f, ok := j.lease(ctx, uuid)
	if !ok {
		j.log.Debug("node job dropped: another conductor owns the node", "node", uuid, "job", jobNames[k])
		return
	}
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	j.log.Debug("node job", "node", uuid, "job", jobNames[k], "lease_generation", f.Generation)
	j.handlers[k](withScope(jctx, &jobScope{fence: f, cancel: cancel}), uuid)
	switch cause := context.Cause(jctx); {
	case errors.Is(cause, errLeaseLost):
		j.log.Warn("node job stopped: "+cause.Error()+"; nothing more is written or called for the node",
			"node", uuid, "job", jobNames[k], "lease_owner", f.Owner, "lease_generation", f.Generation)
	case errors.Is(cause, errAborted), errors.Is(cause, errDeleted):
		j.log.Info("node job cancelled: "+cause.Error(), "node", uuid, "job", jobNames[k])
	}
}

// lease asks the Ownership whether this conductor drives the node, and
// under which fence; an error counts as "no" (another conductor may hold
// it).
func (j *jobs) lease(ctx context.Context, uuid string) (store.Fence, bool) {
	f, ok, err := j.cfg.Ownership.Lease(ctx, uuid)
	if err != nil {
		if ctx.Err() == nil {
			j.log.Warn("cannot tell whether this conductor owns the node; leaving it alone", "node", uuid, "error", err)
		}
		return store.Fence{}, false
	}
	return f, ok
}

// owns reports whether this conductor drives the node (lease).
func (j *jobs) owns(ctx context.Context, uuid string) bool {
	_, ok := j.lease(ctx, uuid)
	return ok
}

// stop stops a node's work here: its running job is cancelled with cause
// and waited for (bounded by ctx), its pending jobs dropped, and jobs are
// refused until release is called (exactly once, whatever the error).
func (j *jobs) stop(ctx context.Context, uuid string, cause error) (release func(), err error) {
	return j.queue.Stop(ctx, uuid, cause)
}

// logError logs a job's failure to persist, unless it was cancelled
// (shutdown, abort, delete, a lost lease) or the node moved on.
func (j *jobs) logError(uuid, job string, err error) {
	if err == nil || j.queue.Context().Err() != nil || isStateChanged(err) ||
		errors.Is(err, context.Canceled) || isFenced(err) || errors.Is(err, errdefs.ErrNotFound) {
		return
	}
	j.log.Error("node job failed", "node", uuid, "job", job, "error", err)
}

// start queues the work of owned nodes a previous run left behind, then
// starts the periodic work and the watch for nodes taken over.
func (j *jobs) start(ctx context.Context) error {
	nodes, err := j.nodes.st.ListNodes(ctx, store.NodeFilter{})
	if err != nil {
		return fmt.Errorf("provision: resume nodes: %w", err)
	}
	for _, n := range nodes {
		if j.owns(ctx, n.UUID) {
			j.resume(n)
		}
	}
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		j.periodic(j.queue.Context())
	}()
	if ch := j.cfg.Ownership.Gained(); ch != nil {
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			j.watchGained(j.queue.Context(), ch)
		}()
	}
	return nil
}

// close stops the background work and waits for it.
func (j *jobs) close() {
	j.queue.Close()
	j.wg.Wait()
}

// resume queues the work a node needs after a restart or a takeover: the
// job of its transient state, a heartbeat recorded but not processed, and
// a power change requested but not done.
func (j *jobs) resume(n *store.Node) {
	info, err := internalinfo.Decode(n)
	if err != nil {
		j.log.Error("node not resumed: its driver_internal_info does not decode", "node", n.UUID, "error", err)
		return
	}
	if k, ok := workFor(n.ProvisionState); ok {
		j.log.Info("resuming interrupted work", "node", n.UUID, "provision_state", string(n.ProvisionState),
			"deploy_step", n.DeployStep["step"], "clean_step_index", info.Clean.IndexValue())
		j.submit(n.UUID, k)
	}
	if info.Agent.HeartbeatPending != "" && (n.ProvisionState == statemachine.DeployWait || n.ProvisionState == statemachine.CleanWait ||
		n.ProvisionState == statemachine.ServiceWait) {
		j.submit(n.UUID, jobHeartbeat)
	}
	if n.TargetPowerState != "" {
		j.submit(n.UUID, jobPower)
	}
}

// watchGained resumes the nodes this conductor takes over.
func (j *jobs) watchGained(ctx context.Context, ch <-chan string) {
	for {
		select {
		case <-ctx.Done():
			return
		case uuid, ok := <-ch:
			if !ok {
				return
			}
			n, err := j.nodes.st.GetNode(ctx, uuid)
			if err != nil {
				if ctx.Err() == nil {
					j.log.Error("node taken over but not readable", "node", uuid, "error", err)
				}
				continue
			}
			j.log.Info("took over node from another conductor", "node", uuid, "provision_state", string(n.ProvisionState))
			j.resume(n)
		}
	}
}

// periodic runs the timeout checks, the progress polls and the search for
// work other conductors left, until ctx ends.
func (j *jobs) periodic(ctx context.Context) {
	check := time.NewTicker(j.cfg.CheckInterval)
	defer check.Stop()
	var pollC, pendingC <-chan time.Time
	if j.cfg.ProgressPollInterval > 0 {
		poll := time.NewTicker(j.polls.tick())
		defer poll.Stop()
		pollC = poll.C
	}
	if !ownsAll(j.cfg.Ownership) && j.cfg.PendingPollInterval > 0 {
		pending := time.NewTicker(j.cfg.PendingPollInterval)
		defer pending.Stop()
		pendingC = pending.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			j.checkTimeouts(ctx)
		case <-pollC:
			for _, uuid := range j.polls.due() {
				j.submit(uuid, jobPoll)
			}
		case <-pendingC:
			j.pickUpPending(ctx)
		}
	}
}

// pendingStates are searched for work left by other conductors.
var pendingStates = []statemachine.State{statemachine.DeployWait, statemachine.CleanWait,
	statemachine.ServiceWait, statemachine.Verifying, statemachine.Cleaning, statemachine.Deploying,
	statemachine.Deleting, statemachine.Inspecting, statemachine.Adopting, statemachine.Servicing}

// pickUpPending queues, for owned nodes with nothing running here, the
// heartbeats other conductors recorded and the work whose transition
// another conductor committed (after a grace period, so that a job this
// conductor is about to queue itself is not doubled).
func (j *jobs) pickUpPending(ctx context.Context) {
	grace := 2 * j.cfg.PendingPollInterval
	for _, s := range pendingStates {
		nodes, err := j.nodes.st.ListNodes(ctx, store.NodeFilter{ProvisionState: s})
		if err != nil {
			if ctx.Err() == nil {
				j.log.Error("searching for pending work failed", "provision_state", string(s), "error", err)
			}
			return
		}
		for _, n := range nodes {
			if j.busy(n.UUID) || !j.owns(ctx, n.UUID) {
				continue
			}
			if statemachine.AgentWait[s] {
				if internalinfo.HeartbeatPending(n) {
					j.submit(n.UUID, jobHeartbeat)
				}
				continue
			}
			if j.cfg.Now().Sub(n.ProvisionUpdatedAt) > grace {
				j.resume(n)
			}
		}
	}
}

// checkTimeouts queues the timeout job of owned nodes that waited too
// long for their agent.
func (j *jobs) checkTimeouts(ctx context.Context) {
	for s := range statemachine.AgentWait {
		d := j.timeoutFor(s)
		if d <= 0 {
			continue
		}
		// Only the nodes waiting longer than the timeout are read: after
		// a boot storm thousands wait, and reading them all every
		// CheckInterval decoded every one.
		nodes, err := j.nodes.st.ListNodes(ctx, store.NodeFilter{ProvisionState: s,
			ProvisionUpdatedBefore: j.cfg.Now().Add(-d)})
		if err != nil {
			if ctx.Err() == nil {
				j.log.Error("callback timeout check failed", "error", err)
			}
			return
		}
		for _, n := range nodes {
			if j.timedOut(n) && !j.busy(n.UUID) && j.owns(ctx, n.UUID) {
				j.submit(n.UUID, jobTimeout)
			}
		}
	}
}

// timeoutFor is the callback timeout of a wait state (0: none).
func (j *jobs) timeoutFor(s statemachine.State) time.Duration {
	switch s {
	case statemachine.DeployWait:
		return j.cfg.CallbackTimeout
	case statemachine.CleanWait:
		return j.cfg.CleanCallbackTimeout
	case statemachine.InspectWait:
		return j.cfg.InspectWaitTimeout
	case statemachine.ServiceWait:
		return j.cfg.ServiceCallbackTimeout
	}
	return 0
}

func (j *jobs) timedOut(n *store.Node) bool {
	d := j.timeoutFor(n.ProvisionState)
	return d > 0 && j.cfg.Now().Sub(n.ProvisionUpdatedAt) > d
}
