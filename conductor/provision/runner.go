package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/plan"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// outcome is what one of the conductor's own steps asks for next.
type outcome int

const (
	next outcome = iota // run the next step
	wait                // wait for the agent: move to the wait state
)

// ownStep is one of the conductor's own (out-of-band) steps of a kind.
type ownStep struct {
	plan.Own
	// delegates marks a step that starts the agent's in-band step of the
	// same name and waits for it (write_image): heartbeats then follow
	// the agent's command, as for the agent's own steps.
	delegates bool
	run       func(ctx context.Context, t *target) (outcome, error)
	// started, if set, records in the node that a delegating step's
	// agent command started; it runs in the update that moves the node to
	// the wait state, so that the start and the wait are one write.
	started func(info *internalinfo.Info, now time.Time)
}

// kind is one kind of step operation the runner drives: its states, its
// own steps, how its plan is made and how it ends. Deploy and clean are
// kinds; service steps (Metal3's servicing) will be a third.
type kind struct {
	wire             wire.StepKind
	working, waiting statemachine.State
	// own are the conductor's own steps, by "<interface>.<step>".
	own map[string]*ownStep
	// plan makes the plan from the conductor's own steps and the agent's
	// cached ones.
	plan func(n *store.Node, info *internalinfo.Info) ([]wire.PlannedStep, error)
	// replanOnRefresh makes the plan again whenever the agent's steps are
	// fetched, keeping the current step (the deploy slots the agent's
	// steps in around its own).
	replanOnRefresh bool
	// restartOnMismatch says whether a hardware manager version mismatch
	// starts the operation over with a new plan (automated cleaning)
	// rather than retrying the current step.
	restartOnMismatch func(n *store.Node) bool
	// progress says whether the agent's command of a step reports the
	// progress of an image write (deploy_progress).
	progress func(step wire.PlannedStep) bool
	// finish ends the operation once every step is done; fail moves the
	// node from state from to the kind's failure state with msg.
	finish func(ctx context.Context, uuid string)
	fail   func(ctx context.Context, uuid string, from statemachine.State, msg string)
	// describe names a step in Ironic's messages of the kind.
	describe func(step wire.PlannedStep) string
	// Ironic's messages: a step the agent failed (or that failed to
	// start), a step the conductor could not run, a heartbeat that could
	// not be processed, a failure to fetch the agent's steps, a callback
	// timeout.
	stepFailed     func(n *store.Node, step wire.PlannedStep, detail string) string
	stepError      func(n *store.Node, step wire.PlannedStep, err error) string
	processFailed  func(n *store.Node, err error) string
	loadFailed     func(n *store.Node, err error) string
	timeoutMessage func(n *store.Node, info *internalinfo.Info) string
}

// ownStep returns the conductor's own step named like step, nil if the
// step is the agent's (marked requires_ramdisk, or named like none of the
// conductor's).
func (k *kind) ownStep(step wire.PlannedStep) *ownStep {
	if step.RequiresRamdisk {
		return nil
	}
	return k.own[step.Name()]
}

// agentDriven reports whether the agent runs the step: any step that is
// not one of the conductor's own, and those of the conductor's that
// delegate to the agent.
func (k *kind) agentDriven(step wire.PlannedStep) bool {
	o := k.ownStep(step)
	return o == nil || o.delegates
}

// runner is the one step machine for every kind (Ironic's
// conductor/steps.py with the agent_base heartbeat handling): it runs the
// plan from a step on, the conductor's own steps in process and the
// agent's through execute_<kind>_step, and on each heartbeat looks at the
// agent's last command to resume, wait, reboot, retry or fail.
type runner struct {
	nodes    *nodes
	machines *machines
	agents   *agents
	jobs     *jobs
	beats    *beats
	cfg      *Config
	log      *slog.Logger
	kinds    map[wire.StepKind]*kind
}

// waitingKind is the kind whose wait state s is, nil if none.
func (r *runner) waitingKind(s statemachine.State) *kind {
	for _, k := range r.kinds {
		if k.waiting == s {
			return k
		}
	}
	return nil
}

// run runs the plan from step from on, persisting each as the current
// step before it runs, until one waits for the agent or all are done
// (then the kind finishes). A failure fails the operation; "agent is
// busy" waits for the next heartbeat; cancellation (shutdown) leaves the
// node as it is, for the next run to resume.
func (r *runner) run(ctx context.Context, k *kind, uuid string, from int) {
	r.runFrom(ctx, k, uuid, from, nil, nil)
}

// runFrom is run, except that when current is given it is the node as
// the update that returned it left it, with step from already made the
// current one and not started: that step runs without another write.
func (r *runner) runFrom(ctx context.Context, k *kind, uuid string, from int, current *store.Node, currentInfo *internalinfo.Info) {
	for i := from; ; i++ {
		var (
			step wire.PlannedStep
			ok   bool
			n    = current
			info = currentInfo
			err  error
		)
		current, currentInfo = nil, nil
		if n != nil {
			if s := info.Kind(k.wire); i < len(s.Plan) {
				step, ok = s.Plan[i], true
			}
		} else {
			n, info, err = r.nodes.update(ctx, uuid, k.working, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
				s := info.Kind(k.wire)
				if i >= len(s.Plan) {
					return nil
				}
				s.SetIndex(i)
				step, ok = s.Plan[i], true
				return nil
			})
		}
		if err != nil {
			r.jobs.logError(uuid, string(k.wire), err)
			return
		}
		if !ok {
			k.finish(ctx, uuid)
			return
		}
		own := k.ownStep(step)
		t, err := r.machines.targetFor(ctx, n, info)
		out := wait
		if err == nil {
			r.log.Info("running "+string(k.wire)+" step", "node", uuid, "step", step.Name(), "priority", step.PriorityValue())
			if own != nil {
				out, err = own.run(ctx, t)
			} else {
				err = r.execute(ctx, k, t, step)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, agentclient.ErrAgentBusy) {
				r.log.Info("agent is busy; retrying on the next heartbeat", "node", uuid, "step", step.Name())
				r.toWait(ctx, k, uuid, nil)
				return
			}
			msg := err.Error()
			var le lastError
			if !errors.As(err, &le) {
				msg = k.stepError(n, step, err)
			}
			k.fail(ctx, uuid, k.working, msg)
			return
		}
		if out == wait {
			// The step is under way: the agent's, one of the conductor's
			// that the agent carries on, or one of the conductor's that is
			// done and waits for the agent (the ramdisk boot).
			toWait(ctx, r.nodes, r.jobs, k.working, uuid, func(info *internalinfo.Info) {
				s := info.Kind(k.wire)
				switch {
				case own == nil:
					s.Started = true
				case own.delegates:
					s.Started = true
					if own.started != nil {
						own.started(info, r.nodes.now())
					}
				default:
					s.SkipCurrent = true
				}
			})
			if own != nil && own.delegates && k.progress != nil && k.progress(step) {
				r.jobs.polls.track(uuid)
			}
			return
		}
	}
}

// execute starts a step on the agent (execute_<kind>_step, fire and
// forget).
func (r *runner) execute(ctx context.Context, k *kind, t *target, step wire.PlannedStep) error {
	params := k.wire.ExecuteStepParams(step, r.agents.nodeDoc(t.node), portDocs(t.ports), t.info.Agent.HardwareManagerVersion)
	res, err := r.agents.execute(ctx, t.node, t.info, k.wire.ExecuteStepCommand(), params, false)
	if err != nil {
		return err
	}
	if res.CommandStatus == wire.StatusFailed {
		return lastError(k.stepFailed(t.node, step, res.CommandError.Text()))
	}
	return nil
}

// toWait moves a node from the kind's working state to its wait state,
// with what mark records about the current step; a heartbeat that
// arrived meanwhile is processed at once.
func (r *runner) toWait(ctx context.Context, k *kind, uuid string, mark func(s *internalinfo.Steps)) {
	toWait(ctx, r.nodes, r.jobs, k.working, uuid, func(info *internalinfo.Info) {
		if mark != nil {
			mark(info.Kind(k.wire))
		}
	})
}

// toWait moves a node from working to its wait state (EvWait), with
// whatever else fn records; a heartbeat recorded meanwhile is queued.
func toWait(ctx context.Context, ns *nodes, j *jobs, working statemachine.State, uuid string, fn func(info *internalinfo.Info)) {
	n, info, err := ns.update(ctx, uuid, working, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if fn != nil {
			fn(info)
		}
		return ns.advance(n, statemachine.EvWait)
	})
	if err != nil {
		j.logError(uuid, "wait", err)
		return
	}
	if info.Agent.HeartbeatPending != "" {
		j.submit(n.UUID, jobHeartbeat)
	}
}

// heartbeat advances a node in the kind's wait state on its agent's word
// (contract §4.2 steps 4-6, §4.5).
func (r *runner) heartbeat(ctx context.Context, k *kind, n *store.Node, info *internalinfo.Info) {
	if info.Agent.URL == "" {
		// The agent was forgotten (a power off or reboot) after its
		// heartbeat was accepted: the heartbeat is stale.
		r.beats.take(n.UUID)
		r.log.Debug("heartbeat of an agent forgotten since; not processed", "node", n.UUID)
		return
	}
	if r.whileRunning(ctx, k, n, info) {
		return
	}
	// The agent's first heartbeat of an operation: its steps are fetched
	// before the node resumes, and cached in the same write.
	var (
		fetched  *fetchedSteps
		fetchErr error
	)
	if info.Kind(k.wire).Cached == nil {
		fetched, fetchErr = r.fetchSteps(ctx, k, n, info)
	}
	next := -1
	n, info, err := r.resumeFromWait(ctx, k.waiting, n.UUID, func(n *store.Node, info *internalinfo.Info) {
		next = -1
		if fetched != nil && info.Kind(k.wire).Cached == nil {
			// A failed replan caches nothing and fails the operation
			// below, as a failed refresh does.
			if err := r.cacheSteps(k, n, info, fetched); err != nil {
				fetchErr = err
			}
		}
		if fetchErr != nil {
			return
		}
		// The step that runs next, when check would run it without
		// asking the agent, is made the current one in this same write.
		s := info.Kind(k.wire)
		if s.Cached == nil || s.Plan == nil {
			return // check fetches the steps or makes the plan first
		}
		// Past the last step, check finishes the operation.
		if i, own := k.afterOwnStep(s); own && i < len(s.Plan) {
			s.SetIndex(i)
			next = i
		}
	})
	if err != nil {
		return
	}
	if fetchErr != nil {
		r.handle(ctx, k, n, &loadError{fetchErr})
		return
	}
	if next >= 0 {
		r.runFrom(ctx, k, n.UUID, next, n, info)
		return
	}
	r.advance(ctx, k, n, info)
}

// afterOwnStep is the step to run next when the current one is one of
// the conductor's, which waited for the agent: the step after it once the
// ramdisk came up (SkipCurrent), the same one again after a busy agent.
// It reports false when there is no current step or the agent runs it.
func (k *kind) afterOwnStep(s *internalinfo.Steps) (next int, own bool) {
	i := s.IndexValue()
	if i < 0 || i >= len(s.Plan) || k.agentDriven(s.Plan[i]) {
		return 0, false
	}
	if s.SkipCurrent {
		i++
	}
	return i, true
}

// advance processes the agent's state for a node in the kind's working
// state and handles the outcome: wait, fail, or (done inside) the next
// step.
func (r *runner) advance(ctx context.Context, k *kind, n *store.Node, info *internalinfo.Info) {
	r.handle(ctx, k, n, r.check(ctx, k, n, info))
}

// handle acts on the outcome of processing the agent's state: nothing,
// wait for a busy agent, or fail the operation with Ironic's message.
func (r *runner) handle(ctx context.Context, k *kind, n *store.Node, err error) {
	var (
		le   lastError
		load *loadError
	)
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.Is(err, agentclient.ErrAgentBusy):
		r.log.Info("agent is busy; retrying on the next heartbeat", "node", n.UUID)
		r.toWait(ctx, k, n.UUID, nil)
	case errors.As(err, &le):
		k.fail(ctx, n.UUID, k.working, string(le))
	case errors.As(err, &load):
		k.fail(ctx, n.UUID, k.working, k.loadFailed(n, load.err))
	default:
		k.fail(ctx, n.UUID, k.working, k.processFailed(n, err))
	}
}

// loadError is a failure to fetch the agent's steps.
type loadError struct{ err error }

func (e *loadError) Error() string { return e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

// check is the body of heartbeat processing; the node is in the kind's
// working state.
func (r *runner) check(ctx context.Context, k *kind, n *store.Node, info *internalinfo.Info) error {
	uuid := n.UUID
	var err error
	if info.Kind(k.wire).Cached == nil {
		if n, info, err = r.refresh(ctx, k, n, info); err != nil {
			return &loadError{err}
		}
	}
	if info.Kind(k.wire).Plan == nil {
		if n, info, err = r.makePlan(ctx, k, n, info); err != nil {
			return err
		}
	}
	s := info.Kind(k.wire)
	i := s.IndexValue()
	if i >= len(s.Plan) {
		k.finish(ctx, uuid)
		return nil
	}
	if i < 0 {
		return fmt.Errorf("node %s: no current %s step", uuid, k.wire)
	}
	if next, own := k.afterOwnStep(s); own {
		r.run(ctx, k, uuid, next)
		return nil
	}
	step := s.Plan[i]
	list, err := r.agents.commands(ctx, n, info)
	if err != nil {
		return err
	}
	status, cmd := agentStatus(list, k.wire, step, s.Started)
	progress := k.progress != nil && k.progress(step)
	switch status {
	case stepNotStarted:
		// First time, after "agent is busy", or again if the agent lost
		// it by rebooting.
		r.run(ctx, k, uuid, i)
	case stepRunning:
		if progress && cmd != nil && cmd.CommandName == k.wire.ExecuteStepName() {
			r.jobs.polls.track(uuid)
			if err := r.saveProgress(ctx, k, uuid, k.working, cmd, false); err != nil {
				return err
			}
		}
		r.toWait(ctx, k, uuid, nil)
	case stepDone:
		if progress {
			r.jobs.polls.stop(uuid)
			if err := r.saveProgress(ctx, k, uuid, k.working, cmd, true); err != nil {
				return err
			}
		}
		r.log.Info(string(k.wire)+" step done", "node", uuid, "step", step.Name())
		if step.Reboots() {
			return r.rebootForNext(ctx, k, uuid, i+1)
		}
		r.run(ctx, k, uuid, i+1)
	case stepFailed:
		return lastError(k.stepFailed(n, step, cmd.CommandError.Text()))
	case stepMismatch:
		r.log.Info("agent reports a hardware manager version mismatch; refreshing the steps", "node", uuid, "kind", string(k.wire))
		if n, _, err = r.refresh(ctx, k, n, info); err != nil {
			return &loadError{err}
		}
		if k.restartOnMismatch == nil || !k.restartOnMismatch(n) {
			r.run(ctx, k, uuid, i)
			return nil
		}
		// Start over with the fresh steps.
		if n, info, err = r.nodes.update(ctx, uuid, k.working, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
			info.Kind(k.wire).Forget()
			return nil
		}); err != nil {
			return err
		}
		if _, _, err = r.makePlan(ctx, k, n, info); err != nil {
			return err
		}
		r.run(ctx, k, uuid, 0)
	default:
		return lastError(fmt.Sprintf("Agent returned unknown status for %s step %s on node %s : %s.",
			k.wire, k.describe(step), uuid, cmd.CommandStatus))
	}
	return nil
}

// whileRunning handles the most common heartbeat, that of a node whose
// agent is still running the current step, with a single update and no
// state change: the heartbeat is recorded (pending marker cleared,
// callback timeout reset) and a write's progress stored if it moved. It
// reports false when the heartbeat needs full processing: the step ended,
// failed or never started, or anything is unusual, in which case nothing
// was changed.
func (r *runner) whileRunning(ctx context.Context, k *kind, n *store.Node, info *internalinfo.Info) bool {
	uuid := n.UUID
	s := info.Kind(k.wire)
	step, ok := s.Current()
	if n.ProvisionState != k.waiting || s.Cached == nil || !s.Started || !ok || !k.agentDriven(step) {
		return false
	}
	list, err := r.agents.commands(ctx, n, info)
	if err != nil {
		return false
	}
	status, cmd := agentStatus(list, k.wire, step, true)
	if status != stepRunning {
		return false
	}
	var p *wire.Progress
	writing := k.progress != nil && k.progress(step) && cmd != nil && cmd.CommandName == k.wire.ExecuteStepName()
	if writing {
		p = progressOf(k, cmd)
	}
	bt, beat := r.beats.take(uuid)
	_, _, err = r.nodes.update(ctx, uuid, k.waiting, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if err := recordBeat(info, bt, beat); err != nil {
			return err
		}
		info.Agent.HeartbeatPending = ""
		n.Touch(r.nodes.now())
		if p != nil && progressMoved(info.Image.Progress, p) {
			info.Image.Progress = p
		}
		return nil
	})
	if err != nil {
		switch {
		case errors.Is(err, errAgentGone):
			r.log.Info("first heartbeat of an agent replaced since; not processed", "node", uuid)
			return true
		case !isStateChanged(err):
			r.jobs.logError(uuid, "heartbeat", err)
		case beat:
			r.beats.requeue(uuid, bt)
			return true
		}
		return false
	}
	if writing {
		r.jobs.polls.track(uuid)
		r.jobs.polls.refreshed(uuid)
	}
	return true
}

// resumeFromWait moves a node from a wait state to its working state on
// a heartbeat, clearing the pending marker; it fails quietly when the node
// is elsewhere (the marker then stays for the job that owns the node).
func (r *runner) resumeFromWait(ctx context.Context, waitState statemachine.State, uuid string,
	also func(n *store.Node, info *internalinfo.Info)) (*store.Node, *internalinfo.Info, error) {
	bt, beat := r.beats.take(uuid)
	n, info, err := r.nodes.update(ctx, uuid, waitState, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if err := recordBeat(info, bt, beat); err != nil {
			return err
		}
		if info.Agent.URL == "" {
			// The agent was heard of only in a first heartbeat that is
			// no longer pending: nothing to resume with.
			return errAgentGone
		}
		info.Agent.HeartbeatPending = ""
		if err := r.nodes.advance(n, statemachine.EvResume); err != nil {
			return err
		}
		if also != nil {
			also(n, info)
		}
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, errAgentGone):
		r.log.Info("first heartbeat of an agent replaced since; not processed", "node", uuid)
	case !isStateChanged(err):
		r.jobs.logError(uuid, "heartbeat", err)
	case beat:
		r.beats.requeue(uuid, bt)
	}
	return n, info, err
}

// rebootForNext boots the deploy ramdisk again after a step that asked
// for it, with step next as the current one, and waits for the agent.
func (r *runner) rebootForNext(ctx context.Context, k *kind, uuid string, next int) error {
	n, info, err := r.nodes.update(ctx, uuid, k.working, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		s := info.Kind(k.wire)
		s.SetIndex(next)
		s.Reboot = true
		return nil
	})
	if err != nil {
		return err
	}
	t, err := r.machines.targetFor(ctx, n, info)
	if err == nil {
		err = r.machines.bootRamdisk(ctx, t)
	}
	if err != nil {
		return err
	}
	r.toWait(ctx, k, uuid, nil)
	return nil
}

// refresh asks the agent for its steps of the kind
// (get_<kind>_steps), caches them (each marked requires_ramdisk, by
// interface) with its hardware manager version and, for kinds that
// replan, makes the plan again around the current step.
func (r *runner) refresh(ctx context.Context, k *kind, n *store.Node, info *internalinfo.Info) (*store.Node, *internalinfo.Info, error) {
	f, err := r.fetchSteps(ctx, k, n, info)
	if err != nil {
		return nil, nil, err
	}
	return r.nodes.update(ctx, n.UUID, k.working, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		return r.cacheSteps(k, n, info, f)
	})
}

// fetchedSteps are the agent's steps of a kind as get_<kind>_steps
// returned them, ready to cache.
type fetchedSteps struct {
	cached  map[string][]wire.PlannedStep
	version wire.HardwareManagerVersion
}

// fetchSteps asks the agent for its steps of the kind.
func (r *runner) fetchSteps(ctx context.Context, k *kind, n *store.Node, info *internalinfo.Info) (*fetchedSteps, error) {
	ports, err := r.nodes.st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		return nil, fmt.Errorf("node %s: list ports: %w", n.UUID, err)
	}
	res, err := r.agents.succeeded(ctx, n, info, k.wire.GetStepsCommand(),
		wire.GetStepsParams{Node: r.agents.nodeDoc(n), Ports: portDocs(ports)})
	if err != nil {
		return nil, err
	}
	steps, err := k.wire.DecodeAgentSteps(res)
	if err != nil {
		return nil, err
	}
	cached, err := plan.Cache(steps.Steps)
	if err != nil {
		return nil, err
	}
	return &fetchedSteps{cached: cached, version: steps.HardwareManagerVersion}, nil
}

// cacheSteps records fetched steps in the node (within an update); when
// the new plan cannot be made it changes nothing.
func (r *runner) cacheSteps(k *kind, n *store.Node, info *internalinfo.Info, f *fetchedSteps) error {
	s := info.Kind(k.wire)
	was, wasVersion := *s, info.Agent.HardwareManagerVersion
	s.Cached = f.cached
	info.Agent.HardwareManagerVersion = f.version
	if info.Agent.HardwareManagerVersion == nil {
		info.Agent.HardwareManagerVersion = wire.HardwareManagerVersion{}
	}
	s.Refreshed = agentTimestamp(r.nodes.now())
	if k.replanOnRefresh {
		fresh, err := k.plan(n, info)
		if err != nil {
			*s, info.Agent.HardwareManagerVersion = was, wasVersion
			return err
		}
		if cur, ok := s.Current(); ok {
			if j := plan.IndexOf(fresh, cur); j >= 0 {
				s.Index = &j
			}
		}
		s.Plan = fresh
	}
	n.Touch(r.nodes.now())
	return nil
}

// makePlan makes the kind's plan and stores it with its first step as
// the current one.
func (r *runner) makePlan(ctx context.Context, k *kind, n *store.Node, info *internalinfo.Info) (*store.Node, *internalinfo.Info, error) {
	steps, err := k.plan(n, info)
	if err != nil {
		return nil, nil, err
	}
	r.log.Info(string(k.wire)+" steps planned", "node", n.UUID, "target", string(n.TargetProvisionState), "steps", plan.Names(steps))
	return r.nodes.update(ctx, n.UUID, k.working, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		s := info.Kind(k.wire)
		s.Plan = steps
		s.SetIndex(0)
		return nil
	})
}

// stepStatus is where an in-band step stands according to the agent's
// command list.
type stepStatus int

const (
	stepNotStarted stepStatus = iota // the agent never ran it (freshly booted, or lost it)
	stepRunning                      // still running, or another command runs
	stepDone                         // finished with the step we asked for
	stepFailed                       // failed
	stepMismatch                     // the agent's step version differs
	stepUnknown                      // an unknown status
)

// agentStatus looks at the last command of list the way Ironic's
// _get_completed_command does, for step, the node's current step of kind
// k. started says the agent accepted the step.
func agentStatus(list *wire.CommandList, k wire.StepKind, step wire.PlannedStep, started bool) (stepStatus, *wire.CommandResult) {
	cmd := list.Last()
	if cmd == nil || freshlyBooted(list) {
		return stepNotStarted, cmd
	}
	if cmd.CommandName != k.ExecuteStepName() {
		if !started {
			return stepNotStarted, cmd
		}
		return stepRunning, cmd // another command (one of the conductor's steps) runs
	}
	switch {
	case cmd.CommandStatus == wire.StatusRunning:
		return stepRunning, cmd
	case cmd.CommandStatus == wire.StatusFailed:
		return stepFailed, cmd
	case cmd.CommandStatus.IsVersionMismatch():
		return stepMismatch, cmd
	case cmd.CommandStatus == wire.StatusSucceeded:
		res, _ := k.DecodeStepResult(cmd)
		if res.Step.Step == step.Step && res.Step.Interface == step.Interface {
			return stepDone, cmd
		}
		if !started {
			return stepNotStarted, cmd
		}
		return stepRunning, cmd // an earlier step's result: ours has not started yet
	}
	return stepUnknown, cmd
}

// freshlyBooted reports whether the agent has run nothing but
// get_*_steps commands.
func freshlyBooted(l *wire.CommandList) bool {
	for _, c := range l.Commands {
		if !strings.HasPrefix(c.CommandName, "get_") || !strings.HasSuffix(c.CommandName, "_steps") {
			return false
		}
	}
	return true
}
