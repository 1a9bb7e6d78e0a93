package provision

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// target is a node as a job sees it: the node, its ports and its driver.
type target struct {
	node  *store.Node
	ports []*store.Port
	drv   power.Driver
}

// powerNode is the driver's view of the node.
func (t *target) powerNode() power.Node {
	ports := append([]*store.Port(nil), t.ports...)
	sort.SliceStable(ports, func(i, j int) bool { return ports[i].PXEEnabled && !ports[j].PXEEnabled })
	macs := make([]string, len(ports))
	for i, p := range ports {
		macs[i] = p.Address
	}
	return power.Node{UUID: t.node.UUID, Name: t.node.Name, DriverInfo: t.node.DriverInfo, MACs: macs}
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
	return &target{node: n, ports: ports, drv: drv}, nil
}

// setPower moves the node to want (On, Off or Reboot), waits until the
// driver reports the resulting state, and records it. Every power off or
// reboot wipes the agent's URL, token and cached steps, as Ironic does: the
// next ramdisk boot starts afresh.
func (e *Engine) setPower(ctx context.Context, t *target, want power.State) error {
	pn := t.powerNode()
	if err := t.drv.SetPowerState(ctx, pn, want); err != nil {
		return fmt.Errorf("node %s: set power %s: %w", pn.UUID, want, err)
	}
	expect := want
	if want == power.Reboot || want == power.SoftReboot {
		expect = power.On
	}
	if want == power.SoftOff {
		expect = power.Off
	}
	if err := e.waitPower(ctx, t, expect, e.cfg.PowerStateTimeout); err != nil {
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
	t.node = n
	return nil
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
		if err := sleep(ctx, e.cfg.PowerStateInterval); err != nil {
			return err
		}
	}
}

// wipeAgent forgets the agent of the last ramdisk boot (Ironic's
// wipe_internal_info_on_power_off).
func wipeAgent(n *store.Node) {
	n.SetInternal("agent_url", nil)
	if pre, _ := n.DriverInternalInfo["agent_secret_token_pregenerated"].(bool); !pre {
		n.SetInternal("agent_secret_token", nil)
	}
	n.SetInternal("agent_cached_deploy_steps", nil)
	n.SetInternal("agent_cached_clean_steps", nil)
	n.SetInternal("agent_verify_ca", nil)
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

// clean finishes cleaning. Automated cleaning is not implemented (and is
// refused by New), so a node in cleaning goes straight to available.
func (e *Engine) clean(ctx context.Context, uuid string) {
	_, err := e.update(ctx, uuid, statemachine.Cleaning, func(_ store.Tx, n *store.Node) error {
		n.SetInternal("clean_steps", nil)
		_, err := n.Advance(statemachine.EvDone, e.now())
		return err
	})
	e.logJobError(uuid, "clean", err)
}

// teardown undeploys: power off, forget the instance, then clean
// (deleting -> cleaning -> available); a failure moves the node to error.
func (e *Engine) teardown(ctx context.Context, uuid string) {
	e.setWriting(uuid, false)
	t, err := e.load(ctx, uuid)
	if err == nil {
		err = e.setPower(ctx, t, power.Off)
	}
	if ctx.Err() != nil {
		return
	}
	_, uerr := e.update(ctx, uuid, statemachine.Deleting, func(_ store.Tx, n *store.Node) error {
		if err != nil {
			n.LastError = fmt.Sprintf("Failed to tear down. Error: %v", err)
			_, aerr := n.Advance(statemachine.EvError, e.now())
			return aerr
		}
		n.InstanceInfo = map[string]any{}
		n.InstanceUUID = ""
		n.DeployStep = map[string]any{}
		wipeDeploy(n)
		for _, k := range []string{"root_uuid_or_disk_id", "efi_system_partition_uuid",
			"is_whole_disk_image", "deploy_progress", "hardware_manager_version",
			"agent_last_heartbeat", "agent_version"} {
			n.SetInternal(k, nil)
		}
		_, aerr := n.Advance(statemachine.EvClean, e.now())
		return aerr
	})
	if uerr != nil {
		e.logJobError(uuid, "teardown", uerr)
		return
	}
	if err == nil {
		e.clean(ctx, uuid)
	}
}

// logJobError logs a job's failure to persist, unless it was cancelled or
// the node moved on.
func (e *Engine) logJobError(uuid, job string, err error) {
	if err == nil || e.ctx.Err() != nil || isStateChanged(err) {
		return
	}
	e.log.Error("node job failed", "node", uuid, "job", job, "error", err)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
