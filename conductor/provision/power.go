package provision

import (
	"context"
	"fmt"
	"github.com/rivetmetal/rivet/internal/pause"
	"sort"
	"strconv"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// target is a node as a job sees it: the node, its ports, its driver and
// its boot mode.
type target struct {
	node     *store.Node
	ports    []*store.Port
	drv      power.Driver
	bootMode string
}

// powerNode is the driver's view of the node.
func (t *target) powerNode() power.Node {
	ports := append([]*store.Port(nil), t.ports...)
	sort.SliceStable(ports, func(i, j int) bool { return ports[i].PXEEnabled && !ports[j].PXEEnabled })
	macs := make([]string, len(ports))
	for i, p := range ports {
		macs[i] = p.Address
	}
	return power.Node{UUID: t.node.UUID, Name: t.node.Name, DriverInfo: t.node.DriverInfo, MACs: macs,
		BootMode: power.BootMode(t.bootMode)}
}

// load reads a node, its ports and its driver.
func (e *Engine) load(ctx context.Context, uuid string) (*target, error) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil {
		return nil, err
	}
	return e.targetFor(ctx, n)
}

func (e *Engine) targetFor(ctx context.Context, n *store.Node) (*target, error) {
	drv, ok := e.drivers[n.Driver]
	if !ok {
		return nil, errdefs.InvalidArgument("No valid host was found. Reason: No conductor service registered which supports driver %s.", n.Driver)
	}
	ports, err := e.st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		return nil, fmt.Errorf("node %s: list ports: %w", n.UUID, err)
	}
	return &target{node: n, ports: ports, drv: drv, bootMode: e.bootMode(n)}, nil
}

// bootMode is the boot mode a node is deployed in (contract §4.3): the
// secure_boot capability forces UEFI; then instance_info.deploy_boot_mode,
// the boot_mode capability, driver_internal_info.deploy_boot_mode, and the
// conductor's default.
func (e *Engine) bootMode(n *store.Node) string {
	valid := func(s string) bool { return s == string(power.BootModeUEFI) || s == string(power.BootModeBIOS) }
	caps := imageinfo.Capabilities(n.Properties)
	if sb, _ := strconv.ParseBool(caps["secure_boot"]); sb {
		return string(power.BootModeUEFI)
	}
	if m, _ := n.InstanceInfo["deploy_boot_mode"].(string); valid(m) {
		return m
	}
	if m := caps["boot_mode"]; valid(m) {
		return m
	}
	if m := n.InternalString("deploy_boot_mode"); valid(m) {
		return m
	}
	return e.cfg.DefaultBootMode
}

// setPower moves the node to want (On, Off, Reboot or the soft variants),
// waits until the driver reports the resulting state, and records it.
// Every power off or reboot wipes the agent's URL, token, cached steps and
// certificate, as Ironic does: the next ramdisk boot starts afresh.
func (e *Engine) setPower(ctx context.Context, t *target, want power.State) error {
	return e.setPowerTimeout(ctx, t, want, e.cfg.PowerStateTimeout)
}

func (e *Engine) setPowerTimeout(ctx context.Context, t *target, want power.State, timeout time.Duration) error {
	pn := t.powerNode()
	if err := t.drv.SetPowerState(ctx, pn, want); err != nil {
		return fmt.Errorf("node %s: set power %s: %w", pn.UUID, want, err)
	}
	expect := resultingPower(want)
	if err := e.waitPower(ctx, t, expect, timeout); err != nil {
		return err
	}
	n, err := e.update(ctx, pn.UUID, "", func(_ store.Tx, n *store.Node) error {
		n.PowerState = string(expect)
		n.TargetPowerState = ""
		if want != power.On {
			wipeAgent(n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if want != power.On {
		e.removeCAFile(pn.UUID)
	}
	t.node = n
	return nil
}

// resultingPower is the state a power request ends in.
func resultingPower(want power.State) power.State {
	switch want {
	case power.Reboot, power.SoftReboot:
		return power.On
	case power.SoftOff:
		return power.Off
	}
	return want
}

// waitPower polls the driver until the node is in state want or timeout
// passes.
func (e *Engine) waitPower(ctx context.Context, t *target, want power.State, timeout time.Duration) error {
	pn := t.powerNode()
	deadline := time.Now().Add(timeout)
	for {
		st, err := t.drv.PowerState(ctx, pn)
		if err != nil {
			return fmt.Errorf("node %s: read power state: %w", pn.UUID, err)
		}
		if st == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: power state is %q after %s, want %q", pn.UUID, st, timeout, want)
		}
		if err := pause.For(ctx, e.cfg.PowerStateInterval); err != nil {
			return err
		}
	}
}

// verify checks the driver can manage the node: driver_info is valid and
// the power state can be read (enroll -> verifying -> manageable).
func (e *Engine) verify(ctx context.Context, uuid string) {
	t, err := e.load(ctx, uuid)
	var st power.State
	if err == nil {
		pn := t.powerNode()
		if err = t.drv.Validate(pn); err == nil {
			st, err = t.drv.PowerState(ctx, pn)
		}
	}
	if ctx.Err() != nil {
		return
	}
	_, uerr := e.update(ctx, uuid, statemachine.Verifying, func(_ store.Tx, n *store.Node) error {
		if err != nil {
			n.LastError = fmt.Sprintf("Failed to get power state for node %s. Error: %v", uuid, err)
			_, aerr := n.Advance(statemachine.EvFail, e.now())
			return aerr
		}
		n.PowerState = string(st)
		n.LastError = ""
		_, aerr := n.Advance(statemachine.EvDone, e.now())
		return aerr
	})
	e.logJobError(uuid, "verify", uerr)
}

// adopt takes over a node that already runs its instance (manageable ->
// adopting -> active): the image must be described and the power state
// readable; nothing is written or rebooted.
func (e *Engine) adopt(ctx context.Context, uuid string) {
	t, err := e.load(ctx, uuid)
	var st power.State
	if err == nil {
		pn := t.powerNode()
		if err = t.drv.Validate(pn); err == nil {
			if err = imageinfo.Validate(t.node, e.cfg.ImageCache != nil); err == nil {
				st, err = t.drv.PowerState(ctx, pn)
			}
		}
	}
	if ctx.Err() != nil {
		return
	}
	_, uerr := e.update(ctx, uuid, statemachine.Adopting, func(_ store.Tx, n *store.Node) error {
		if err != nil {
			n.LastError = fmt.Sprintf("Error while attempting to adopt node %s: %v.", uuid, err)
			_, aerr := n.Advance(statemachine.EvFail, e.now())
			return aerr
		}
		n.PowerState = string(st)
		_, aerr := n.Advance(statemachine.EvDone, e.now())
		return aerr
	})
	e.logJobError(uuid, "adopt", uerr)
}

// teardown undeploys: power off, forget the instance, then clean
// (deleting -> cleaning); a failure moves the node to error.
func (e *Engine) teardown(ctx context.Context, uuid string) {
	e.setWriting(uuid, false)
	t, err := e.load(ctx, uuid)
	if err == nil {
		err = e.setPower(ctx, t, power.Off)
	}
	if ctx.Err() != nil {
		return
	}
	n, uerr := e.update(ctx, uuid, statemachine.Deleting, func(_ store.Tx, n *store.Node) error {
		if err != nil {
			n.LastError = fmt.Sprintf("Failed to tear down. Error: %v", err)
			_, aerr := n.Advance(statemachine.EvFail, e.now())
			return aerr
		}
		n.InstanceInfo = map[string]any{}
		n.InstanceUUID = ""
		n.DeployStep = map[string]any{}
		wipeDeploy(n)
		for _, k := range []string{"root_uuid_or_disk_id", "efi_system_partition_uuid",
			"is_whole_disk_image", "deploy_progress", "hardware_manager_version",
			"agent_last_heartbeat", "agent_version", "deploy_boot_mode", keyTimestamps} {
			n.SetInternal(k, nil)
		}
		wipeClean(n)
		_, aerr := n.Advance(statemachine.EvClean, e.now())
		return aerr
	})
	if uerr != nil {
		e.logJobError(uuid, "teardown", uerr)
		return
	}
	if n.ProvisionState == statemachine.Cleaning {
		e.clean(ctx, uuid)
	}
}

// fastTrackEnabled reports whether fast-track is on for a node
// ([deploy]fast_track, or driver_info.fast_track).
func (e *Engine) fastTrackEnabled(n *store.Node) bool {
	switch v := n.DriverInfo["fast_track"].(type) {
	case bool:
		return v
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return e.cfg.FastTrack
}

// fastTrackable reports whether a node's running agent can be reused
// (contract §4.7): fast-track on, no last error, power on, an agent URL,
// and a heartbeat within FastTrackTimeout.
func (e *Engine) fastTrackable(n *store.Node) bool {
	if !e.fastTrackEnabled(n) || n.LastError != "" || n.PowerState != string(power.On) || n.InternalString("agent_url") == "" {
		return false
	}
	last, err := time.Parse("2006-01-02T15:04:05.000000", n.InternalString("agent_last_heartbeat"))
	return err == nil && e.now().Sub(last) <= e.cfg.FastTrackTimeout
}

// ChangePowerState asks for a node's power state to change (PUT
// /v1/nodes/{id}/states/power). target is power.On, Off, Reboot, SoftOff or
// SoftReboot; timeout, when > 0, bounds the wait for the new state.
// Under the node lock it refuses (errdefs.Conflict) while an operation
// owns the node's power (a transient provision state other than the wait
// states) or another power change runs, sets target_power_state and
// commits; the change runs in the background, sets power_state, clears
// target_power_state, records last_error on failure, and wipes the
// agent's URL and token on every power off or reboot.
func (e *Engine) ChangePowerState(ctx context.Context, ident string, target power.State, timeout time.Duration) error {
	switch target {
	case power.On, power.Off, power.Reboot, power.SoftOff, power.SoftReboot:
	default:
		return errdefs.InvalidArgument("Invalid power state %q.", target)
	}
	n, err := e.update(ctx, ident, "", func(_ store.Tx, n *store.Node) error {
		if err := e.lockedByOperation(n); err != nil {
			return err
		}
		if n.TargetPowerState != "" {
			return errdefs.Conflict("Node %s is locked by a power state change to %q, please retry after it is completed.", n.UUID, n.TargetPowerState)
		}
		if _, ok := e.drivers[n.Driver]; !ok {
			return errdefs.InvalidArgument("No valid host was found. Reason: No conductor service registered which supports driver %s.", n.Driver)
		}
		n.TargetPowerState = string(resultingPower(target))
		req := map[string]any{"state": string(target)}
		if timeout > 0 {
			req["timeout"] = timeout.Seconds()
		}
		n.SetInternal("power_request", req)
		return nil
	})
	if err != nil {
		return err
	}
	if e.owns(ctx, n.UUID) {
		e.submit(n.UUID, jobPower)
	}
	return nil
}

// lockedByOperation refuses out-of-band changes while a provision
// operation works on the node (Ironic's NodeLocked, 409).
func (e *Engine) lockedByOperation(n *store.Node) error {
	if !statemachine.IsStable(n.ProvisionState) && !statemachine.AgentWait[n.ProvisionState] {
		return errdefs.Conflict("Node %s is locked by a running operation (provision state %q), please retry after the current operation is completed.",
			n.UUID, n.ProvisionState)
	}
	return nil
}

// changePower carries out a requested power change (a job).
func (e *Engine) changePower(ctx context.Context, uuid string) {
	t, err := e.load(ctx, uuid)
	if err != nil {
		e.logJobError(uuid, "power", err)
		return
	}
	n := t.node
	if n.TargetPowerState == "" {
		return
	}
	req, _ := n.DriverInternalInfo["power_request"].(map[string]any)
	want, _ := req["state"].(string)
	if want == "" {
		want = n.TargetPowerState
	}
	timeout := e.cfg.PowerStateTimeout
	if s, ok := req["timeout"].(float64); ok && s > 0 {
		timeout = time.Duration(s * float64(time.Second))
	}
	err = e.setPowerTimeout(ctx, t, power.State(want), timeout)
	if ctx.Err() != nil {
		return
	}
	_, uerr := e.update(ctx, uuid, "", func(_ store.Tx, n *store.Node) error {
		n.TargetPowerState = ""
		n.SetInternal("power_request", nil)
		if err != nil {
			n.LastError = fmt.Sprintf("Failed to change power state to '%s' by '%s'. Error: %v", resultingPower(power.State(want)), want, err)
		} else {
			n.LastError = ""
		}
		return nil
	})
	if err != nil {
		e.log.Error("power state change failed", "node", uuid, "target", want, "error", err)
	}
	e.logJobError(uuid, "power", uerr)
}

// SetNodeBootDevice sets the device a node boots from next (PUT
// /v1/nodes/{id}/management/boot_device), synchronously, unless an
// operation owns the node (errdefs.Conflict).
func (e *Engine) SetNodeBootDevice(ctx context.Context, ident string, dev power.BootDevice, persistent bool) error {
	t, err := e.load(ctx, ident)
	if err != nil {
		return err
	}
	if err := e.lockedByOperation(t.node); err != nil {
		return err
	}
	if err := t.drv.SetBootDevice(ctx, t.powerNode(), dev, persistent); err != nil {
		return fmt.Errorf("node %s: set boot device %s: %w", t.node.UUID, dev, err)
	}
	return nil
}

// NodeBootDevice reads a node's next boot device and whether it is
// persistent (GET /v1/nodes/{id}/management/boot_device); a driver that
// cannot read it back gives ("", false, nil).
func (e *Engine) NodeBootDevice(ctx context.Context, ident string) (power.BootDevice, bool, error) {
	t, err := e.load(ctx, ident)
	if err != nil {
		return "", false, err
	}
	r, ok := t.drv.(power.BootDeviceReader)
	if !ok {
		return "", false, nil
	}
	dev, persistent, err := r.GetBootDevice(ctx, t.powerNode())
	if err != nil {
		return "", false, fmt.Errorf("node %s: read boot device: %w", t.node.UUID, err)
	}
	return dev, persistent, nil
}

// NodeSupportedBootDevices lists the boot devices a node's driver can set
// (GET /v1/nodes/{id}/management/boot_device/supported).
func (e *Engine) NodeSupportedBootDevices(ctx context.Context, ident string) ([]power.BootDevice, error) {
	t, err := e.load(ctx, ident)
	if err != nil {
		return nil, err
	}
	if l, ok := t.drv.(power.BootDeviceLister); ok {
		return l.SupportedBootDevices(t.powerNode()), nil
	}
	return []power.BootDevice{power.BootPXE, power.BootDisk}, nil
}
