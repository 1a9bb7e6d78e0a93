package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/plan"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Cleaning (contract §4.5) runs as Ironic's: the node boots the deploy
// ramdisk (clean wait); on the agent's first heartbeat its clean steps are
// fetched (clean.get_clean_steps) and the plan is made, automated (every
// step whose priority, after the conductor's overrides, is above 0,
// highest first) or manual (the operator's steps, matched against the
// agent's); the runner then runs it; at the end the node is powered off
// and goes to available (automated) or manageable (manual). The erase
// settings the agent reads are recorded before the ramdisk boots.

// cleanKind is the clean step kind: how cleaning starts, is planned, ends
// and fails.
type cleanKind struct {
	k *kind
	r *runner
}

func newCleanKind(r *runner) *cleanKind {
	c := &cleanKind{r: r}
	processFailed := func(n *store.Node, err error) string {
		return fmt.Sprintf("Failed to process the next clean step for node %s: %v", n.UUID, err)
	}
	c.k = &kind{
		wire:              wire.CleanStepKind,
		working:           statemachine.Cleaning,
		waiting:           statemachine.CleanWait,
		plan:              c.plan,
		restartOnMismatch: func(n *store.Node) bool { return !manualClean(n) },
		finish:            func(ctx context.Context, uuid string) { c.finish(ctx, uuid, true) },
		fail:              c.fail,
		describe:          plan.Repr,
		stepFailed: func(n *store.Node, s wire.PlannedStep, detail string) string {
			return fmt.Sprintf("Agent returned error for clean step %s on node %s : %s.", plan.Repr(s), n.UUID, detail)
		},
		stepError:     func(n *store.Node, _ wire.PlannedStep, err error) string { return processFailed(n, err) },
		processFailed: processFailed,
		loadFailed: func(n *store.Node, err error) string {
			return processFailed(n, fmt.Errorf("get clean steps: %w", err))
		},
		timeoutMessage: func(_ *store.Node, info *internalinfo.Info) string {
			step, _ := info.Clean.Current()
			return "Timeout reached while cleaning the node. Please check if the ramdisk responsible for the cleaning is running on the node. Failed on step " +
				plan.Repr(step) + "."
		},
	}
	return c
}

// automatedClean reports whether automated cleaning runs for a node:
// unless the conductor turns it off (Config.DisableAutomatedClean). This
// is the seam for Ironic's per-node automated_clean (true cleans, false
// skips, null follows the conductor) once nodes have the field.
func automatedClean(cfg *Config, n *store.Node) bool {
	return !cfg.DisableAutomatedClean
}

// manualClean reports whether a cleaning node was asked for manual
// cleaning (it heads for manageable).
func manualClean(n *store.Node) bool {
	return n.TargetProvisionState == statemachine.Manageable
}

// plan is the cleaning plan: the operator's steps for manual cleaning,
// the agent's by priority for automated cleaning.
func (c *cleanKind) plan(n *store.Node, info *internalinfo.Info) ([]wire.PlannedStep, error) {
	if !manualClean(n) {
		return plan.Automated(info.Clean.Cached, c.r.cfg.CleanStepPriorities, plan.CleanInterfaceRank), nil
	}
	steps, err := plan.Manual(info.UserCleanSteps, info.Clean.Cached)
	var unsupported *plan.UnsupportedStepError
	if errors.As(err, &unsupported) {
		return nil, lastError(fmt.Sprintf("node %s does not support this clean step: %s", n.UUID, plan.Repr(unsupported.Step)))
	}
	return steps, err
}

// start starts or resumes the cleaning of a node in "cleaning" (a job).
func (c *cleanKind) start(ctx context.Context, uuid string) {
	n, info, err := c.r.nodes.read(ctx, uuid)
	if err != nil || n.ProvisionState != statemachine.Cleaning {
		c.r.jobs.logError(uuid, "clean", err)
		return
	}
	switch {
	case !manualClean(n) && !automatedClean(c.r.cfg, n):
		c.r.log.Warn("automated cleaning is disabled; the node is not cleaned", "node", uuid)
		c.finish(ctx, uuid, false)
	case info.CleaningFinishing:
		c.finish(ctx, uuid, true)
	case info.Clean.Index != nil:
		// A step was running when the previous run stopped: the agent's
		// next heartbeat tells where it stands.
		c.r.toWait(ctx, c.k, uuid, nil)
	default:
		c.prepare(ctx, uuid)
	}
}

// prepare boots the ramdisk for cleaning (or, with fast-track, uses the
// running agent at once), with the erase settings recorded.
func (c *cleanKind) prepare(ctx context.Context, uuid string) {
	n, info, err := c.r.nodes.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		info.Erase = internalinfo.DefaultEraseSettings()
		info.BootMode = c.r.machines.bootMode(n, info)
		return nil
	})
	if err != nil {
		c.r.jobs.logError(uuid, "clean", err)
		return
	}
	if fastTrackable(c.r.cfg, n, info) {
		c.r.log.Info("fast-track: cleaning with the running agent", "node", uuid)
		c.r.advance(ctx, c.k, n, info)
		return
	}
	t, err := c.r.machines.targetFor(ctx, n, info)
	if err == nil {
		err = c.r.machines.bootRamdisk(ctx, t)
	}
	if err != nil {
		if ctx.Err() == nil {
			c.fail(ctx, uuid, statemachine.Cleaning, fmt.Sprintf("Failed to prepare node %s for cleaning: %v", uuid, err))
		}
		return
	}
	c.r.toWait(ctx, c.k, uuid, nil)
}

// wipeClean removes the temporary cleaning fields (Ironic's
// wipe_cleaning_internal_info, the token and URL aside).
func wipeClean(info *internalinfo.Info) {
	info.Clean.Wipe()
	info.CleaningFinishing = false
	info.UserCleanSteps = nil
}

// finish ends cleaning (Ironic's tear_down_cleaning): the agent's logs
// when asked for always, power off unless fast-track keeps the agent, the
// cleaning fields wiped, then available (automated) or manageable
// (manual). teardown is false when no ramdisk was booted.
func (c *cleanKind) finish(ctx context.Context, uuid string, teardown bool) {
	n, info, err := c.r.nodes.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		info.CleaningFinishing = true
		return nil
	})
	if err != nil {
		c.r.jobs.logError(uuid, "clean", err)
		return
	}
	fast := fastTrackable(c.r.cfg, n, info)
	if teardown {
		if c.r.cfg.LogsCollect == LogsAlways {
			c.r.agents.collectLogs(ctx, n, info, "cleaning")
		}
		if !fast {
			t, err := c.r.machines.targetFor(ctx, n, info)
			if err == nil {
				err = c.r.machines.setPower(ctx, t, power.Off)
			}
			if err != nil {
				if ctx.Err() == nil {
					c.fail(ctx, uuid, statemachine.Cleaning, fmt.Sprintf("Failed to tear down cleaning on node %s, reason: %v", uuid, err))
				}
				return
			}
		}
	}
	_, _, err = c.r.nodes.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		ev := statemachine.EvDone
		if manualClean(n) {
			ev = statemachine.EvManage
		}
		wipeClean(info)
		if !fast {
			info.Agent.WipeTokenAndURL()
		}
		return c.r.nodes.advance(n, ev)
	})
	c.r.jobs.logError(uuid, "clean", err)
}

// fail moves a cleaning node to clean failed with msg as its last error
// (Ironic's cleaning_error_handler): the agent's logs are collected
// first, a failure during a clean step also puts the node in maintenance,
// and the node is powered off.
func (c *cleanKind) fail(ctx context.Context, uuid string, from statemachine.State, msg string) {
	if n, info, err := c.r.nodes.read(ctx, uuid); err == nil {
		c.r.agents.collectLogs(ctx, n, info, "cleaning-failed")
	}
	n, info, err := c.r.nodes.update(ctx, uuid, from, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if _, ok := info.Clean.Current(); ok {
			n.Maintenance = true
			if n.MaintenanceReason == "" {
				n.MaintenanceReason = msg
			}
		}
		n.LastError = msg
		wipeClean(info)
		info.Agent.WipeTokenAndURL()
		return c.r.nodes.advance(n, statemachine.EvFail)
	})
	if err != nil {
		c.r.jobs.logError(uuid, "fail clean", err)
		return
	}
	c.r.machines.powerOffAfterFailure(ctx, n, info)
}

// abort records an abort of cleaning in clean wait, in the transaction
// that makes it; a current step that is not abortable refuses it.
func (c *cleanKind) abort(n *store.Node, info *internalinfo.Info) error {
	step, ok := info.Clean.Current()
	if ok && !step.IsAbortable() {
		return errdefs.InvalidArgument(`Can not abort the cleaning of node %s: its current clean step "%s" is not abortable.`, n.UUID, step.Step)
	}
	n.LastError = fmt.Sprintf(`By request, the clean operation was aborted for node %s on step "%s".`, n.UUID, step.Step)
	wipeClean(info)
	info.Agent.WipeTokenAndURL()
	return nil
}
