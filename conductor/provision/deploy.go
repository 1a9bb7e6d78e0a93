package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/rivetmetal/rivet/internal/pause"
	"sort"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// outcome is what a deploy step asks for next.
type outcome int

const (
	next outcome = iota // run the next step
	wait                // wait for the agent: move to the wait state
)

// oobStep is one out-of-band deploy step, with Ironic's priority (contract
// §4.2). write_image starts the agent's in-band step of the same name and
// waits; heartbeats then follow it.
type oobStep struct {
	name     string
	priority int
}

var oobDeploySteps = []oobStep{
	{"deploy", 100},
	{"write_image", 80},
	{"prepare_instance_boot", 60},
	{"tear_down_agent", 40},
	{"switch_to_tenant_network", 30},
	{"boot_instance", 20},
}

// runOOB runs out-of-band step s.
func (e *Engine) runOOB(ctx context.Context, s *oobStep, t *target) (outcome, error) {
	switch s.name {
	case "deploy":
		return e.stepBootRamdisk(ctx, t)
	case "write_image":
		return e.stepWriteImage(ctx, t)
	case "prepare_instance_boot":
		return e.stepPrepareInstanceBoot(ctx, t)
	case "tear_down_agent":
		return e.stepTearDownAgent(ctx, t)
	case "switch_to_tenant_network":
		return next, nil // networks are not managed
	case "boot_instance":
		return e.stepBootInstance(ctx, t)
	}
	return 0, fmt.Errorf("node %s: unknown deploy step %s", t.node.UUID, s.name)
}

// deployIfacePriority orders deploy steps of equal priority (Ironic's
// DEPLOYING_INTERFACE_PRIORITY).
var deployIfacePriority = map[string]int{"power": 8, "management": 7, "deploy": 6, "bios": 5,
	"raid": 4, "boot": 3, "storage": 2, "network": 1}

// keyInBand marks, in a step of driver_internal_info.deploy_steps, a step
// the agent runs (Ironic marks in-band clean steps the same way).
const keyInBand = "requires_ramdisk"

// keyStepStarted marks, in driver_internal_info, that the agent accepted
// the current deploy step; until then a heartbeat (re)starts it.
const keyStepStarted = "deploy_step_started"

func oobStepNamed(step map[string]any) *oobStep {
	if stepIface(step) != "deploy" || step[keyInBand] == true {
		return nil
	}
	for i := range oobDeploySteps {
		if oobDeploySteps[i].name == stepName(step) {
			return &oobDeploySteps[i]
		}
	}
	return nil
}

// agentDriven reports whether the agent runs step (write_image starts the
// agent's step of the same name).
func agentDriven(step map[string]any) bool {
	return step[keyInBand] == true || (stepIface(step) == "deploy" && stepName(step) == "write_image")
}

// deploySteps is a node's deploy plan: the out-of-band steps, plus the
// agent's in-band steps with a priority above 0 and below the ramdisk boot
// (known once the agent has reported them), ordered by priority as Ironic
// orders them. An out-of-band step shadows an in-band one of the same name.
func (e *Engine) deploySteps(n *store.Node) []map[string]any {
	var steps []map[string]any
	own := map[string]bool{}
	for _, s := range oobDeploySteps {
		steps = append(steps, map[string]any{"step": s.name, "priority": s.priority, "argsinfo": nil, "interface": "deploy"})
		own["deploy."+s.name] = true
	}
	for _, s := range cachedAgentSteps(n.DriverInternalInfo["agent_cached_deploy_steps"]) {
		p := stepPriority(s)
		if p <= 0 || own[stepIface(s)+"."+stepName(s)] {
			continue
		}
		if p >= oobDeploySteps[0].priority {
			e.log.Warn("in-band deploy step ignored: its priority puts it before the ramdisk boots",
				"node", n.UUID, "step", stepIface(s)+"."+stepName(s), "priority", p)
			continue
		}
		c := map[string]any{"step": stepName(s), "priority": p, "interface": stepIface(s), keyInBand: true}
		if args, ok := s["args"]; ok {
			c["args"] = args
		}
		if s["reboot_requested"] == true {
			c["reboot_requested"] = true
		}
		steps = append(steps, c)
	}
	sortSteps(steps, deployIfacePriority)
	return steps
}

// stepIndex is the index of the node's current deploy step, -1 if none.
func stepIndex(n *store.Node) int {
	i, ok := asInt(n.DriverInternalInfo["deploy_step_index"])
	if !ok {
		return -1
	}
	return i
}

// startDeploy runs a deploy from its first step (a job, after the
// available -> deploying transition).
func (e *Engine) startDeploy(ctx context.Context, uuid string) { e.runDeploySteps(ctx, uuid, 0) }

// runDeploySteps runs the deploy steps from index from, persisting each as
// the current step before it runs, until one waits for the agent or all
// are done (-> active). A failure fails the deploy; "agent is busy" waits
// for the next heartbeat; cancellation (shutdown) leaves the node as it
// is, for the next run to resume.
func (e *Engine) runDeploySteps(ctx context.Context, uuid string, from int) {
	for i := from; ; i++ {
		var step map[string]any
		n, err := e.update(ctx, uuid, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
			steps := stepList(n.DriverInternalInfo["deploy_steps"])
			if i >= len(steps) {
				return nil
			}
			step = steps[i]
			n.DeployStep = copyStep(step)
			delete(n.DeployStep, keyInBand)
			n.SetInternal("deploy_step_index", i)
			n.SetInternal(keyStepStarted, nil)
			return nil
		})
		if err != nil {
			e.logJobError(uuid, "deploy", err)
			return
		}
		if step == nil {
			e.finishDeploy(ctx, uuid)
			return
		}
		t, err := e.targetFor(ctx, n)
		var out outcome
		if err == nil {
			e.log.Info("running deploy step", "node", uuid, "step", stepIface(step)+"."+stepName(step), "priority", stepPriority(step))
			if oob := oobStepNamed(step); oob != nil {
				out, err = e.runOOB(ctx, oob, t)
			} else {
				out, err = e.startInBandDeployStep(ctx, t, step)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, agentclient.ErrAgentBusy) {
				e.log.Info("agent is busy; retrying on the next heartbeat", "node", uuid, "step", stepName(step))
				e.toWait(ctx, uuid, statemachine.Deploying)
				return
			}
			msg := err.Error()
			var le lastError
			if !errors.As(err, &le) {
				msg = fmt.Sprintf("Deploy step %s.%s failed on node %s. %v", stepIface(step), stepName(step), uuid, err)
			}
			e.failDeploy(ctx, uuid, statemachine.Deploying, msg)
			return
		}
		if out == wait {
			e.toWait(ctx, uuid, statemachine.Deploying)
			return
		}
	}
}

func toAnys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func copyStep(s map[string]any) map[string]any {
	c := make(map[string]any, len(s))
	for k, v := range s {
		c[k] = v
	}
	return c
}

// continueDeploy resumes a deploy a previous run (or a dead conductor)
// left in "deploying".
func (e *Engine) continueDeploy(ctx context.Context, uuid string) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil || n.ProvisionState != statemachine.Deploying {
		return
	}
	steps := stepList(n.DriverInternalInfo["deploy_steps"])
	i := stepIndex(n)
	switch {
	case i <= 0 || i >= len(steps):
		// Not past the ramdisk boot: boot it again (the power off wipes
		// the token, so a half-booted agent cannot interfere).
		e.runDeploySteps(ctx, uuid, 0)
	case agentDriven(steps[i]):
		// The agent owns this step; its next heartbeat tells where it is.
		e.toWait(ctx, uuid, statemachine.Deploying)
	default:
		e.runDeploySteps(ctx, uuid, i)
	}
}

// toWait moves a node from its working state (deploying, cleaning) to the
// matching wait state; a heartbeat that arrived meanwhile is processed at
// once.
func (e *Engine) toWait(ctx context.Context, uuid string, work statemachine.State) {
	n, err := e.update(ctx, uuid, work, func(_ store.Tx, n *store.Node) error {
		_, err := n.Advance(statemachine.EvWait, e.now())
		return err
	})
	if err != nil {
		e.logJobError(uuid, "wait", err)
		return
	}
	if heartbeatPending(n) {
		e.submit(uuid, jobHeartbeat)
	}
}

// bootRamdisk powers a node off and boots the deploy ramdisk: network
// boot, the ramdisk prepared for drivers that boot it themselves, power
// on. extra are additional kernel parameters.
func (e *Engine) bootRamdisk(ctx context.Context, t *target, extra ...string) error {
	if err := e.setPower(ctx, t, power.Off); err != nil {
		return err
	}
	var params any
	if len(extra) > 0 {
		params = append([]any(nil), toAnys(extra)...)
	}
	n, err := e.update(ctx, t.node.UUID, "", func(_ store.Tx, n *store.Node) error {
		n.SetInternal(keyKernelParams, params)
		if n.ProvisionState == statemachine.Deploying {
			markTime(n, markRamdiskOn, e.now())
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.node = n
	pn := t.powerNode()
	if err := t.drv.SetBootDevice(ctx, pn, power.BootPXE, false); err != nil {
		return fmt.Errorf("node %s: set boot device pxe: %w", pn.UUID, err)
	}
	if rb, ok := t.drv.(power.RamdiskBooter); ok {
		rd, err := e.ramdisk(t, extra...)
		if err != nil {
			return err
		}
		if err := rb.PrepareRamdisk(ctx, pn, rd); err != nil {
			return fmt.Errorf("node %s: prepare ramdisk: %w", pn.UUID, err)
		}
	}
	return e.setPower(ctx, t, power.On)
}

// stepBootRamdisk is Ironic's "deploy" step: boot the deploy ramdisk and
// wait for its agent. With fast-track it reuses the running agent: its
// steps are refreshed and the deploy carries on at once.
func (e *Engine) stepBootRamdisk(ctx context.Context, t *target) (outcome, error) {
	// Cache the image first when the conductor serves it; then map the
	// image (and checksum) URLs now: a NodeView driver may need to know
	// them before the node powers on (the qemu driver sets up its port
	// forwards at boot), and an unreachable image fails early.
	if err := e.resolveImage(ctx, t); err != nil {
		return 0, err
	}
	if _, err := imageinfo.Build(t.node, e.nodeURLFunc(t), t.bootMode); err != nil {
		return 0, err
	}
	if e.fastTrackable(t.node) {
		e.log.Info("fast-track: reusing the running agent", "node", t.node.UUID)
		if _, err := e.refreshDeploySteps(ctx, t.node); err != nil {
			return 0, err
		}
		return next, nil
	}
	if err := e.bootRamdisk(ctx, t); err != nil {
		return 0, err
	}
	return wait, nil
}

// nodeURLFunc maps conductor-reachable URLs to the node's view.
func (e *Engine) nodeURLFunc(t *target) func(string) (string, error) {
	return func(u string) (string, error) { return e.nodeURL(t, u) }
}

// stepWriteImage starts the agent's write_image deploy step (contract
// §2.1): image_info as Ironic builds it, the configdrive in both places.
func (e *Engine) stepWriteImage(ctx context.Context, t *target) (outcome, error) {
	n := t.node
	info, err := imageinfo.Build(n, e.nodeURLFunc(t), t.bootMode)
	if err != nil {
		return 0, err
	}
	var cd *string
	if s, ok := n.InstanceInfo["configdrive"].(string); ok && s != "" {
		cd = &s
		info.Configdrive = &s
	}
	step, err := wire.WriteImageArgs{ImageInfo: info, Configdrive: cd}.Step()
	if err != nil {
		return 0, err
	}
	e.log.Info("starting image write", "node", n.UUID, "image", info.ID, "urls", info.URLs,
		"image_type", info.ImageType, "configdrive", cd != nil)
	if err := e.executeDeployStep(ctx, t, step); err != nil {
		return 0, err
	}
	if _, err := e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		markTime(n, markWrite, e.now())
		return nil
	}); err != nil {
		return 0, err
	}
	e.setWriting(n.UUID, true)
	return wait, nil
}

// startInBandDeployStep starts a step the agent runs (from its
// get_deploy_steps, e.g. inject_files with a priority).
func (e *Engine) startInBandDeployStep(ctx context.Context, t *target, step map[string]any) (outcome, error) {
	s := wire.PlannedStep{Interface: stepIface(step), Step: stepName(step)}
	if args, ok := step["args"]; ok {
		b, err := json.Marshal(args)
		if err != nil {
			return 0, fmt.Errorf("step %s.%s: encode args: %w", s.Interface, s.Step, err)
		}
		s.Args = b
	}
	if err := e.executeDeployStep(ctx, t, s); err != nil {
		return 0, err
	}
	return wait, nil
}

// executeDeployStep sends deploy.execute_deploy_step (fire and forget) and
// records that the agent accepted it.
func (e *Engine) executeDeployStep(ctx context.Context, t *target, step wire.PlannedStep) error {
	n := t.node
	ep, err := e.endpoint(n)
	if err != nil {
		return err
	}
	version := wire.HardwareManagerVersion{}
	if m, ok := n.DriverInternalInfo["hardware_manager_version"].(map[string]any); ok {
		for k, v := range m {
			version[k] = fmt.Sprint(v)
		}
	}
	params := wire.DeployStepKind.ExecuteStepParams(step, e.agentNode(n), agentPorts(t.ports), version)
	res, err := e.agent.Execute(ctx, ep, "deploy.execute_deploy_step", params, false)
	if err != nil {
		return err
	}
	if res.CommandStatus == wire.StatusFailed {
		return errors.New(res.CommandError.Text())
	}
	_, err = e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		n.SetInternal(keyStepStarted, true)
		return nil
	})
	return err
}

// stepPrepareInstanceBoot reads the partition UUIDs of the written image
// and, for partition images and UEFI nodes, has the agent install the boot
// loader (image.install_bootloader, polled), as Ironic's
// prepare_instance_boot does.
func (e *Engine) stepPrepareInstanceBoot(ctx context.Context, t *target) (outcome, error) {
	n := t.node
	start := e.now()
	ep, err := e.endpoint(n)
	if err != nil {
		return 0, err
	}
	res, err := e.agent.Execute(ctx, ep, "standby.get_partition_uuids", nil, true)
	if err != nil {
		return 0, err
	}
	if res.CommandStatus != wire.StatusSucceeded {
		return 0, fmt.Errorf("get_partition_uuids %s: %s", res.CommandStatus, res.CommandError.Text())
	}
	var pu wire.PartitionUUIDs
	if err := res.DecodeResult(&pu); err != nil {
		return 0, fmt.Errorf("decode get_partition_uuids result: %w", err)
	}
	wholeDisk, _ := n.DriverInternalInfo["is_whole_disk_image"].(bool)
	if n, err = e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("root_uuid_or_disk_id", nilIfEmpty(pu.RootUUID))
		n.SetInternal("efi_system_partition_uuid", nilIfEmpty(pu.EFISystemPartUUID))
		return nil
	}); err != nil {
		return 0, err
	}
	t.node = n
	uefi := t.bootMode == string(power.BootModeUEFI)
	if !wholeDisk && pu.RootUUID == "" {
		return 0, lastError(fmt.Sprintf("Failed to find the root UUID of the partition image deployed on node %s; cannot install a boot loader.", n.UUID))
	}
	if !wholeDisk || uefi {
		if err := e.installBootloader(ctx, t, ep, pu, wholeDisk); err != nil {
			return 0, err
		}
	}
	_, err = e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		setTiming(n, PhaseBootloader, e.now().Sub(start).Seconds())
		return nil
	})
	return next, err
}

// installBootloader runs image.install_bootloader and polls it to its end
// (CommandWaitInterval × CommandWaitAttempts). An agent that refuses the
// parameters is asked again without target_boot_mode, as Ironic does. For
// a whole-disk image an agent without the command is tolerated: the
// image's own boot loader is then trusted (the UEFI fallback path).
func (e *Engine) installBootloader(ctx context.Context, t *target, ep agentclient.Endpoint, pu wire.PartitionUUIDs, wholeDisk bool) error {
	n := t.node
	params := wire.InstallBootloaderParams{
		RootUUID:          wire.OptionalString(pu.RootUUID),
		EFISystemPartUUID: wire.OptionalString(pu.EFISystemPartUUID),
		PRePBootPartUUID:  wire.OptionalString(pu.PRePBootPartitionUUID),
		TargetBootMode:    wire.OptionalString(t.bootMode),
	}
	e.log.Info("installing the boot loader", "node", n.UUID, "boot_mode", t.bootMode, "whole_disk", wholeDisk)
	res, err := e.agent.Execute(ctx, ep, "image.install_bootloader", params, false)
	var apiErr *agentclient.APIError
	if errors.As(err, &apiErr) && !errors.Is(err, agentclient.ErrAgentBusy) {
		if wholeDisk && (apiErr.Status == 404 || strings.Contains(apiErr.Fault.FaultString, "Unknown command")) {
			e.log.Warn("the agent cannot install boot loaders; trusting the whole-disk image's own", "node", n.UUID, "error", err)
			return nil
		}
		e.log.Info("install_bootloader refused; retrying without target_boot_mode", "node", n.UUID, "error", err)
		params.TargetBootMode = nil
		res, err = e.agent.Execute(ctx, ep, "image.install_bootloader", params, false)
	}
	if err != nil {
		return err
	}
	if res.CommandStatus == wire.StatusRunning {
		res, err = e.agent.Wait(ctx, ep, "install_bootloader", e.cfg.CommandWaitInterval, e.cfg.CommandWaitAttempts)
		if err != nil {
			return err
		}
	}
	if res.CommandStatus != wire.StatusSucceeded {
		return lastError(fmt.Sprintf("Failed to install a bootloader when deploying node %s. Error: %s", n.UUID, res.CommandError.Text()))
	}
	return nil
}

// stepTearDownAgent asks the agent to power the node off, polls the power
// state PowerOffRetries times PowerOffInterval apart, and forces the power
// off if the node does not comply.
func (e *Engine) stepTearDownAgent(ctx context.Context, t *target) (outcome, error) {
	n := t.node
	e.setWriting(n.UUID, false)
	if _, err := e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		markTime(n, markPowerPhases, e.now())
		return nil
	}); err != nil {
		return 0, err
	}
	if e.cfg.LogsCollect == LogsAlways {
		e.collectLogs(ctx, n, "deploy")
	}
	ep, err := e.endpoint(n)
	if err == nil {
		_, err = e.agent.Execute(ctx, ep, "standby.power_off", nil, false)
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		e.log.Warn("soft power off through the agent failed; powering off out of band", "node", n.UUID, "error", err)
	} else {
		pn := t.powerNode()
		// Poll PowerOffRetries × PowerOffInterval in all, starting half
		// a second apart: a ramdisk usually powers off within a second.
		deadline := time.Now().Add(time.Duration(e.cfg.PowerOffRetries) * e.cfg.PowerOffInterval)
		for delay := min(500*time.Millisecond, e.cfg.PowerOffInterval); !time.Now().Add(delay).After(deadline); delay = min(2*delay, e.cfg.PowerOffInterval) {
			if err := pause.For(ctx, delay); err != nil {
				return 0, err
			}
			st, err := t.drv.PowerState(ctx, pn)
			if err != nil {
				e.log.Warn("reading power state failed", "node", n.UUID, "error", err)
				continue
			}
			if st == power.Off {
				_, err := e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
					n.PowerState = string(power.Off)
					wipeAgent(n)
					return nil
				})
				e.removeCAFile(n.UUID)
				return next, err
			}
		}
		e.log.Warn("node did not power off in time; powering off out of band", "node", n.UUID)
	}
	if err := e.setPower(ctx, t, power.Off); err != nil {
		return 0, err
	}
	return next, nil
}

// stepBootInstance boots the deployed disk, persistently.
func (e *Engine) stepBootInstance(ctx context.Context, t *target) (outcome, error) {
	if err := t.drv.SetBootDevice(ctx, t.powerNode(), power.BootDisk, true); err != nil {
		return 0, fmt.Errorf("node %s: set boot device disk: %w", t.node.UUID, err)
	}
	if err := e.setPower(ctx, t, power.On); err != nil {
		return 0, err
	}
	_, err := e.update(ctx, t.node.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		timePhase(n, PhasePower, markPowerPhases, e.now())
		return nil
	})
	return next, err
}

// finishDeploy moves a node whose steps are all done to active.
func (e *Engine) finishDeploy(ctx context.Context, uuid string) {
	e.setWriting(uuid, false)
	n, err := e.update(ctx, uuid, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		timePhase(n, PhaseTotal, markStarted, e.now())
		n.SetInternal(keyTimestamps, nil)
		n.DeployStep = map[string]any{}
		wipeDeploy(n)
		_, err := n.Advance(statemachine.EvDone, e.now())
		return err
	})
	if err != nil {
		e.logJobError(uuid, "deploy", err)
		return
	}
	e.log.Info("deploy finished", "node", uuid, "timings", n.DriverInternalInfo[keyTimings])
}

// wipeDeploy removes the temporary deploy fields and forgets the agent
// (Ironic's wipe_deploy_internal_info without fast-track).
func wipeDeploy(n *store.Node) {
	wipeDeploySteps(n)
	wipeTokenAndURL(n)
}

// wipeDeploySteps removes the temporary deploy fields but keeps the agent.
func wipeDeploySteps(n *store.Node) {
	for _, k := range []string{"deploy_steps", "agent_cached_deploy_steps",
		"agent_cached_deploy_steps_refreshed", "deploy_step_index", "deployment_reboot",
		"deployment_polling", "steps_validated", keyStepStarted, keyKernelParams} {
		n.SetInternal(k, nil)
	}
}

// failDeploy moves a node in state from to deploy failed with msg as its
// last error, after collecting the agent's logs, then powers it off
// (Ironic's deploying_error_handler and power_off_after_deploy_failure).
func (e *Engine) failDeploy(ctx context.Context, uuid string, from statemachine.State, msg string) {
	e.setWriting(uuid, false)
	if n, err := e.st.GetNode(ctx, uuid); err == nil && n.InternalString("agent_url") != "" {
		e.collectLogs(ctx, n, "deploy-failed")
	}
	n, err := e.update(ctx, uuid, from, func(_ store.Tx, n *store.Node) error {
		n.LastError = msg
		n.DeployStep = map[string]any{}
		n.SetInternal(keyTimestamps, nil)
		wipeDeploy(n)
		_, err := n.Advance(statemachine.EvFail, e.now())
		return err
	})
	if err != nil {
		e.logJobError(uuid, "fail deploy", err)
		return
	}
	e.removeCAFile(uuid)
	t, err := e.targetFor(ctx, n)
	if err == nil {
		err = e.setPower(ctx, t, power.Off)
	}
	if err != nil && ctx.Err() == nil {
		e.log.Error("power off after deploy failure failed; the node may still run the ramdisk",
			"node", uuid, "error", err)
	}
}

// heartbeatDeploy advances a deploy in wait call-back on the agent's word
// (contract §4.2 steps 4-6).
func (e *Engine) heartbeatDeploy(ctx context.Context, n *store.Node) {
	uuid := n.UUID
	if e.heartbeatWhileRunning(ctx, n) {
		return
	}
	n, err := e.resumeFromWait(ctx, uuid, statemachine.DeployWait)
	if err != nil {
		return
	}
	msg, err := e.checkDeployAgent(ctx, n)
	switch {
	case err == nil:
	case ctx.Err() != nil:
	case errors.Is(err, agentclient.ErrAgentBusy):
		e.log.Info("agent is busy; retrying on the next heartbeat", "node", uuid)
		e.toWait(ctx, uuid, statemachine.Deploying)
	case msg == "":
		e.failDeploy(ctx, uuid, statemachine.Deploying, err.Error())
	default:
		e.failDeploy(ctx, uuid, statemachine.Deploying, fmt.Sprintf("%s: %v", msg, err))
	}
}

// heartbeatWhileRunning handles the most common heartbeat, that of a node
// whose agent is still running the current deploy step, with a single
// update and no state change: the heartbeat is recorded (pending marker
// cleared, callback timeout reset) and a write's progress stored if it
// moved. It reports false when the heartbeat needs full processing: the
// step ended, failed or never started, or anything is unusual, in which
// case nothing was changed.
func (e *Engine) heartbeatWhileRunning(ctx context.Context, n *store.Node) bool {
	uuid := n.UUID
	if n.ProvisionState != statemachine.DeployWait {
		return false
	}
	if _, ok := n.DriverInternalInfo["agent_cached_deploy_steps"]; !ok {
		return false
	}
	started, _ := n.DriverInternalInfo[keyStepStarted].(bool)
	steps := stepList(n.DriverInternalInfo["deploy_steps"])
	i := stepIndex(n)
	if !started || i < 0 || i >= len(steps) || !agentDriven(steps[i]) {
		return false
	}
	ep, err := e.endpoint(n)
	if err != nil {
		return false
	}
	list, err := e.agent.Commands(ctx, ep)
	if err != nil {
		return false
	}
	status, cmd := agentStep(list, "execute_deploy_step", "deploy_step", steps[i], started)
	if status != stepRunning {
		return false
	}
	var progress map[string]any
	writing := stepName(steps[i]) == "write_image" && cmd != nil && cmd.CommandName == "execute_deploy_step"
	if writing {
		if p := progressOf(cmd); p != nil {
			if progress, err = toMap(p); err != nil {
				return false
			}
		}
	}
	at, beat := e.takeBeat(uuid)
	_, err = e.update(ctx, uuid, statemachine.DeployWait, func(_ store.Tx, n *store.Node) error {
		recordBeat(n, at, beat)
		n.SetInternal(keyHeartbeatPending, nil)
		n.Touch(e.now())
		if progress != nil && progressMoved(n.DriverInternalInfo["deploy_progress"], progress) {
			n.SetInternal("deploy_progress", progress)
		}
		return nil
	})
	if err != nil {
		if !isStateChanged(err) {
			e.logJobError(uuid, "heartbeat", err)
		} else if beat {
			e.requeueBeat(uuid, at)
			return true
		}
		return false
	}
	if writing {
		e.setWriting(uuid, true)
		e.progressRefreshed(uuid)
	}
	return true
}

// progressMoved reports whether a new write progress differs from the
// stored one in anything but its timestamp, so that an unchanged progress
// is not written again.
func progressMoved(stored any, next map[string]any) bool {
	old, ok := stored.(map[string]any)
	if !ok {
		return true
	}
	for _, k := range []string{"phase", "bytes_read", "bytes_written", "bytes_skipped", "total_bytes"} {
		if fmt.Sprint(old[k]) != fmt.Sprint(next[k]) {
			return true
		}
	}
	return false
}

// resumeFromWait moves a node from a wait state to its working state on
// a heartbeat, clearing the pending marker; it fails quietly when the node
// is elsewhere (the marker then stays for the job that owns the node).
func (e *Engine) resumeFromWait(ctx context.Context, uuid string, waitState statemachine.State) (*store.Node, error) {
	at, beat := e.takeBeat(uuid)
	n, err := e.update(ctx, uuid, waitState, func(_ store.Tx, n *store.Node) error {
		recordBeat(n, at, beat)
		n.SetInternal(keyHeartbeatPending, nil)
		_, err := n.Advance(statemachine.EvResume, e.now())
		return err
	})
	switch {
	case err == nil:
	case !isStateChanged(err):
		e.logJobError(uuid, "heartbeat", err)
	case beat:
		e.requeueBeat(uuid, at)
	}
	return n, err
}

// checkDeployAgent is the body of deploy heartbeat processing; the node
// is in deploying. On error it returns Ironic's message prefix for
// last_error.
func (e *Engine) checkDeployAgent(ctx context.Context, n *store.Node) (string, error) {
	uuid := n.UUID
	if _, ok := n.DriverInternalInfo["agent_cached_deploy_steps"]; !ok {
		var err error
		if n, err = e.refreshDeploySteps(ctx, n); err != nil {
			return "Failed to load in-band deploy steps", err
		}
	}
	const msg = "Failed to process the next deploy step"
	steps := stepList(n.DriverInternalInfo["deploy_steps"])
	i := stepIndex(n)
	if i < 0 || i >= len(steps) {
		return msg, fmt.Errorf("node %s: no current deploy step", uuid)
	}
	step := steps[i]
	if !agentDriven(step) {
		// The ramdisk came up (the deploy step), or an out-of-band step
		// waited for a busy agent: carry on.
		if stepName(step) == "deploy" {
			i++
		}
		e.runDeploySteps(ctx, uuid, i)
		return "", nil
	}
	ep, err := e.endpoint(n)
	if err != nil {
		return msg, err
	}
	list, err := e.agent.Commands(ctx, ep)
	if err != nil {
		return msg, err
	}
	started, _ := n.DriverInternalInfo[keyStepStarted].(bool)
	status, cmd := agentStep(list, "execute_deploy_step", "deploy_step", step, started)
	writing := stepName(step) == "write_image"
	switch status {
	case stepNotStarted:
		// First time, after "agent is busy", or again if the agent lost
		// it by rebooting.
		e.runDeploySteps(ctx, uuid, i)
	case stepRunning:
		if writing && cmd != nil && cmd.CommandName == "execute_deploy_step" {
			e.setWriting(uuid, true)
			if err := e.saveProgress(ctx, uuid, statemachine.Deploying, cmd, false); err != nil {
				return msg, err
			}
		}
		e.toWait(ctx, uuid, statemachine.Deploying)
	case stepDone:
		if writing {
			e.setWriting(uuid, false)
			if err := e.saveProgress(ctx, uuid, statemachine.Deploying, cmd, true); err != nil {
				return msg, err
			}
			e.log.Info("agent finished writing the image", "node", uuid)
		}
		if step["reboot_requested"] == true {
			return msg, e.rebootForNextDeployStep(ctx, n, i+1)
		}
		e.runDeploySteps(ctx, uuid, i+1)
	case stepFailed:
		return "", lastError(fmt.Sprintf("Deploy step %s.%s failed on node %s. %s", stepIface(step), stepName(step), uuid, cmd.CommandError.Text()))
	case stepMismatch:
		e.log.Info("agent reports a hardware manager version mismatch; refreshing steps", "node", uuid)
		if _, err := e.refreshDeploySteps(ctx, n); err != nil {
			return "Failed to load in-band deploy steps", err
		}
		e.runDeploySteps(ctx, uuid, i)
	default:
		return "", lastError(fmt.Sprintf("Agent returned unknown status for deploy step %s.%s on node %s : %s.",
			stepIface(step), stepName(step), uuid, cmd.CommandStatus))
	}
	return "", nil
}

// rebootForNextDeployStep reboots into the ramdisk after an in-band step
// that asked for it, with step next as the current one.
func (e *Engine) rebootForNextDeployStep(ctx context.Context, n *store.Node, next int) error {
	n, err := e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		steps := stepList(n.DriverInternalInfo["deploy_steps"])
		if next < len(steps) {
			n.DeployStep = copyStep(steps[next])
			delete(n.DeployStep, keyInBand)
		}
		n.SetInternal("deploy_step_index", next)
		n.SetInternal(keyStepStarted, nil)
		n.SetInternal("deployment_reboot", true)
		return nil
	})
	if err != nil {
		return err
	}
	return e.rebootToWait(ctx, n, statemachine.Deploying)
}

// refreshDeploySteps asks the agent for its deploy steps, caches them with
// its hardware manager version, and recomputes the deploy plan around the
// current step.
func (e *Engine) refreshDeploySteps(ctx context.Context, n *store.Node) (*store.Node, error) {
	cached, version, err := e.fetchSteps(ctx, n, "deploy.get_deploy_steps", "deploy_steps")
	if err != nil {
		return nil, err
	}
	return e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("agent_cached_deploy_steps", cached)
		n.SetInternal("hardware_manager_version", version)
		n.SetInternal("agent_cached_deploy_steps_refreshed", agentTimestamp(e.now()))
		cur := stepList(n.DriverInternalInfo["deploy_steps"])
		i := stepIndex(n)
		steps := e.deploySteps(n)
		if i >= 0 && i < len(cur) {
			for j, s := range steps {
				if stepName(s) == stepName(cur[i]) && stepIface(s) == stepIface(cur[i]) {
					n.SetInternal("deploy_step_index", j)
					break
				}
			}
		}
		n.SetInternal("deploy_steps", anyList(steps))
		n.Touch(e.now())
		return nil
	})
}

// fetchSteps runs get_deploy_steps / get_clean_steps and returns the
// agent's steps by interface (each marked requires_ramdisk, as Ironic
// caches them) and its hardware manager version.
func (e *Engine) fetchSteps(ctx context.Context, n *store.Node, command, key string) (map[string]any, map[string]any, error) {
	ports, err := e.st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: list ports: %w", n.UUID, err)
	}
	ep, err := e.endpoint(n)
	if err != nil {
		return nil, nil, err
	}
	params := wire.GetStepsParams{Node: e.agentNode(n), Ports: agentPorts(ports)}
	res, err := e.agent.Execute(ctx, ep, command, params, true)
	if err != nil {
		return nil, nil, err
	}
	if res.CommandStatus != wire.StatusSucceeded {
		return nil, nil, fmt.Errorf("%s %s: %s", agentclient.ShortName(command), res.CommandStatus, res.CommandError.Text())
	}
	var out map[string]any
	if err := res.DecodeResult(&out); err != nil {
		return nil, nil, fmt.Errorf("decode %s result: %w", agentclient.ShortName(command), err)
	}
	byManager, _ := out[key].(map[string]any)
	byIface := map[string]any{}
	managers := make([]string, 0, len(byManager))
	for m := range byManager {
		managers = append(managers, m)
	}
	sort.Strings(managers)
	for _, m := range managers {
		for _, s := range stepList(byManager[m]) {
			c := copyStep(s)
			c[keyInBand] = true
			list, _ := byIface[stepIface(c)].([]any)
			byIface[stepIface(c)] = append(list, c)
		}
	}
	version, _ := out["hardware_manager_version"].(map[string]any)
	if version == nil {
		version = map[string]any{}
	}
	return byIface, version, nil
}

// saveProgress stores the progress carried by a write command's result in
// driver_internal_info.deploy_progress, for clients to show; final also
// records the write timings.
func (e *Engine) saveProgress(ctx context.Context, uuid string, expect statemachine.State, cmd *wire.CommandResult, final bool) error {
	p := progressOf(cmd)
	if p == nil && !final {
		return nil
	}
	var pm map[string]any
	if p != nil {
		var err error
		if pm, err = toMap(p); err != nil {
			return err
		}
	}
	_, err := e.update(ctx, uuid, expect, func(_ store.Tx, n *store.Node) error {
		if pm != nil && (final || progressMoved(n.DriverInternalInfo["deploy_progress"], pm)) {
			n.SetInternal("deploy_progress", pm)
		}
		if final {
			recordWriteTimings(n, p, e.now())
		}
		return nil
	})
	return err
}

// progressOf finds the progress in a command result: command_result.progress
// while running, or deploy_result.progress once done.
func progressOf(cmd *wire.CommandResult) *wire.Progress {
	if cmd == nil {
		return nil
	}
	var pr wire.ProgressResult
	if err := cmd.DecodeResult(&pr); err == nil && pr.Progress != nil {
		return pr.Progress
	}
	var sr struct {
		DeployResult wire.ProgressResult `json:"deploy_result"`
	}
	if err := cmd.DecodeResult(&sr); err == nil && sr.DeployResult.Progress != nil {
		return sr.DeployResult.Progress
	}
	return nil
}

// pollProgress refreshes the progress of a running write between
// heartbeats; when the write has finished it queues the processing a
// heartbeat would do.
func (e *Engine) pollProgress(ctx context.Context, uuid string) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil || n.ProvisionState != statemachine.DeployWait || n.DeployStep["step"] != "write_image" {
		e.setWriting(uuid, false)
		return
	}
	ep, err := e.endpoint(n)
	if err != nil {
		e.setWriting(uuid, false)
		return
	}
	list, err := e.agent.Commands(ctx, ep)
	if err != nil {
		e.log.Debug("progress poll failed", "node", uuid, "error", err)
		return
	}
	cmd := list.Last()
	if cmd == nil || cmd.CommandName != "execute_deploy_step" {
		return
	}
	if cmd.CommandStatus.Finished() {
		e.setWriting(uuid, false)
		e.submit(uuid, jobHeartbeat)
		return
	}
	if err := e.saveProgress(ctx, uuid, statemachine.DeployWait, cmd, false); err != nil {
		e.logJobError(uuid, "poll", err)
	}
	e.progressRefreshed(uuid)
}

func nilIfEmpty(s string) any {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return s
}

// rebootToWait boots the node's deploy ramdisk again (a step asked for a
// reboot) and moves it to the wait state of its operation (working is
// deploying or cleaning).
func (e *Engine) rebootToWait(ctx context.Context, n *store.Node, working statemachine.State) error {
	t, err := e.targetFor(ctx, n)
	if err == nil {
		err = e.bootRamdisk(ctx, t)
	}
	if err != nil {
		return err
	}
	e.toWait(ctx, n.UUID, working)
	return nil
}
