package provision

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Power changes a node's power state and boot device on request, out of
// band, unless a provision operation owns the node.
type Power struct {
	nodes    *nodes
	machines *machines
	jobs     *jobs
	log      *slog.Logger
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
func (p *Power) ChangePowerState(ctx context.Context, ident string, target power.State, timeout time.Duration) error {
	switch target {
	case power.On, power.Off, power.Reboot, power.SoftOff, power.SoftReboot:
	default:
		return fmt.Errorf("provision: %q is not a power state to ask for", target)
	}
	n, _, err := p.nodes.update(ctx, ident, "", func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if err := lockedByOperation(n); err != nil {
			return err
		}
		if n.TargetPowerState != "" {
			return errdefs.Conflict("Node %s is locked by a power state change to %q, please retry after it is completed.", n.UUID, n.TargetPowerState)
		}
		if _, err := p.machines.driver(n); err != nil {
			return err
		}
		if n.DisablePowerOff && resultingPower(target) == power.Off {
			return errdefs.InvalidArgument("Refusing to power off node %s with disable_power_off flag set; reboot it instead.", n.UUID)
		}
		n.TargetPowerState = string(resultingPower(target))
		info.PowerRequest = &internalinfo.PowerRequest{State: string(target), Timeout: timeout.Seconds()}
		return nil
	})
	if err != nil {
		return err
	}
	if p.jobs.owns(ctx, n.UUID) {
		p.jobs.submit(n.UUID, jobPower)
	}
	return nil
}

// lockedByOperation refuses out-of-band changes while a provision
// operation works on the node (Ironic's NodeLocked, 409).
func lockedByOperation(n *store.Node) error {
	if !statemachine.IsStable(n.ProvisionState) && !statemachine.AgentWait[n.ProvisionState] {
		return errdefs.Conflict("Node %s is locked by a running operation (provision state %q), please retry after the current operation is completed.",
			n.UUID, n.ProvisionState)
	}
	return nil
}

// changePower carries out a requested power change (a job).
func (p *Power) changePower(ctx context.Context, uuid string) {
	t, err := p.machines.load(ctx, uuid)
	if err != nil {
		p.jobs.logError(uuid, "power", err)
		return
	}
	if t.node.TargetPowerState == "" {
		return
	}
	want, timeout := power.State(t.node.TargetPowerState), p.machines.cfg.PowerStateTimeout
	if req := t.info.PowerRequest; req != nil {
		if req.State != "" {
			want = power.State(req.State)
		}
		if req.Timeout > 0 {
			timeout = time.Duration(req.Timeout * float64(time.Second))
		}
	}
	err = p.machines.setPowerTimeout(ctx, t, want, timeout)
	if ctx.Err() != nil {
		return
	}
	_, _, uerr := p.nodes.update(ctx, uuid, "", func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		n.TargetPowerState = ""
		info.PowerRequest = nil
		if err != nil {
			n.LastError = fmt.Sprintf("Failed to change power state to '%s' by '%s'. Error: %v", resultingPower(want), want, err)
		} else {
			n.LastError = ""
		}
		return nil
	})
	if err != nil {
		p.log.Error("power state change failed", "node", uuid, "target", want, "error", err)
	}
	p.jobs.logError(uuid, "power", uerr)
}

// SetNodeBootDevice sets the device a node boots from next (PUT
// /v1/nodes/{id}/management/boot_device), synchronously, unless an
// operation owns the node (errdefs.Conflict).
func (p *Power) SetNodeBootDevice(ctx context.Context, ident string, dev power.BootDevice, persistent bool) error {
	t, err := p.machines.load(ctx, ident)
	if err != nil {
		return err
	}
	if err := lockedByOperation(t.node); err != nil {
		return err
	}
	return p.machines.setBootDevice(ctx, t, dev, persistent)
}

// NodeBootDevice reads a node's next boot device and whether it is
// persistent (GET /v1/nodes/{id}/management/boot_device); a driver that
// cannot read it back gives ("", false, nil).
func (p *Power) NodeBootDevice(ctx context.Context, ident string) (power.BootDevice, bool, error) {
	t, err := p.machines.load(ctx, ident)
	if err != nil {
		return "", false, err
	}
	return p.machines.bootDevice(ctx, t)
}

// NodeSupportedBootDevices lists the boot devices a node's driver can set
// (GET /v1/nodes/{id}/management/boot_device/supported).
func (p *Power) NodeSupportedBootDevices(ctx context.Context, ident string) ([]power.BootDevice, error) {
	t, err := p.machines.load(ctx, ident)
	if err != nil {
		return nil, err
	}
	return p.machines.supportedBootDevices(t), nil
}
