package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/agent/wire"
	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// outcome is what a deploy step asks for next.
type outcome int

const (
	next outcome = iota // run the next step
	wait                // wait for the agent: move to wait call-back
)

// deployStep is one out-of-band deploy step, in Ironic's order and with
// its priority (contract §4.2). write_image starts the agent's in-band step
// of the same name; heartbeats then follow it (checkWriteImage).
type deployStep struct {
	name     string
	priority int
	run      func(e *Engine, ctx context.Context, t *target) (outcome, error)
}

var deploySteps = []deployStep{
	{"deploy", 100, (*Engine).stepBootRamdisk},
	{"write_image", 80, (*Engine).stepWriteImage},
	{"prepare_instance_boot", 60, (*Engine).stepPrepareInstanceBoot},
	{"tear_down_agent", 40, (*Engine).stepTearDownAgent},
	{"switch_to_tenant_network", 30, (*Engine).stepSwitchToTenantNetwork},
	{"boot_instance", 20, (*Engine).stepBootInstance},
}

const writeImageIndex = 1

// writeStartedKey marks, in driver_internal_info, that the agent accepted
// the write_image step; until then a heartbeat (re)starts it.
const writeStartedKey = "write_image_started"

func (s deployStep) wire() map[string]any {
	return map[string]any{"step": s.name, "priority": s.priority, "argsinfo": nil, "interface": "deploy"}
}

// stepList is driver_internal_info.deploy_steps.
func stepList() []any {
	out := make([]any, len(deploySteps))
	for i, s := range deploySteps {
		out[i] = s.wire()
	}
	return out
}

// stepIndex is the index of the node's current deploy step, -1 if none.
func stepIndex(n *store.Node) int {
	name, _ := n.DeployStep["step"].(string)
	for i, s := range deploySteps {
		if s.name == name {
			return i
		}
	}
	return -1
}

// runSteps runs the deploy steps from index from, persisting each as the
// current step before it runs, until one waits for the agent or all are
// done (-> active). A failure fails the deploy; cancellation (shutdown)
// leaves the node as it is, for the next run to resume.
func (e *Engine) runSteps(ctx context.Context, uuid string, from int) {
	for i := from; i < len(deploySteps); i++ {
		step := deploySteps[i]
		n, err := e.update(ctx, uuid, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
			n.DeployStep = step.wire()
			n.SetInternal("deploy_step_index", i)
			n.SetInternal(writeStartedKey, nil)
			return nil
		})
		if err != nil {
			e.logJobError(uuid, "deploy", err)
			return
		}
		t, err := e.targetFor(ctx, n)
		var out outcome
		if err == nil {
			e.log.Info("running deploy step", "node", uuid, "step", "deploy."+step.name, "priority", step.priority)
			out, err = step.run(e, ctx, t)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, agentclient.ErrAgentBusy) {
				e.log.Info("agent is busy; retrying on the next heartbeat", "node", uuid, "step", step.name)
				e.toWait(ctx, uuid)
				return
			}
			e.failDeploy(ctx, uuid, statemachine.Deploying,
				fmt.Sprintf("Deploy step deploy.%s failed on node %s. %v", step.name, uuid, err))
			return
		}
		if out == wait {
			e.toWait(ctx, uuid)
			return
		}
	}
	e.finishDeploy(ctx, uuid)
}

// continueSteps resumes a deploy a previous run left in "deploying".
func (e *Engine) continueSteps(ctx context.Context, uuid string) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil || n.ProvisionState != statemachine.Deploying {
		return
	}
	switch i := stepIndex(n); {
	case i <= 0:
		e.runSteps(ctx, uuid, 0)
	case i == writeImageIndex:
		// The agent owns this step; its next heartbeat tells where it is.
		e.toWait(ctx, uuid)
	default:
		e.runSteps(ctx, uuid, i)
	}
}

// toWait moves a deploying node to wait call-back.
func (e *Engine) toWait(ctx context.Context, uuid string) {
	_, err := e.update(ctx, uuid, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		_, err := n.Advance(statemachine.EvWait, e.now())
		return err
	})
	e.logJobError(uuid, "deploy", err)
}

// stepBootRamdisk is Ironic's "deploy" step: power off, network boot,
// ramdisk prepared (for drivers that boot it themselves), power on.
func (e *Engine) stepBootRamdisk(ctx context.Context, t *target) (outcome, error) {
	if err := e.setPower(ctx, t, power.Off); err != nil {
		return 0, err
	}
	// Map the image (and checksum) URLs now: a NodeView driver may need
	// to know them before the node powers on (the qemu driver sets up its
	// port forwards at boot), and an unreachable image fails early.
	if _, err := imageinfo.Build(t.node, func(u string) (string, error) { return e.nodeURL(t, u) }); err != nil {
		return 0, err
	}
	pn := t.powerNode()
	if err := t.drv.SetBootDevice(ctx, pn, power.BootPXE, false); err != nil {
		return 0, fmt.Errorf("set boot device pxe: %w", err)
	}
	if rb, ok := t.drv.(power.RamdiskBooter); ok {
		rd, err := e.ramdisk(t)
		if err != nil {
			return 0, err
		}
		if err := rb.PrepareRamdisk(ctx, pn, rd); err != nil {
			return 0, fmt.Errorf("prepare ramdisk: %w", err)
		}
	}
	if err := e.setPower(ctx, t, power.On); err != nil {
		return 0, err
	}
	return wait, nil
}

// ramdisk describes the deploy ramdisk boot of a node: kernel and
// initramfs from driver_info or the conductor's defaults, and the kernel
// parameters the agent reads.
func (e *Engine) ramdisk(t *target) (power.Ramdisk, error) {
	files, err := e.ramdiskFiles(t.node)
	if err != nil {
		return power.Ramdisk{}, err
	}
	apiURL, err := e.nodeURL(t, e.cfg.APIURL)
	if err != nil {
		return power.Ramdisk{}, err
	}
	params := []string{"ipa-api-url=" + apiURL}
	if macs := t.powerNode().MACs; len(macs) > 0 {
		params = append(params, "BOOTIF="+macs[0])
	}
	params = append(params, "ipa-global-request-id=req-"+uuid.NewString())
	return power.Ramdisk{Kernel: files[0], Initramfs: files[1], Params: params}, nil
}

// nodeURL translates a URL the conductor reaches into the one the node
// reaches, for drivers that implement power.NodeView.
func (e *Engine) nodeURL(t *target, hostURL string) (string, error) {
	nv, ok := t.drv.(power.NodeView)
	if !ok {
		return hostURL, nil
	}
	u, err := nv.NodeURL(t.powerNode(), hostURL)
	if err != nil {
		return "", fmt.Errorf("map %s for the node: %w", hostURL, err)
	}
	return u, nil
}

// stepWriteImage starts the agent's write_image deploy step.
func (e *Engine) stepWriteImage(ctx context.Context, t *target) (outcome, error) {
	n := t.node
	info, err := imageinfo.Build(n, func(u string) (string, error) { return e.nodeURL(t, u) })
	if err != nil {
		return 0, err
	}
	var configdrive *string
	if cd, ok := n.InstanceInfo["configdrive"].(string); ok && cd != "" {
		configdrive = &cd
		info.Configdrive = &cd
	}
	version := wire.HardwareManagerVersion{}
	if hv, ok := n.DriverInternalInfo["hardware_manager_version"].(map[string]any); ok {
		for k, v := range hv {
			if s, ok := v.(string); ok {
				version[k] = s
			}
		}
	}
	args, err := toMap(wire.WriteImageArgs{ImageInfo: info, Configdrive: configdrive})
	if err != nil {
		return 0, err
	}
	params := wire.ExecuteStepParams{
		Step:          wire.Step{Interface: "deploy", Step: "write_image", Args: args},
		Node:          ironicjson.AgentNode(n, e.cfg.Conductor),
		Ports:         agentPorts(t.ports),
		DeployVersion: version,
	}
	e.log.Info("starting image write", "node", n.UUID, "image", info.ID, "urls", info.URLs)
	res, err := e.agent.Execute(ctx, n.InternalString("agent_url"), n.InternalString("agent_secret_token"),
		"deploy.execute_deploy_step", params, false)
	if err != nil {
		return 0, err
	}
	if res.CommandStatus == wire.StatusFailed {
		return 0, errors.New(res.CommandError.Text())
	}
	if _, err := e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		n.SetInternal(writeStartedKey, true)
		return nil
	}); err != nil {
		return 0, err
	}
	e.setWriting(n.UUID, true)
	return wait, nil
}

// stepPrepareInstanceBoot reads the partition UUIDs of the written image.
// Seam: partition images and UEFI NVRAM registration would call
// image.install_bootloader here; the skeleton deploys whole-disk images
// only (checked at validation) and trusts the image's own boot loader.
func (e *Engine) stepPrepareInstanceBoot(ctx context.Context, t *target) (outcome, error) {
	n := t.node
	res, err := e.agent.Execute(ctx, n.InternalString("agent_url"), n.InternalString("agent_secret_token"),
		"standby.get_partition_uuids", nil, true)
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
	_, err = e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("root_uuid_or_disk_id", nilIfEmpty(pu.RootUUID))
		n.SetInternal("efi_system_partition_uuid", nilIfEmpty(pu.EFISystemPartUUID))
		return nil
	})
	return next, err
}

// stepTearDownAgent asks the agent to power the node off, polls the power
// state PowerOffRetries times PowerOffInterval apart, and forces the power
// off if the node does not comply.
func (e *Engine) stepTearDownAgent(ctx context.Context, t *target) (outcome, error) {
	n := t.node
	e.setWriting(n.UUID, false)
	_, err := e.agent.Execute(ctx, n.InternalString("agent_url"), n.InternalString("agent_secret_token"),
		"standby.power_off", nil, false)
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		e.log.Warn("soft power off through the agent failed; powering off out of band", "node", n.UUID, "error", err)
	} else {
		pn := t.powerNode()
		for range e.cfg.PowerOffRetries {
			if err := sleep(ctx, e.cfg.PowerOffInterval); err != nil {
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

// stepSwitchToTenantNetwork has nothing to do: networks are not managed.
func (e *Engine) stepSwitchToTenantNetwork(ctx context.Context, t *target) (outcome, error) {
	return next, nil
}

// stepBootInstance boots the deployed disk.
func (e *Engine) stepBootInstance(ctx context.Context, t *target) (outcome, error) {
	if err := t.drv.SetBootDevice(ctx, t.powerNode(), power.BootDisk, true); err != nil {
		return 0, fmt.Errorf("set boot device disk: %w", err)
	}
	if err := e.setPower(ctx, t, power.On); err != nil {
		return 0, err
	}
	return next, nil
}

// finishDeploy moves a node whose steps are all done to active.
func (e *Engine) finishDeploy(ctx context.Context, uuid string) {
	e.setWriting(uuid, false)
	_, err := e.update(ctx, uuid, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		n.DeployStep = map[string]any{}
		wipeDeploy(n)
		_, err := n.Advance(statemachine.EvDone, e.now())
		return err
	})
	e.logJobError(uuid, "deploy", err)
}

// wipeDeploy removes the temporary deploy fields (Ironic's
// wipe_deploy_internal_info), the agent's URL and token included.
func wipeDeploy(n *store.Node) {
	for _, k := range []string{"agent_secret_token", "agent_secret_token_pregenerated",
		"agent_url", "agent_verify_ca", "deploy_steps", "agent_cached_deploy_steps",
		"agent_cached_deploy_steps_refreshed", "deploy_step_index", "deployment_reboot",
		"deployment_polling", "steps_validated", writeStartedKey} {
		n.SetInternal(k, nil)
	}
}

// failDeploy moves a node in state from to deploy failed with msg as its
// last error, then powers it off (Ironic's power_off_after_deploy_failure).
func (e *Engine) failDeploy(ctx context.Context, uuid string, from statemachine.State, msg string) {
	e.setWriting(uuid, false)
	n, err := e.update(ctx, uuid, from, func(_ store.Tx, n *store.Node) error {
		n.LastError = msg
		n.DeployStep = map[string]any{}
		wipeDeploy(n)
		_, err := n.Advance(statemachine.EvFail, e.now())
		return err
	})
	if err != nil {
		e.logJobError(uuid, "fail deploy", err)
		return
	}
	t, err := e.targetFor(ctx, n)
	if err == nil {
		err = e.setPower(ctx, t, power.Off)
	}
	if err != nil && ctx.Err() == nil {
		e.log.Error("power off after deploy failure failed; the node may still run the ramdisk",
			"node", uuid, "error", err)
	}
}

// callbackTimeout fails a deploy that waited too long for the agent.
func (e *Engine) callbackTimeout(ctx context.Context, uuid string) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil || !e.timedOut(n) {
		return
	}
	e.failDeploy(ctx, uuid, statemachine.DeployWait,
		fmt.Sprintf("Timeout reached while waiting for callback for node %s", uuid))
}

// processHeartbeat advances a deploy in wait call-back on the agent's word
// (contract §4.2 steps 4-6): cache the agent's deploy steps, then start
// write_image on a freshly booted agent, or look at its last command.
func (e *Engine) processHeartbeat(ctx context.Context, uuid string) {
	n, err := e.update(ctx, uuid, statemachine.DeployWait, func(_ store.Tx, n *store.Node) error {
		_, err := n.Advance(statemachine.EvResume, e.now())
		return err
	})
	if err != nil {
		if !isStateChanged(err) {
			e.logJobError(uuid, "heartbeat", err)
		}
		return
	}
	msg, err := e.checkAgent(ctx, n)
	switch {
	case err == nil:
	case ctx.Err() != nil:
	case errors.Is(err, agentclient.ErrAgentBusy):
		e.log.Info("agent is busy; retrying on the next heartbeat", "node", uuid)
		e.toWait(ctx, uuid)
	case msg == "":
		e.failDeploy(ctx, uuid, statemachine.Deploying, err.Error())
	default:
		e.failDeploy(ctx, uuid, statemachine.Deploying, fmt.Sprintf("%s: %v", msg, err))
	}
}

// checkAgent is the body of heartbeat processing; the node is in
// deploying. On error it returns Ironic's message prefix for last_error.
func (e *Engine) checkAgent(ctx context.Context, n *store.Node) (string, error) {
	uuid := n.UUID
	if _, ok := n.DriverInternalInfo["agent_cached_deploy_steps"]; !ok {
		var err error
		if n, err = e.refreshSteps(ctx, n); err != nil {
			return "Failed to load in-band deploy steps", err
		}
	}
	const msg = "Failed to process the next deploy step"
	t, err := e.targetFor(ctx, n)
	if err != nil {
		return msg, err
	}
	if i := stepIndex(n); i > writeImageIndex {
		e.runSteps(ctx, uuid, i)
		return "", nil
	}
	list, err := e.agent.Commands(ctx, n.InternalString("agent_url"), n.InternalString("agent_secret_token"))
	if err != nil {
		return msg, err
	}
	cmd := list.Last()
	ours := cmd != nil && cmd.CommandName == "execute_deploy_step"
	started, _ := n.DriverInternalInfo[writeStartedKey].(bool)
	if freshlyBooted(list) || (!started && !ours) {
		// Start write_image: first time, after "agent is busy", or again
		// if the agent lost it by rebooting.
		e.runSteps(ctx, uuid, writeImageIndex)
		return "", nil
	}
	if !ours {
		e.log.Debug("agent runs another command; waiting", "node", uuid, "command", cmd.CommandName)
		e.toWait(ctx, uuid)
		return "", nil
	}
	var sr wire.DeployStepResult
	_ = cmd.DecodeResult(&sr)
	switch {
	case cmd.CommandStatus == wire.StatusRunning:
		e.setWriting(uuid, true)
		if err := e.saveProgress(ctx, uuid, statemachine.Deploying, cmd); err != nil {
			return msg, err
		}
		e.toWait(ctx, uuid)
	case cmd.CommandStatus == wire.StatusSucceeded && (sr.DeployStep.Step != "write_image" || sr.DeployStep.Interface != "deploy"):
		e.toWait(ctx, uuid)
	case cmd.CommandStatus == wire.StatusSucceeded:
		e.setWriting(uuid, false)
		if err := e.saveProgress(ctx, uuid, statemachine.Deploying, cmd); err != nil {
			return msg, err
		}
		e.log.Info("agent finished writing the image", "node", uuid)
		e.runSteps(ctx, uuid, writeImageIndex+1)
	case cmd.CommandStatus == wire.StatusFailed:
		return "", lastError(fmt.Sprintf("Deploy step deploy.write_image failed on node %s. %s", uuid, cmd.CommandError.Text()))
	case cmd.CommandStatus.IsVersionMismatch():
		e.log.Info("agent reports a hardware manager version mismatch; refreshing steps", "node", uuid)
		if _, err := e.refreshSteps(ctx, t.node); err != nil {
			return "Failed to load in-band deploy steps", err
		}
		e.runSteps(ctx, uuid, writeImageIndex)
	default:
		return "", lastError(fmt.Sprintf("Agent returned unknown status for deploy step deploy.write_image on node %s : %s.", uuid, cmd.CommandStatus))
	}
	return "", nil
}

// refreshSteps asks the agent for its deploy steps and caches them, with
// its hardware manager version, in driver_internal_info.
func (e *Engine) refreshSteps(ctx context.Context, n *store.Node) (*store.Node, error) {
	ports, err := e.st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		return nil, fmt.Errorf("node %s: list ports: %w", n.UUID, err)
	}
	params := wire.GetStepsParams{Node: ironicjson.AgentNode(n, e.cfg.Conductor), Ports: agentPorts(ports)}
	res, err := e.agent.Execute(ctx, n.InternalString("agent_url"), n.InternalString("agent_secret_token"),
		"deploy.get_deploy_steps", params, true)
	if err != nil {
		return nil, err
	}
	if res.CommandStatus != wire.StatusSucceeded {
		return nil, fmt.Errorf("get_deploy_steps %s: %s", res.CommandStatus, res.CommandError.Text())
	}
	var ds wire.DeploySteps
	if err := res.DecodeResult(&ds); err != nil {
		return nil, fmt.Errorf("decode get_deploy_steps result: %w", err)
	}
	byIface := map[string][]wire.Step{}
	for _, steps := range ds.DeploySteps {
		for _, s := range steps {
			byIface[s.Interface] = append(byIface[s.Interface], s)
		}
	}
	cached, err := toMap(byIface)
	if err != nil {
		return nil, err
	}
	version, err := toMap(ds.HardwareManagerVersion)
	if err != nil {
		return nil, err
	}
	return e.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("agent_cached_deploy_steps", cached)
		n.SetInternal("hardware_manager_version", version)
		n.SetInternal("agent_cached_deploy_steps_refreshed", agentTimestamp(e.now()))
		n.Touch(e.now())
		return nil
	})
}

// saveProgress stores the progress carried by a write command's result in
// driver_internal_info.deploy_progress, for clients to show.
func (e *Engine) saveProgress(ctx context.Context, uuid string, expect statemachine.State, cmd *wire.CommandResult) error {
	p := progressOf(cmd)
	if p == nil {
		return nil
	}
	pm, err := toMap(p)
	if err != nil {
		return err
	}
	_, err = e.update(ctx, uuid, expect, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("deploy_progress", pm)
		return nil
	})
	return err
}

// progressOf finds the progress in a command result: command_result.progress
// while running, or deploy_result.progress once done.
func progressOf(cmd *wire.CommandResult) *wire.Progress {
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
	if err != nil || n.ProvisionState != statemachine.DeployWait || stepIndex(n) != writeImageIndex {
		e.setWriting(uuid, false)
		return
	}
	list, err := e.agent.Commands(ctx, n.InternalString("agent_url"), n.InternalString("agent_secret_token"))
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
	if err := e.saveProgress(ctx, uuid, statemachine.DeployWait, cmd); err != nil {
		e.logJobError(uuid, "poll", err)
	}
}

// freshlyBooted reports whether the agent has run nothing but
// get_deploy_steps.
func freshlyBooted(l *wire.CommandList) bool {
	for _, c := range l.Commands {
		if c.CommandName != "get_deploy_steps" {
			return false
		}
	}
	return true
}

func agentPorts(ports []*store.Port) []map[string]any {
	out := make([]map[string]any, len(ports))
	for i, p := range ports {
		out[i] = ironicjson.AgentPort(p)
	}
	return out
}

// toMap converts a value to its JSON object form.
func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return m, nil
}

func nilIfEmpty(s string) any {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return s
}

// lastError is a failure whose text is the node's last_error verbatim
// (Ironic's wording).
type lastError string

// Error implements error.
func (e lastError) Error() string { return string(e) }

func isStateChanged(err error) bool { return errors.Is(err, errStateChanged) }
