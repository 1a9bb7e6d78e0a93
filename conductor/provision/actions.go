package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/rivetmetal/rivet/conductor/configdrive"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Request is a provision action: the target of PUT
// /v1/nodes/{id}/states/provision and its optional configdrive.
type Request struct {
	// Target is the verb ("manage", "provide", "inspect", "adopt",
	// "abort", "active", "rebuild", "deleted", ...). "clean" goes through
	// ManualClean, which carries the steps.
	Target string
	// Configdrive is the config drive for "active" and "rebuild": a
	// gzipped, base64-encoded ISO, an http(s) URL, or a JSON object
	// (meta_data, user_data, network_data, vendor_data) built into an ISO
	// here. Nil when absent.
	Configdrive any
}

// Provision validates and applies a provision action to a node: the
// transition is committed under the node lock, and only then the
// background work it needs is queued. Errors carry errdefs classes.
func (e *Engine) Provision(ctx context.Context, ident string, req Request) error {
	ev, ok := statemachine.Verbs[req.Target]
	if !ok {
		return errdefs.InvalidArgument(`The requested action "%s" could not be understood.`, req.Target)
	}
	if ev == statemachine.EvClean {
		return errdefs.InvalidArgument(`"clean_steps" is required when setting target provision state to clean`)
	}
	if req.Configdrive != nil && ev != statemachine.EvDeploy && ev != statemachine.EvRebuild {
		return errdefs.InvalidArgument("Adding a config drive is only supported when setting provision state to active or rebuild")
	}
	var cd *string
	if req.Configdrive != nil {
		s, err := e.buildConfigdrive(ctx, ident, req.Configdrive)
		if err != nil {
			return err
		}
		cd = &s
	}
	return e.act(ctx, ident, req.Target, ev, func(tx store.Tx, n *store.Node, drv power.Driver) error {
		switch ev {
		case statemachine.EvDeploy, statemachine.EvRebuild:
			ports, err := tx.Ports(ctx)
			if err != nil {
				return err
			}
			return e.prepareDeploy(n, ports, drv, cd)
		case statemachine.EvProvide, statemachine.EvInspect, statemachine.EvAdopt:
			if n.Maintenance {
				return errdefs.InvalidArgument("The provisioning operation can't be performed on node %s because it's in maintenance mode.", n.UUID)
			}
			if ev == statemachine.EvProvide {
				wipeClean(n)
				n.SetInternal("clean_steps", nil)
			}
		case statemachine.EvAbort:
			return e.prepareAbort(n)
		}
		return nil
	})
}

// ManualClean starts manual cleaning of a manageable node with the given
// steps (PUT /v1/nodes/{id}/states/provision with target "clean", API >=
// 1.15; contract §4.5). The API has checked the steps' shape: each has
// "interface" and "step", and optional "args" (an object) and
// "reboot_requested". The steps are stored (driver_internal_info
// .user_clean_steps) with the transition; once the agent is up they are
// matched against its steps, which fills in priority and abortable, and
// run in the order given. disableRamdisk (API >= 1.70) is refused: every
// Rivet clean step runs in the agent.
func (e *Engine) ManualClean(ctx context.Context, ident string, steps []wire.Step, disableRamdisk bool) error {
	if disableRamdisk {
		return errdefs.InvalidArgument("Cleaning without the ramdisk (disable_ramdisk) is not supported: every clean step of this conductor runs in the agent.")
	}
	if len(steps) == 0 {
		return errdefs.InvalidArgument(`"clean_steps" is required when setting target provision state to clean`)
	}
	user := make([]any, len(steps))
	for i, s := range steps {
		if s.Interface == "" || s.Step == "" {
			return errdefs.InvalidArgument("Each clean step needs an interface and a step name: %+v", s)
		}
		if !validStepInterfaces[s.Interface] {
			return errdefs.InvalidArgument(`Clean step %d has an invalid interface %q`, i, s.Interface)
		}
		m := map[string]any{"interface": s.Interface, "step": s.Step}
		if s.Args != nil {
			m["args"] = s.Args
		}
		if s.RebootRequested {
			m["reboot_requested"] = true
		}
		user[i] = m
	}
	return e.act(ctx, ident, "clean", statemachine.EvClean, func(_ store.Tx, n *store.Node, _ power.Driver) error {
		if n.Maintenance {
			return errdefs.InvalidArgument("The provisioning operation can't be performed on node %s because it's in maintenance mode.", n.UUID)
		}
		wipeClean(n)
		n.SetInternal("clean_steps", nil)
		n.SetInternal("user_clean_steps", user)
		return nil
	})
}

// validStepInterfaces are the interfaces a clean step may name.
var validStepInterfaces = map[string]bool{"deploy": true, "power": true, "management": true,
	"bios": true, "raid": true, "firmware": true}

// act applies event ev (verb) to a node under its lock: the state must
// allow it, the driver must be enabled, prepare runs in the transaction,
// and the job the new state needs is queued after the commit.
func (e *Engine) act(ctx context.Context, ident, verb string, ev statemachine.Event,
	prepare func(tx store.Tx, n *store.Node, drv power.Driver) error) error {
	n, err := e.update(ctx, ident, "", func(tx store.Tx, n *store.Node) error {
		if !statemachine.Allowed(n.ProvisionState, ev) {
			if !statemachine.IsStable(n.ProvisionState) {
				return errdefs.Conflict("Node %s is locked by a running operation (provision state %q), please retry after the current operation is completed.",
					n.UUID, n.ProvisionState)
			}
			return errdefs.InvalidArgument(`The requested action "%s" can not be performed on node "%s" while it is in state "%s".`,
				verb, n.UUID, n.ProvisionState)
		}
		if n.TargetPowerState != "" && ev != statemachine.EvAbort {
			return errdefs.Conflict("Node %s is locked by a power state change to %q, please retry after it is completed.", n.UUID, n.TargetPowerState)
		}
		drv, ok := e.drivers[n.Driver]
		if !ok {
			return errdefs.InvalidArgument("No valid host was found. Reason: No conductor service registered which supports driver %s.", n.Driver)
		}
		if err := prepare(tx, n, drv); err != nil {
			return err
		}
		if ev != statemachine.EvAbort {
			n.LastError = ""
		}
		_, err := n.Advance(ev, e.now())
		return err
	})
	if err != nil {
		return err
	}
	switch n.ProvisionState {
	case statemachine.Verifying:
		e.submit(n.UUID, jobVerify)
	case statemachine.Cleaning:
		e.submit(n.UUID, jobClean)
	case statemachine.Deploying:
		e.submit(n.UUID, jobDeploy)
	case statemachine.Deleting:
		e.submit(n.UUID, jobTeardown)
	case statemachine.Inspecting:
		e.submit(n.UUID, jobInspect)
	case statemachine.Adopting:
		e.submit(n.UUID, jobAdopt)
	case statemachine.DeployFailed, statemachine.CleanFailed, statemachine.InspectFail:
		if ev == statemachine.EvAbort {
			e.submit(n.UUID, jobAbort)
		}
	}
	return nil
}

// buildConfigdrive turns a requested config drive into the string stored
// in instance_info (contract §6.4).
func (e *Engine) buildConfigdrive(ctx context.Context, ident string, v any) (string, error) {
	n, err := e.st.GetNode(ctx, ident)
	if err != nil {
		return "", err
	}
	s, err := configdrive.Normalize(v, configdrive.Node{UUID: n.UUID, Name: n.Name}, e.cfg.StateDir)
	if errors.Is(err, configdrive.ErrInvalid) {
		return "", errdefs.InvalidArgument("Invalid configdrive for node %s: %v", n.UUID, err)
	}
	if err != nil {
		return "", fmt.Errorf("node %s: build config drive: %w", n.UUID, err)
	}
	return s, nil
}

// prepareDeploy validates a node for deployment and records what the
// deploy needs (Ironic's do_node_deploy validation and prepare).
func (e *Engine) prepareDeploy(n *store.Node, ports []*store.Port, drv power.Driver, cd *string) error {
	if n.Maintenance {
		return errdefs.InvalidArgument("The provisioning operation can't be performed on node %s because it's in maintenance mode.", n.UUID)
	}
	t := &target{node: n, ports: ports, drv: drv, bootMode: e.bootMode(n)}
	if err := drv.Validate(t.powerNode()); err != nil {
		return errdefs.InvalidArgument("Failed to validate power driver interface for node %s. Error: %v", n.UUID, err)
	}
	if len(ports) == 0 {
		return errdefs.InvalidArgument("Node %s has no ports: the deploy agent finds its node by the MAC addresses of its ports.", n.UUID)
	}
	if _, ok := drv.(power.RamdiskBooter); ok {
		if _, err := e.ramdiskFiles(n); err != nil {
			return err
		}
	}
	if n.InstanceInfo == nil {
		n.InstanceInfo = map[string]any{}
	}
	if cd != nil {
		n.InstanceInfo["configdrive"] = *cd
	} else {
		delete(n.InstanceInfo, "configdrive")
	}
	if err := imageinfo.Validate(n, e.cfg.ImageCache != nil); err != nil {
		return err
	}
	n.InstanceInfo["image_url"] = n.InstanceInfo["image_source"]
	partition := imageinfo.IsPartition(n)
	if partition {
		n.InstanceInfo["image_type"] = wire.ImageTypePartition
	} else {
		n.InstanceInfo["image_type"] = wire.ImageTypeWholeDisk
	}
	n.DeployStep = map[string]any{}
	wipeDeploySteps(n)
	if !e.fastTrackable(n) {
		wipeTokenAndURL(n)
	}
	for _, k := range []string{"deploy_progress", "root_uuid_or_disk_id", "efi_system_partition_uuid",
		keyTimings, keyTimestamps, keyLogsPath} {
		n.SetInternal(k, nil)
	}
	n.SetInternal("is_whole_disk_image", !partition)
	n.SetInternal("deploy_boot_mode", t.bootMode)
	n.SetInternal("deploy_steps", anyList(e.deploySteps(n)))
	markTime(n, markStarted, e.now())
	return nil
}

// ramdiskFiles returns the deploy kernel and ramdisk of a node, or an
// InvalidArgument error naming what is missing.
func (e *Engine) ramdiskFiles(n *store.Node) ([2]string, error) {
	kernel, _ := n.DriverInfo["deploy_kernel"].(string)
	initrd, _ := n.DriverInfo["deploy_ramdisk"].(string)
	if kernel == "" {
		kernel = e.cfg.DeployKernel
	}
	if initrd == "" {
		initrd = e.cfg.DeployRamdisk
	}
	var missing []string
	if kernel == "" {
		missing = append(missing, "'deploy_kernel'")
	}
	if initrd == "" {
		missing = append(missing, "'deploy_ramdisk'")
	}
	if len(missing) > 0 {
		return [2]string{}, errdefs.InvalidArgument("Some parameters were missing in node's driver_info. Missing are: %v", missing)
	}
	return [2]string{kernel, initrd}, nil
}
