package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/plan"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/internal/pause"
	"github.com/rivetmetal/rivet/wire"
)

// Deploying (contract §4.2) runs Ironic's direct deploy as steps: the
// conductor's own (boot the ramdisk, write the image through the agent,
// prepare the instance's boot, tear the agent down, boot the instance)
// with the agent's deploy steps of a priority between 0 and 100 slotted
// in, in priority order.

// bootRamdiskPriority is the priority of the step that boots the deploy
// ramdisk: an agent step cannot run before it.
const bootRamdiskPriority = 100

// deployKind is the deploy step kind: its own steps and how a deploy
// starts, ends and fails.
type deployKind struct {
	k *kind
	r *runner
	// own are the conductor's own deploy steps, in plan order.
	own []*ownStep
}

func newDeployKind(r *runner) *deployKind {
	d := &deployKind{r: r}
	d.own = []*ownStep{
		{Own: plan.Own{Interface: "deploy", Step: "deploy", Priority: bootRamdiskPriority}, run: d.bootRamdisk},
		{Own: plan.Own{Interface: "deploy", Step: wire.WriteImageStep, Priority: 80}, delegates: true, run: d.writeImage,
			started: func(info *internalinfo.Info, now time.Time) { markTime(info, markWrite, now) }},
		{Own: plan.Own{Interface: "deploy", Step: "prepare_instance_boot", Priority: 60}, run: d.prepareInstanceBoot},
		{Own: plan.Own{Interface: "deploy", Step: "tear_down_agent", Priority: 40}, run: d.tearDownAgent},
		{Own: plan.Own{Interface: "deploy", Step: "switch_to_tenant_network", Priority: 30},
			run: func(context.Context, *target) (outcome, error) { return next, nil }}, // networks are not managed
		{Own: plan.Own{Interface: "deploy", Step: "boot_instance", Priority: 20}, run: d.bootInstance},
	}
	byName := map[string]*ownStep{}
	for _, o := range d.own {
		byName[o.Interface+"."+o.Step] = o
	}
	describe := func(s wire.PlannedStep) string { return s.Name() }
	d.k = &kind{
		wire:            wire.DeployStepKind,
		working:         statemachine.Deploying,
		waiting:         statemachine.DeployWait,
		own:             byName,
		plan:            d.planSteps,
		replanOnRefresh: true,
		progress: func(s wire.PlannedStep) bool {
			return s.Interface == "deploy" && s.Step == wire.WriteImageStep
		},
		finish:   d.finish,
		fail:     d.fail,
		describe: describe,
		stepFailed: func(n *store.Node, s wire.PlannedStep, detail string) string {
			return fmt.Sprintf("Deploy step %s failed on node %s. %s", describe(s), n.UUID, detail)
		},
		stepError: func(n *store.Node, s wire.PlannedStep, err error) string {
			return fmt.Sprintf("Deploy step %s failed on node %s. %v", describe(s), n.UUID, err)
		},
		processFailed: func(_ *store.Node, err error) string {
			return fmt.Sprintf("Failed to process the next deploy step: %v", err)
		},
		loadFailed: func(_ *store.Node, err error) string {
			return fmt.Sprintf("Failed to load in-band deploy steps: %v", err)
		},
		timeoutMessage: func(n *store.Node, _ *internalinfo.Info) string {
			return fmt.Sprintf("Timeout reached while waiting for callback for node %s", n.UUID)
		},
	}
	return d
}

// planSteps is the deploy plan: the conductor's own steps (without
// write_image for the custom-agent deploy interface, whose deploy steps
// are the user's), the agent's cached ones with a priority above 0 that
// can run once it is up, and the user's deploy steps over them.
func (d *deployKind) planSteps(n *store.Node, info *internalinfo.Info) ([]wire.PlannedStep, error) {
	custom := deployInterface(n) == "custom-agent"
	var mine []plan.Own
	for _, o := range d.own {
		if custom && o.Step == wire.WriteImageStep {
			continue
		}
		mine = append(mine, o.Own)
	}
	steps, tooEarly := plan.WithAgentSteps(mine, info.Deploy.Cached, bootRamdiskPriority, plan.DeployInterfaceRank)
	for _, s := range tooEarly {
		d.r.log.Warn("in-band deploy step ignored: its priority puts it before the ramdisk boots",
			"node", n.UUID, "step", s.Name(), "priority", s.PriorityValue())
	}
	if len(info.UserDeploySteps) == 0 {
		return steps, nil
	}
	steps, err := plan.WithUser(steps, info.UserDeploySteps, info.Deploy.Cached, bootRamdiskPriority, plan.DeployInterfaceRank)
	var unsupported *plan.UnsupportedStepError
	if errors.As(err, &unsupported) {
		return nil, lastError(fmt.Sprintf("Deploy step %s is not supported by node %s: the agent does not have it.",
			plan.Repr(unsupported.Step), n.UUID))
	}
	if err != nil {
		return nil, lastError(fmt.Sprintf("Invalid deploy steps for node %s: %v", n.UUID, err))
	}
	return steps, nil
}

// deployInterface is the node's deploy interface, "autodetect" resolved
// as Ironic's: "ramdisk" for a boot ISO, else "direct".
func deployInterface(n *store.Node) string {
	impl := hardwaretype.Of(n.Driver, n.Interfaces)["deploy_interface"]
	if impl == "autodetect" {
		if iso, _ := n.InstanceInfo["boot_iso"].(string); iso != "" {
			return "ramdisk"
		}
		return "direct"
	}
	return impl
}

// writesImage reports whether the node's deploy writes an image: always
// with "direct", with "custom-agent" only when instance_info names one.
func writesImage(n *store.Node) bool {
	switch deployInterface(n) {
	case "direct":
		return true
	case "custom-agent":
		src, _ := n.InstanceInfo["image_source"].(string)
		return src != ""
	}
	return false
}

// start runs or resumes a deploy in "deploying" (a job): from the first
// step when not past the ramdisk boot (booting it again; the power off
// wipes the token, so a half-booted agent cannot interfere), waiting for
// the agent when it owns the current step, else from the current step.
func (d *deployKind) start(ctx context.Context, uuid string) {
	n, info, err := d.r.nodes.read(ctx, uuid)
	if err != nil || n.ProvisionState != statemachine.Deploying {
		return
	}
	if impl := deployInterface(n); !hardwaretype.Implemented("deploy", impl) || impl == "autodetect" {
		d.fail(ctx, uuid, statemachine.Deploying, fmt.Sprintf("Failed to deploy node %s: %s", uuid, hardwaretype.NotImplemented("deploy", impl)))
		return
	}
	s := &info.Deploy
	i := s.IndexValue()
	switch step, ok := s.Current(); {
	case i <= 0 || !ok:
		d.r.run(ctx, d.k, uuid, 0)
	case d.k.agentDriven(step):
		d.r.toWait(ctx, d.k, uuid, nil)
	default:
		d.r.run(ctx, d.k, uuid, i)
	}
}

// prepare validates a node for deployment and records what the deploy
// needs, within the transaction that starts it (Ironic's do_node_deploy
// validation and prepare).
func (d *deployKind) prepare(n *store.Node, info *internalinfo.Info, ports []*store.Port, drv power.Driver, configdrive *string, userSteps []wire.PlannedStep) error {
	cfg := d.r.cfg
	if n.Maintenance {
		return errMaintenance(n)
	}
	t := &target{node: n, info: info, ports: ports, drv: drv, bootMode: d.r.machines.bootMode(n, info)}
	if err := d.r.machines.validate(t); err != nil {
		return errdefs.InvalidArgument("Failed to validate power driver interface for node %s. Error: %v", n.UUID, err)
	}
	if len(ports) == 0 {
		return errdefs.InvalidArgument("Node %s has no ports: the deploy agent finds its node by the MAC addresses of its ports.", n.UUID)
	}
	if d.r.machines.bootsRamdisk(drv) {
		if _, err := d.r.machines.ramdiskFiles(n); err != nil {
			return err
		}
	}
	if err := d.r.machines.checkHostFiles(n); err != nil {
		return err
	}
	if n.InstanceInfo == nil {
		n.InstanceInfo = map[string]any{}
	}
	if configdrive != nil {
		n.InstanceInfo["configdrive"] = *configdrive
	} else {
		delete(n.InstanceInfo, "configdrive")
	}
	partition := false
	if writesImage(n) {
		if err := imageinfo.Validate(n, cfg.ImageCache != nil); err != nil {
			return err
		}
		n.InstanceInfo["image_url"] = n.InstanceInfo["image_source"]
		partition = imageinfo.IsPartition(n)
		if partition {
			n.InstanceInfo["image_type"] = wire.ImageTypePartition
		} else {
			n.InstanceInfo["image_type"] = wire.ImageTypeWholeDisk
		}
	}
	wipeDeploySteps(info)
	info.UserDeploySteps = userSteps
	if !fastTrackable(cfg, n, info) {
		info.Agent.WipeTokenAndURL()
	}
	wholeDisk := !partition
	info.Image = internalinfo.Image{WholeDisk: &wholeDisk}
	info.Agent.LogsPath = ""
	info.BootMode = t.bootMode
	steps, err := d.planSteps(n, info)
	if err != nil {
		return errdefs.InvalidArgument("%v", err)
	}
	info.Deploy.Plan = steps
	markTime(info, markStarted, d.r.nodes.now())
	return nil
}

// finish moves a node whose steps are all done to active.
func (d *deployKind) finish(ctx context.Context, uuid string) {
	d.r.jobs.polls.stop(uuid)
	_, info, err := d.r.nodes.update(ctx, uuid, statemachine.Deploying, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		timePhase(info, PhaseTotal, markStarted, d.r.nodes.now())
		info.Image.Timestamps = nil
		wipeDeploy(info)
		return d.r.nodes.advance(n, statemachine.EvDone)
	})
	if err != nil {
		d.r.jobs.logError(uuid, "deploy", err)
		return
	}
	d.r.log.Info("deploy finished", "node", uuid, "timings", info.Image.Timings)
}

// wipeDeploy removes the temporary deploy fields and forgets the agent
// (Ironic's wipe_deploy_internal_info without fast-track).
func wipeDeploy(info *internalinfo.Info) {
	wipeDeploySteps(info)
	info.Agent.WipeTokenAndURL()
}

// wipeDeploySteps removes the temporary deploy fields but keeps the agent.
func wipeDeploySteps(info *internalinfo.Info) {
	info.Deploy.Wipe()
	info.KernelParams = nil
	info.UserDeploySteps = nil
}

// fail moves a node in state from to deploy failed with msg as its last
// error, after collecting the agent's logs, then powers it off (Ironic's
// deploying_error_handler and power_off_after_deploy_failure).
func (d *deployKind) fail(ctx context.Context, uuid string, from statemachine.State, msg string) {
	d.r.jobs.polls.stop(uuid)
	if n, info, err := d.r.nodes.read(ctx, uuid); err == nil {
		d.r.agents.collectLogs(ctx, n, info, "deploy-failed")
	}
	n, info, err := d.r.nodes.update(ctx, uuid, from, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		n.LastError = msg
		info.Image.Timestamps = nil
		wipeDeploy(info)
		return d.r.nodes.advance(n, statemachine.EvFail)
	})
	if err != nil {
		d.r.jobs.logError(uuid, "fail deploy", err)
		return
	}
	d.r.machines.powerOffAfterFailure(ctx, n, info)
}

// abort records an abort of a deploy in wait call-back, in the
// transaction that makes it.
func (d *deployKind) abort(n *store.Node, info *internalinfo.Info) {
	step, _ := info.Deploy.Current()
	step.RequiresRamdisk = false
	n.LastError = fmt.Sprintf("Deploy of node %s was aborted by request at step %s.", n.UUID, plan.Repr(step))
	info.Image.Timestamps = nil
	wipeDeploy(info)
	d.r.jobs.polls.stop(n.UUID)
}

// bootRamdisk is Ironic's "deploy" step: boot the deploy ramdisk and wait
// for its agent. With fast-track it reuses the running agent: its steps
// are refreshed and the deploy carries on at once.
func (d *deployKind) bootRamdisk(ctx context.Context, t *target) (outcome, error) {
	// Cache the image first when the conductor serves it; then map the
	// image (and checksum) URLs now: a NodeView driver may need to know
	// them before the node powers on (the qemu driver sets up its port
	// forwards at boot), and an unreachable image fails early.
	if writesImage(t.node) {
		if err := d.resolveImage(ctx, t); err != nil {
			return 0, err
		}
		if _, err := imageinfo.Build(t.node, d.nodeURLFunc(t), t.bootMode); err != nil {
			return 0, err
		}
	}
	if fastTrackable(d.r.cfg, t.node, t.info) {
		d.r.log.Info("fast-track: reusing the running agent", "node", t.node.UUID)
		if _, _, err := d.r.refresh(ctx, d.k, t.node, t.info); err != nil {
			return 0, err
		}
		return next, nil
	}
	if err := d.r.machines.bootRamdisk(ctx, t); err != nil {
		return 0, err
	}
	return wait, nil
}

// resolveImage makes sure a node whose image the conductor serves (a
// file:// source, or image_download_source "http"/"local") has it cached
// and verified, and points instance_info at that copy the way Ironic does:
// image_url becomes the conductor's URL of the copy, and the checksum the
// copy was verified with replaces image_checksum, so that a checksum-file
// URL need not name the cached file. Other images pass through untouched.
func (d *deployKind) resolveImage(ctx context.Context, t *target) error {
	cache := d.r.cfg.ImageCache
	if cache == nil || !images.NeedsCache(t.node.InstanceInfo) {
		return nil
	}
	res, err := cache.Resolve(ctx, t.node.InstanceInfo, d.r.cfg.APIURL)
	if err != nil {
		return fmt.Errorf("node %s: cache the image: %w", t.node.UUID, err)
	}
	n, info, err := d.r.nodes.update(ctx, t.node.UUID, statemachine.Deploying, func(_ store.Tx, n *store.Node, _ *internalinfo.Info) error {
		n.InstanceInfo["image_url"] = res.URL
		n.InstanceInfo["image_os_hash_algo"] = res.Algo
		n.InstanceInfo["image_os_hash_value"] = res.Checksum
		delete(n.InstanceInfo, "image_checksum")
		return nil
	})
	if err != nil {
		return err
	}
	t.set(n, info)
	d.r.log.Info("image cached by the conductor", "node", n.UUID, "url", res.URL, "checksum", res.Algo)
	return nil
}

// nodeURLFunc maps conductor-reachable URLs to the node's view.
func (d *deployKind) nodeURLFunc(t *target) func(string) (string, error) {
	return func(u string) (string, error) { return d.r.machines.nodeURL(t, u) }
}

// writeImage starts the agent's write_image deploy step (contract §2.1):
// image_info as Ironic builds it, the configdrive in the step's args.
func (d *deployKind) writeImage(ctx context.Context, t *target) (outcome, error) {
	n := t.node
	info, err := imageinfo.Build(n, d.nodeURLFunc(t), t.bootMode)
	if err != nil {
		return 0, err
	}
	// The config drive (up to 64 MiB) goes once, in the step's args,
	// where IPA's write_image takes it: not also in image_info (which
	// only agents older than the deploy steps read) nor in the node
	// document (masked, nodeDoc).
	var cd *string
	if s, ok := n.InstanceInfo["configdrive"].(string); ok && s != "" {
		cd = &s
	}
	step, err := wire.WriteImageArgs{ImageInfo: info, Configdrive: cd}.Step()
	if err != nil {
		return 0, err
	}
	d.r.log.Info("starting image write", "node", n.UUID, "image", info.ID, "urls", info.URLs,
		"image_type", info.ImageType, "configdrive", cd != nil)
	if err := d.r.execute(ctx, d.k, t, step); err != nil {
		return 0, err
	}
	// The runner records the start (Started, the write_started mark) in
	// the update that moves the node to wait call-back.
	return wait, nil
}

// prepareInstanceBoot reads the partition UUIDs of the written image and,
// for partition images and UEFI nodes, has the agent install the boot
// loader (image.install_bootloader, polled), as Ironic's
// prepare_instance_boot does.
func (d *deployKind) prepareInstanceBoot(ctx context.Context, t *target) (outcome, error) {
	if !writesImage(t.node) {
		// A custom deploy wrote whatever it wrote: nothing to look at.
		return next, nil
	}
	start := d.r.nodes.now()
	res, err := d.r.agents.succeeded(ctx, t.node, t.info, "standby.get_partition_uuids", nil)
	if err != nil {
		return 0, err
	}
	var pu wire.PartitionUUIDs
	if err := res.DecodeResult(&pu); err != nil {
		return 0, fmt.Errorf("decode get_partition_uuids result: %w", err)
	}
	wholeDisk := t.info.Image.WholeDisk != nil && *t.info.Image.WholeDisk
	n, info, err := d.r.nodes.update(ctx, t.node.UUID, statemachine.Deploying, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		info.Image.RootUUIDOrDiskID = strings.TrimSpace(pu.RootUUID)
		info.Image.EFISystemPartitionUUID = strings.TrimSpace(pu.EFISystemPartUUID)
		return nil
	})
	if err != nil {
		return 0, err
	}
	t.set(n, info)
	if !wholeDisk && pu.RootUUID == "" {
		return 0, lastError(fmt.Sprintf("Failed to find the root UUID of the partition image deployed on node %s; cannot install a boot loader.", n.UUID))
	}
	if !wholeDisk || t.bootMode == string(power.BootModeUEFI) {
		if err := d.installBootloader(ctx, t, pu, wholeDisk); err != nil {
			return 0, err
		}
	}
	_, _, err = d.r.nodes.update(ctx, n.UUID, statemachine.Deploying, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		setTiming(info, PhaseBootloader, d.r.nodes.now().Sub(start).Seconds())
		return nil
	})
	return next, err
}

// installBootloader runs image.install_bootloader and polls it to its end
// (CommandWaitInterval × CommandWaitAttempts). An agent that refuses the
// parameters is asked again without target_boot_mode, as Ironic does. For
// a whole-disk image an agent without the command is tolerated: the
// image's own boot loader is then trusted (the UEFI fallback path).
func (d *deployKind) installBootloader(ctx context.Context, t *target, pu wire.PartitionUUIDs, wholeDisk bool) error {
	n := t.node
	params := wire.InstallBootloaderParams{
		RootUUID:          wire.OptionalString(pu.RootUUID),
		EFISystemPartUUID: wire.OptionalString(pu.EFISystemPartUUID),
		PRePBootPartUUID:  wire.OptionalString(pu.PRePBootPartitionUUID),
		TargetBootMode:    wire.OptionalString(t.bootMode),
	}
	d.r.log.Info("installing the boot loader", "node", n.UUID, "boot_mode", t.bootMode, "whole_disk", wholeDisk)
	res, err := d.r.agents.execute(ctx, n, t.info, "image.install_bootloader", params, false)
	var apiErr *agentclient.APIError
	if errors.As(err, &apiErr) && !errors.Is(err, agentclient.ErrAgentBusy) {
		if wholeDisk && (apiErr.Status == 404 || strings.Contains(apiErr.Fault.FaultString, "Unknown command")) {
			d.r.log.Warn("the agent cannot install boot loaders; trusting the whole-disk image's own", "node", n.UUID, "error", err)
			return nil
		}
		d.r.log.Info("install_bootloader refused; retrying without target_boot_mode", "node", n.UUID, "error", err)
		params.TargetBootMode = nil
		res, err = d.r.agents.execute(ctx, n, t.info, "image.install_bootloader", params, false)
	}
	if err != nil {
		return err
	}
	if res.CommandStatus == wire.StatusRunning {
		if res, err = d.r.agents.wait(ctx, n, t.info, "install_bootloader"); err != nil {
			return err
		}
	}
	if res.CommandStatus != wire.StatusSucceeded {
		return lastError(fmt.Sprintf("Failed to install a bootloader when deploying node %s. Error: %s", n.UUID, res.CommandError.Text()))
	}
	return nil
}

// tearDownAgent asks the agent to power the node off, polls the power
// state PowerOffRetries times PowerOffInterval apart, and forces the power
// off if the node does not comply.
func (d *deployKind) tearDownAgent(ctx context.Context, t *target) (outcome, error) {
	cfg := d.r.cfg
	uuid := t.node.UUID
	d.r.jobs.polls.stop(uuid)
	n, info, err := d.r.nodes.update(ctx, uuid, statemachine.Deploying, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		markTime(info, markPowerPhases, d.r.nodes.now())
		return nil
	})
	if err != nil {
		return 0, err
	}
	t.set(n, info)
	if cfg.LogsCollect == LogsAlways {
		d.r.agents.collectLogs(ctx, n, info, "deploy")
	}
	if n.DisablePowerOff {
		// The node is rebooted into its instance instead: lock the agent
		// down meanwhile (Ironic's).
		d.r.log.Info("node must not be powered off: locking the agent down", "node", uuid)
		if _, err := d.r.agents.execute(ctx, n, info, "system.lockdown", nil, false); err != nil && ctx.Err() == nil {
			d.r.log.Warn("locking the agent down failed", "node", uuid, "error", err)
		}
		return next, ctx.Err()
	}
	_, err = d.r.agents.execute(ctx, n, info, "standby.power_off", nil, false)
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		d.r.log.Warn("soft power off through the agent failed; powering off out of band", "node", uuid, "error", err)
	} else {
		// Poll PowerOffRetries × PowerOffInterval in all, starting half
		// a second apart: a ramdisk usually powers off within a second.
		deadline := time.Now().Add(time.Duration(cfg.PowerOffRetries) * cfg.PowerOffInterval)
		for delay := min(500*time.Millisecond, cfg.PowerOffInterval); !time.Now().Add(delay).After(deadline); delay = min(2*delay, cfg.PowerOffInterval) {
			if err := pause.For(ctx, delay); err != nil {
				return 0, err
			}
			st, err := d.r.machines.powerState(ctx, t)
			if err != nil {
				d.r.log.Warn("reading power state failed", "node", uuid, "error", err)
				continue
			}
			if st == power.Off {
				return next, d.r.machines.recordPower(ctx, t, power.Off, true, statemachine.Deploying)
			}
		}
		d.r.log.Warn("node did not power off in time; powering off out of band", "node", uuid)
	}
	if err := d.r.machines.setPower(ctx, t, power.Off); err != nil {
		return 0, err
	}
	return next, nil
}

// bootInstance boots the deployed disk, persistently.
func (d *deployKind) bootInstance(ctx context.Context, t *target) (outcome, error) {
	if err := d.r.machines.bootInstance(ctx, t); err != nil {
		return 0, err
	}
	_, _, err := d.r.nodes.update(ctx, t.node.UUID, statemachine.Deploying, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		timePhase(info, PhasePower, markPowerPhases, d.r.nodes.now())
		return nil
	})
	return next, err
}
