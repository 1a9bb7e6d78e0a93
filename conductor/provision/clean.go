package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Cleaning (contract §4.5) runs as Ironic's: the node boots the deploy
// ramdisk (clean wait); on the agent's first heartbeat its clean steps are
// fetched (clean.get_clean_steps) and the plan is made, automated (every
// step whose priority, after the conductor's overrides, is above 0,
// highest first) or manual (the operator's steps, matched against the
// agent's); each step is started with clean.execute_clean_step and
// followed on later heartbeats; at the end the node is powered off and
// goes to available (automated) or manageable (manual).
//
// driver_internal_info holds the plan (clean_steps), the current step
// (clean_step_index), whether the agent accepted it (clean_step_started),
// the operator's steps (user_clean_steps), and the erase settings the
// agent reads.

const (
	keyCleanStarted   = "clean_step_started"
	keyCleanFinishing = "cleaning_finishing"
	keyUserSteps      = "user_clean_steps"
)

// cleanIfacePriority orders clean steps of equal priority (Ironic's
// CLEANING_INTERFACE_PRIORITY).
var cleanIfacePriority = map[string]int{"power": 5, "management": 4, "deploy": 3, "bios": 2, "raid": 1}

// eraseSettings are the erase options the agent reads from
// driver_internal_info (Ironic's defaults).
var eraseSettings = map[string]any{
	"agent_erase_devices_iterations":        1,
	"agent_erase_devices_zeroize":           true,
	"agent_continue_if_secure_erase_failed": false,
	"agent_continue_if_ata_erase_failed":    false,
	"agent_enable_nvme_secure_erase":        true,
	"agent_enable_ata_secure_erase":         true,
	"disk_erasure_concurrency":              4,
	"agent_erase_skip_read_only":            false,
}

// wipeClean removes the temporary cleaning fields (Ironic's
// wipe_cleaning_internal_info, the token and URL aside).
func wipeClean(n *store.Node) {
	for _, k := range []string{"clean_steps", "clean_step_index", keyCleanStarted, keyCleanFinishing,
		keyUserSteps, "agent_cached_clean_steps", "agent_cached_clean_steps_refreshed",
		"cleaning_reboot", "cleaning_polling", "steps_validated"} {
		n.SetInternal(k, nil)
	}
}

// wipeTokenAndURL forgets the agent (Ironic's wipe_token_and_url).
func wipeTokenAndURL(n *store.Node) {
	for _, k := range []string{"agent_secret_token", "agent_secret_token_pregenerated", "agent_url",
		"agent_verify_ca", keyVerifyCAPEM, keyHeartbeatPending} {
		n.SetInternal(k, nil)
	}
}

// manualClean reports whether a cleaning node was asked for manual
// cleaning (it heads for manageable).
func manualClean(n *store.Node) bool {
	return n.TargetProvisionState == statemachine.Manageable
}

// clean starts or resumes the cleaning of a node in "cleaning" (a job).
func (e *Engine) clean(ctx context.Context, uuid string) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil || n.ProvisionState != statemachine.Cleaning {
		e.logJobError(uuid, "clean", err)
		return
	}
	switch {
	case !manualClean(n) && !e.cfg.AutomatedClean:
		e.log.Info("automated cleaning is disabled; skipping it", "node", uuid)
		e.finishClean(ctx, uuid, false)
	case n.DriverInternalInfo[keyCleanFinishing] == true:
		e.finishClean(ctx, uuid, true)
	case n.DriverInternalInfo["clean_step_index"] != nil:
		// A step was running when the previous run stopped: the agent's
		// next heartbeat tells where it stands.
		e.toWait(ctx, uuid, statemachine.Cleaning)
	default:
		e.prepareCleaning(ctx, n)
	}
}

// prepareCleaning boots the ramdisk for cleaning (or, with fast-track,
// uses the running agent at once).
func (e *Engine) prepareCleaning(ctx context.Context, n *store.Node) {
	uuid := n.UUID
	n, err := e.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		for k, v := range eraseSettings {
			n.SetInternal(k, v)
		}
		n.SetInternal("deploy_boot_mode", e.bootMode(n))
		return nil
	})
	if err != nil {
		e.logJobError(uuid, "clean", err)
		return
	}
	if e.fastTrackable(n) {
		e.log.Info("fast-track: cleaning with the running agent", "node", uuid)
		e.runCleanAgent(ctx, n)
		return
	}
	t, err := e.targetFor(ctx, n)
	if err == nil {
		err = e.bootRamdisk(ctx, t)
	}
	if err != nil {
		if ctx.Err() == nil {
			e.failClean(ctx, uuid, statemachine.Cleaning, fmt.Sprintf("Failed to prepare node %s for cleaning: %v", uuid, err))
		}
		return
	}
	e.toWait(ctx, uuid, statemachine.Cleaning)
}

// heartbeatClean advances cleaning in clean wait on the agent's word.
func (e *Engine) heartbeatClean(ctx context.Context, uuid string) {
	n, err := e.resumeFromWait(ctx, uuid, statemachine.CleanWait)
	if err != nil {
		return
	}
	e.runCleanAgent(ctx, n)
}

// runCleanAgent processes the agent's state for a node in cleaning and
// handles the outcome: wait, fail, or (done inside) the next step.
func (e *Engine) runCleanAgent(ctx context.Context, n *store.Node) {
	uuid := n.UUID
	err := e.checkCleanAgent(ctx, n)
	var le lastError
	switch {
	case err == nil:
	case ctx.Err() != nil:
	case errors.Is(err, agentclient.ErrAgentBusy):
		e.log.Info("agent is busy; retrying on the next heartbeat", "node", uuid)
		e.toWait(ctx, uuid, statemachine.Cleaning)
	case errors.As(err, &le):
		e.failClean(ctx, uuid, statemachine.Cleaning, string(le))
	default:
		e.failClean(ctx, uuid, statemachine.Cleaning, fmt.Sprintf("Failed to process the next clean step for node %s: %v", uuid, err))
	}
}

// checkCleanAgent is the body of clean heartbeat processing; the node is
// in cleaning.
func (e *Engine) checkCleanAgent(ctx context.Context, n *store.Node) error {
	uuid := n.UUID
	if _, ok := n.DriverInternalInfo["agent_cached_clean_steps"]; !ok {
		var err error
		if n, err = e.refreshCleanSteps(ctx, n); err != nil {
			return err
		}
	}
	if _, ok := n.DriverInternalInfo["clean_steps"].([]any); !ok {
		var err error
		if n, err = e.planCleaning(ctx, n); err != nil {
			return err
		}
	}
	steps := stepList(n.DriverInternalInfo["clean_steps"])
	i, _ := asInt(n.DriverInternalInfo["clean_step_index"])
	if i >= len(steps) {
		e.finishClean(ctx, uuid, true)
		return nil
	}
	step := steps[i]
	ep, err := e.endpoint(n)
	if err != nil {
		return err
	}
	list, err := e.agent.Commands(ctx, ep)
	if err != nil {
		return err
	}
	started, _ := n.DriverInternalInfo[keyCleanStarted].(bool)
	status, cmd := agentStep(list, "execute_clean_step", "clean_step", step, started)
	switch status {
	case stepNotStarted:
		return e.executeCleanStep(ctx, n, i)
	case stepRunning:
		e.toWait(ctx, uuid, statemachine.Cleaning)
	case stepDone:
		e.log.Info("clean step done", "node", uuid, "step", stepIface(step)+"."+stepName(step))
		if step["reboot_requested"] == true {
			return e.rebootForNextCleanStep(ctx, n, i+1)
		}
		if i+1 >= len(steps) {
			e.finishClean(ctx, uuid, true)
			return nil
		}
		return e.executeCleanStep(ctx, n, i+1)
	case stepFailed:
		return lastError(fmt.Sprintf("Agent returned error for clean step %s on node %s : %s.",
			pyRepr(step), uuid, cmd.CommandError.Text()))
	case stepMismatch:
		e.log.Info("agent reports a hardware manager version mismatch; refreshing the clean steps", "node", uuid)
		if n, err = e.refreshCleanSteps(ctx, n); err != nil {
			return err
		}
		if !manualClean(n) {
			// Automated cleaning starts over with the fresh steps.
			if n, err = e.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
				n.SetInternal("clean_steps", nil)
				n.SetInternal("clean_step_index", nil)
				return nil
			}); err != nil {
				return err
			}
			if n, err = e.planCleaning(ctx, n); err != nil {
				return err
			}
			if len(stepList(n.DriverInternalInfo["clean_steps"])) == 0 {
				e.finishClean(ctx, uuid, true)
				return nil
			}
			return e.executeCleanStep(ctx, n, 0)
		}
		return e.executeCleanStep(ctx, n, i)
	default:
		return lastError(fmt.Sprintf("Agent returned unknown status for clean step %s on node %s : %s.",
			pyRepr(step), uuid, cmd.CommandStatus))
	}
	return nil
}

// refreshCleanSteps asks the agent for its clean steps and caches them
// with its hardware manager version.
func (e *Engine) refreshCleanSteps(ctx context.Context, n *store.Node) (*store.Node, error) {
	cached, version, err := e.fetchSteps(ctx, n, "clean.get_clean_steps", "clean_steps")
	if err != nil {
		return nil, fmt.Errorf("get clean steps: %w", err)
	}
	return e.update(ctx, n.UUID, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("agent_cached_clean_steps", cached)
		n.SetInternal("hardware_manager_version", version)
		n.SetInternal("agent_cached_clean_steps_refreshed", agentTimestamp(e.now()))
		n.Touch(e.now())
		return nil
	})
}

// planCleaning decides the clean steps and stores them with the first as
// the current one: automated cleaning takes every agent step whose
// priority (after CleanStepPriorities) is above 0, ordered as Ironic
// orders them; manual cleaning takes the operator's steps in their order,
// each matched against the agent's (which gives its priority and
// abortable flag) and refused when the agent has no such step.
func (e *Engine) planCleaning(ctx context.Context, n *store.Node) (*store.Node, error) {
	agentSteps := cachedAgentSteps(n.DriverInternalInfo["agent_cached_clean_steps"])
	var plan []map[string]any
	if manualClean(n) {
		for _, u := range stepList(n.DriverInternalInfo[keyUserSteps]) {
			var found map[string]any
			for _, s := range agentSteps {
				if stepName(s) == stepName(u) && stepIface(s) == stepIface(u) {
					found = s
					break
				}
			}
			if found == nil {
				return nil, lastError(fmt.Sprintf("node %s does not support this clean step: %s", n.UUID, pyRepr(u)))
			}
			s := map[string]any{"interface": stepIface(u), "step": stepName(u),
				"abortable": found["abortable"] == true, "priority": stepPriority(found)}
			if args, ok := u["args"]; ok {
				s["args"] = args
			}
			if u["reboot_requested"] == true {
				s["reboot_requested"] = true
			}
			plan = append(plan, s)
		}
	} else {
		for _, s := range agentSteps {
			p := stepPriority(s)
			if o, ok := e.cfg.CleanStepPriorities[stepIface(s)+"."+stepName(s)]; ok {
				p = o
			}
			if p <= 0 {
				continue
			}
			c := copyStep(s)
			c["priority"] = p
			plan = append(plan, c)
		}
		sortSteps(plan, cleanIfacePriority)
	}
	names := make([]string, len(plan))
	for i, s := range plan {
		names[i] = stepIface(s) + "." + stepName(s)
	}
	e.log.Info("clean steps planned", "node", n.UUID, "manual", manualClean(n), "steps", names)
	return e.update(ctx, n.UUID, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("clean_steps", anyList(plan))
		n.SetInternal("clean_step_index", 0)
		n.SetInternal(keyCleanStarted, nil)
		return nil
	})
}

// executeCleanStep makes step i current and starts it on the agent
// (clean.execute_clean_step, fire and forget), then waits.
func (e *Engine) executeCleanStep(ctx context.Context, n *store.Node, i int) error {
	uuid := n.UUID
	n, err := e.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("clean_step_index", i)
		n.SetInternal(keyCleanStarted, nil)
		return nil
	})
	if err != nil {
		return err
	}
	step := n.CleanStep()
	ports, err := e.st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		return fmt.Errorf("node %s: list ports: %w", uuid, err)
	}
	ep, err := e.endpoint(n)
	if err != nil {
		return err
	}
	params := map[string]any{
		"step":          step,
		"node":          e.agentNode(n),
		"ports":         agentPorts(ports),
		"clean_version": n.DriverInternalInfo["hardware_manager_version"],
	}
	e.log.Info("running clean step", "node", uuid, "step", stepIface(step)+"."+stepName(step), "priority", stepPriority(step))
	res, err := e.agent.Execute(ctx, ep, "clean.execute_clean_step", params, false)
	if err != nil {
		return err
	}
	if res.CommandStatus == wire.StatusFailed {
		return lastError(fmt.Sprintf("Agent returned error for clean step %s on node %s : %s.", pyRepr(step), uuid, res.CommandError.Text()))
	}
	if _, err := e.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		n.SetInternal(keyCleanStarted, true)
		return nil
	}); err != nil {
		return err
	}
	e.toWait(ctx, uuid, statemachine.Cleaning)
	return nil
}

// rebootForNextCleanStep reboots into the ramdisk after a step that asked
// for it, with step next as the current one.
func (e *Engine) rebootForNextCleanStep(ctx context.Context, n *store.Node, next int) error {
	n, err := e.update(ctx, n.UUID, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("clean_step_index", next)
		n.SetInternal(keyCleanStarted, nil)
		n.SetInternal("cleaning_reboot", true)
		return nil
	})
	if err != nil {
		return err
	}
	return e.rebootToWait(ctx, n, statemachine.Cleaning)
}

// finishClean ends cleaning (Ironic's tear_down_cleaning): the agent's
// logs when asked for always, power off unless fast-track keeps the agent,
// the cleaning fields wiped, then available (automated) or manageable
// (manual). teardown is false when no ramdisk was booted.
func (e *Engine) finishClean(ctx context.Context, uuid string, teardown bool) {
	n, err := e.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		n.SetInternal(keyCleanFinishing, true)
		return nil
	})
	if err != nil {
		e.logJobError(uuid, "clean", err)
		return
	}
	fast := e.fastTrackable(n)
	if teardown {
		if e.cfg.LogsCollect == LogsAlways && n.InternalString("agent_url") != "" {
			e.collectLogs(ctx, n, "cleaning")
		}
		if !fast {
			t, err := e.targetFor(ctx, n)
			if err == nil {
				err = e.setPower(ctx, t, power.Off)
			}
			if err != nil {
				if ctx.Err() == nil {
					e.failClean(ctx, uuid, statemachine.Cleaning, fmt.Sprintf("Failed to tear down cleaning on node %s, reason: %v", uuid, err))
				}
				return
			}
		}
	}
	_, err = e.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		ev := statemachine.EvDone
		if manualClean(n) {
			ev = statemachine.EvManage
		}
		wipeClean(n)
		if !fast {
			wipeTokenAndURL(n)
		}
		_, err := n.Advance(ev, e.now())
		return err
	})
	e.logJobError(uuid, "clean", err)
}

// failClean moves a cleaning node to clean failed with msg as its last
// error (Ironic's cleaning_error_handler): the agent's logs are collected
// first, a failure during a clean step also puts the node in maintenance,
// and the node is powered off.
func (e *Engine) failClean(ctx context.Context, uuid string, from statemachine.State, msg string) {
	if n, err := e.st.GetNode(ctx, uuid); err == nil && n.InternalString("agent_url") != "" {
		e.collectLogs(ctx, n, "cleaning-failed")
	}
	n, err := e.update(ctx, uuid, from, func(_ store.Tx, n *store.Node) error {
		if len(n.CleanStep()) > 0 {
			n.Maintenance = true
			if n.MaintenanceReason == "" {
				n.MaintenanceReason = msg
			}
		}
		n.LastError = msg
		wipeClean(n)
		wipeTokenAndURL(n)
		_, err := n.Advance(statemachine.EvFail, e.now())
		return err
	})
	if err != nil {
		e.logJobError(uuid, "fail clean", err)
		return
	}
	e.powerOffAfterFailure(ctx, n)
}

// powerOffAfterFailure powers a failed node off so that its ramdisk stops.
func (e *Engine) powerOffAfterFailure(ctx context.Context, n *store.Node) {
	e.removeCAFile(n.UUID)
	t, err := e.targetFor(ctx, n)
	if err == nil {
		err = e.setPower(ctx, t, power.Off)
	}
	if err != nil && ctx.Err() == nil {
		e.log.Error("power off after a failure failed; the node may still run the ramdisk", "node", n.UUID, "error", err)
	}
}
