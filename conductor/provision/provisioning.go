package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"github.com/rivetmetal/rivet/conductor/configiso"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Provisioning takes provision actions and validates nodes. The API has
// checked a request's shape and microversion; Provisioning checks what
// the node's state, maintenance, driver and settings allow.
type Provisioning struct {
	nodes    *nodes
	machines *machines
	deploy   *deployKind
	clean    *cleanKind
	jobs     *jobs
	cfg      *Config
	log      *slog.Logger
}

// Request is a provision action: the target of PUT
// /v1/nodes/{id}/states/provision and its optional configdrive.
type Request struct {
	// Target is the verb ("manage", "provide", "inspect", "adopt",
	// "abort", "active", "rebuild", "deleted", ...), one of
	// statemachine.Verbs. "clean" goes through ManualClean, which carries
	// the steps.
	Target string
	// Configdrive is the config drive for "active" and "rebuild": a
	// gzipped, base64-encoded ISO, an http(s) URL, or a JSON object
	// (meta_data, user_data, network_data, vendor_data) built into an ISO
	// here. Nil when absent; an empty object means none (Metal3 sends
	// one for live ISOs). A JSON object without network_data gets the
	// node's network_data.
	Configdrive any
	// DeploySteps are the user's deploy steps for "active" and
	// "rebuild" (API >= 1.69), each with a priority: they override the
	// priority and args of the deploy's steps of the same name and add
	// the agent's (the custom-agent deploy interface runs only them).
	DeploySteps []wire.PlannedStep
	// NoAbortDeployWait refuses "abort" of a node in wait call-back: the
	// request's API version is older than 1.110, which allowed it. It is
	// checked with the node's state, under its lock.
	NoAbortDeployWait bool
}

// errProtected refuses to undeploy, rebuild or delete a protected node.
func errProtected(n *store.Node) error {
	return errdefs.Forbidden("Node %s is protected and cannot be undeployed, rebuilt or deleted", n.UUID)
}

// errMaintenance refuses an operation on a node in maintenance.
func errMaintenance(n *store.Node) error {
	return errdefs.InvalidArgument("The provisioning operation can't be performed on node %s because it's in maintenance mode.", n.UUID)
}

// Provision applies a provision action to a node: the transition is
// committed under the node lock, and only then the background work it
// needs is queued. Errors carry errdefs classes.
func (p *Provisioning) Provision(ctx context.Context, ident string, req Request) error {
	ev, ok := statemachine.Verbs[req.Target]
	if !ok || ev == statemachine.EvClean || ev == statemachine.EvService {
		return fmt.Errorf("provision: %q is not a provision verb Provision takes", req.Target)
	}
	var cd *string
	if req.Configdrive != nil && ev != statemachine.EvDeploy && ev != statemachine.EvRebuild {
		return fmt.Errorf("provision: a config drive goes with active or rebuild, not %q", req.Target)
	}
	if m, ok := req.Configdrive.(map[string]any); ok && len(m) == 0 {
		req.Configdrive = nil
	}
	if req.Configdrive != nil {
		s, err := p.buildConfigdrive(ctx, ident, req.Configdrive)
		if err != nil {
			return err
		}
		cd = &s
	}
	return p.act(ctx, ident, req.Target, ev, func(tx store.Tx, n *store.Node, info *internalinfo.Info, drv power.Driver) error {
		switch ev {
		case statemachine.EvDeploy, statemachine.EvRebuild:
			ports, err := tx.Ports(ctx)
			if err != nil {
				return err
			}
			if ev == statemachine.EvRebuild && n.Protected {
				return errProtected(n)
			}
			return p.deploy.prepare(n, info, ports, drv, cd, req.DeploySteps)
		case statemachine.EvDelete:
			if n.Protected {
				return errProtected(n)
			}
		case statemachine.EvProvide, statemachine.EvInspect, statemachine.EvAdopt:
			if n.Maintenance {
				return errMaintenance(n)
			}
			switch ev {
			case statemachine.EvProvide:
				if n.Retired {
					return errdefs.InvalidArgument("The providing operation can't be performed on node %s because it is retired.", n.UUID)
				}
				wipeClean(info)
			case statemachine.EvInspect:
				if impl := hardwaretype.Of(n.Driver, n.Interfaces)["inspect_interface"]; impl == "no-inspect" {
					return errdefs.InvalidArgument("Driver %s does not support inspect (disabled or not implemented).", n.Driver)
				}
				info.InspectionReceived = false
			}
		case statemachine.EvAbort:
			if req.NoAbortDeployWait && n.ProvisionState == statemachine.DeployWait {
				return errdefs.InvalidArgument(`The requested action "abort" can not be performed on node "%s" while it is in state "%s".`,
					n.UUID, n.ProvisionState)
			}
			return p.prepareAbort(n, info)
		}
		return nil
	})
}

// ManualClean starts manual cleaning of a manageable node with the
// operator's steps (PUT /v1/nodes/{id}/states/provision with target
// "clean", API >= 1.15; contract §4.5), whose shape the API has checked:
// interface, step, and optional args and reboot_requested. The steps are
// stored (driver_internal_info.user_clean_steps) with the transition;
// once the agent is up they are matched against its steps, which fills
// in priority and abortable, and run in the order given. disableRamdisk
// (API >= 1.70) is refused: every Rivet clean step runs in the agent.
func (p *Provisioning) ManualClean(ctx context.Context, ident string, steps []wire.PlannedStep, disableRamdisk bool) error {
	if disableRamdisk {
		return errdefs.InvalidArgument("Cleaning without the ramdisk (disable_ramdisk) is not supported: every clean step of this conductor runs in the agent.")
	}
	if len(steps) == 0 {
		return errors.New("provision: manual cleaning without steps")
	}
	return p.act(ctx, ident, "clean", statemachine.EvClean, func(_ store.Tx, n *store.Node, info *internalinfo.Info, _ power.Driver) error {
		if n.Maintenance {
			return errMaintenance(n)
		}
		wipeClean(info)
		info.UserCleanSteps = steps
		return nil
	})
}

// act applies event ev (verb) to a node under its lock: the state must
// allow it, the driver must be enabled, prepare runs in the transaction,
// and the job the new state needs is queued after the commit.
func (p *Provisioning) act(ctx context.Context, ident, verb string, ev statemachine.Event,
	prepare func(tx store.Tx, n *store.Node, info *internalinfo.Info, drv power.Driver) error) error {
	n, _, err := p.nodes.update(ctx, ident, "", func(tx store.Tx, n *store.Node, info *internalinfo.Info) error {
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
		drv, err := p.machines.driver(n)
		if err != nil {
			return err
		}
		if err := prepare(tx, n, info, drv); err != nil {
			return err
		}
		if ev != statemachine.EvAbort {
			n.LastError = ""
		}
		return p.nodes.advance(n, ev)
	})
	if err != nil {
		return err
	}
	if ev == statemachine.EvAbort {
		// The job that was handling the agent (a heartbeat, a progress
		// poll) stops before the node is powered off.
		p.cancelJob(ctx, n.UUID, errAborted)
		p.jobs.submit(n.UUID, jobAbort)
		return nil
	}
	p.jobs.submitWork(n)
	return nil
}

// cancelJob cancels the node's running job here, drops its pending ones
// and waits for it (Config.JobStopTimeout at most), then lets jobs be
// queued again.
func (p *Provisioning) cancelJob(ctx context.Context, uuid string, cause error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.JobStopTimeout)
	defer cancel()
	release, err := p.jobs.stop(wctx, uuid, cause)
	release()
	if err != nil {
		p.log.Warn("the node's running job did not stop in time; it stops at its next step", "node", uuid,
			"reason", cause, "waited", p.cfg.JobStopTimeout)
	}
}

// DeleteNode deletes a node and its ports (DELETE /v1/nodes/{id}) by
// Ironic's rules (its conductor's destroy_node): outside maintenance the
// node must not be associated with an instance and must be in enroll,
// manageable, available or adopt failed; in maintenance any state goes,
// to recover broken nodes. Its work here is stopped first: the running
// job is cancelled (every job can be: it stops where it is, as on
// shutdown) and waited for, at most Config.JobStopTimeout, else the delete is
// refused as Ironic refuses a locked node (409); no job is started for
// the node meanwhile. A node whose operation runs on another conductor
// (a working state, or a power change, under that conductor's lease) is
// refused the same way: that job cannot be cancelled from here.
func (p *Provisioning) DeleteNode(ctx context.Context, ident string) error {
	n, err := p.nodes.st.GetNode(ctx, ident)
	if err != nil {
		return err
	}
	if err := deleteAllowed(n); err != nil {
		return err
	}
	if err := p.runsElsewhere(ctx, n); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, p.cfg.JobStopTimeout)
	defer cancel()
	release, err := p.jobs.stop(wctx, n.UUID, errDeleted)
	defer release()
	if err != nil {
		p.log.Warn("delete refused: the node's running job did not stop", "node", n.UUID, "waited", p.cfg.JobStopTimeout)
		return errNodeLocked(n.UUID, p.cfg.Conductor)
	}
	_, _, err = p.nodes.update(ctx, n.UUID, "", func(tx store.Tx, n *store.Node, _ *internalinfo.Info) error {
		if err := deleteAllowed(n); err != nil {
			return err
		}
		return tx.DeleteNode(ctx)
	})
	if err != nil {
		return err
	}
	p.jobs.polls.stop(n.UUID)
	p.machines.certs.remove(n.UUID)
	p.log.Info("node deleted", "node", n.UUID, "provision_state", string(n.ProvisionState), "maintenance", n.Maintenance)
	return nil
}

// deleteAllowed is Ironic's check of a node to delete: a protected node
// never (403), one in maintenance always, others in the states that allow
// it and without an instance.
func deleteAllowed(n *store.Node) error {
	if n.Protected {
		return errdefs.Forbidden("Node %s is protected and cannot be undeployed, rebuilt or deleted", n.UUID)
	}
	if n.Maintenance {
		return nil
	}
	if n.InstanceUUID != "" {
		return errdefs.Conflict("Node %s is associated with instance %s.", n.UUID, n.InstanceUUID)
	}
	if !statemachine.DeleteAllowed[n.ProvisionState] {
		return errdefs.Conflict(`Can not delete node "%s" while it is in provision state "%s". Valid provision states to perform deletion are: "available, enroll, manageable, adopt failed", or set the node into maintenance mode`,
			n.UUID, n.ProvisionState)
	}
	return nil
}

// runsElsewhere refuses to delete a node whose operation another
// conductor is running: a working state or a power change in progress,
// under another conductor's lease.
func (p *Provisioning) runsElsewhere(ctx context.Context, n *store.Node) error {
	busy := n.TargetPowerState != "" ||
		(!statemachine.IsStable(n.ProvisionState) && !statemachine.AgentWait[n.ProvisionState])
	if !busy || ownsAll(p.cfg.Ownership) || p.jobs.owns(ctx, n.UUID) {
		return nil
	}
	hn, ok := p.cfg.Ownership.(holderNamer)
	if !ok {
		return errNodeLocked(n.UUID, "another conductor")
	}
	host, err := hn.Holder(ctx, n.UUID)
	if err != nil {
		return err
	}
	if host == "" {
		return nil // the lease ran out: no conductor works on the node
	}
	return errNodeLocked(n.UUID, host)
}

// errNodeLocked is Ironic's NodeLocked (409).
func errNodeLocked(uuid, host string) error {
	return errdefs.Conflict("Node %s is locked by host %s, please retry after the current operation is completed.", uuid, host)
}

// prepareAbort records an abort in the transaction that makes it (wait
// call-back, clean wait or inspect wait -> the failure state): last_error
// says what was aborted, and the operation's fields are wiped. A clean
// step that is not abortable refuses it.
func (p *Provisioning) prepareAbort(n *store.Node, info *internalinfo.Info) error {
	switch n.ProvisionState {
	case statemachine.DeployWait:
		p.deploy.abort(n, info)
	case statemachine.CleanWait:
		return p.clean.abort(n, info)
	case statemachine.InspectWait:
		n.LastError = "By request, the inspection operation has been aborted"
		info.InspectionReceived = false
		info.Agent.WipeTokenAndURL()
	case statemachine.ServiceWait:
		n.LastError = errServiceAborted(info)
		wipeService(info)
		info.Agent.WipeTokenAndURL()
	case statemachine.ServiceFail:
		// Back to active: the instance is booted again.
		n.LastError = ""
	}
	return nil
}

// buildConfigdrive turns a requested config drive into the string stored
// in instance_info (contract §6.4); a JSON description without
// network_data takes the node's.
func (p *Provisioning) buildConfigdrive(ctx context.Context, ident string, v any) (string, error) {
	n, err := p.nodes.st.GetNode(ctx, ident)
	if err != nil {
		return "", err
	}
	if m, ok := v.(map[string]any); ok && len(n.NetworkData) > 0 {
		if nd, ok := m["network_data"]; !ok || nd == nil {
			m = maps.Clone(m)
			m["network_data"] = n.NetworkData
			v = m
		}
	}
	s, err := configiso.Normalize(v, configiso.Node{UUID: n.UUID, Name: n.Name}, p.cfg.StateDir)
	if errors.Is(err, configiso.ErrInvalid) {
		return "", errdefs.InvalidArgument("Invalid configdrive for node %s: %v", n.UUID, err)
	}
	if err != nil {
		return "", fmt.Errorf("node %s: build config drive: %w", n.UUID, err)
	}
	return s, nil
}

// afterAbort powers an aborted node off, stopping its agent; a node whose
// failed servicing was aborted back to active boots its instance again (a
// job).
func (p *Provisioning) afterAbort(ctx context.Context, uuid string) {
	n, info, err := p.nodes.read(ctx, uuid)
	if err != nil {
		p.jobs.logError(uuid, "abort", err)
		return
	}
	if n.ProvisionState == statemachine.Active {
		t, err := p.machines.targetFor(ctx, n, info)
		if err == nil {
			err = p.machines.bootInstance(ctx, t)
		}
		if err != nil && ctx.Err() == nil {
			p.log.Error("booting the instance after an aborted servicing failed", "node", uuid, "error", err)
		}
		return
	}
	p.machines.powerOffAfterFailure(ctx, n, info)
}

// verify checks the driver can manage the node: driver_info is valid and
// the power state can be read (enroll -> verifying -> manageable; a job).
func (p *Provisioning) verify(ctx context.Context, uuid string) {
	p.checkMachine(ctx, uuid, "verify", statemachine.Verifying, "Failed to get power state for node %s. Error: %v")
}

// adopt takes over a node that already runs its instance (manageable ->
// adopting -> active; a job): as Ironic, only the driver settings are
// checked and the power state read — no image is needed (Metal3 adopts
// externally provisioned hosts, and hosts whose node was re-created,
// without one); nothing is written or rebooted.
func (p *Provisioning) adopt(ctx context.Context, uuid string) {
	p.checkMachine(ctx, uuid, "adopt", statemachine.Adopting, "Error while attempting to adopt node %s: %v.")
}

// checkMachine is verify's and adopt's job: validate the node's driver
// settings and read its power state, then move the node on from state
// (done, with the power state) or fail it with failFormat (node UUID,
// error) as its last_error.
func (p *Provisioning) checkMachine(ctx context.Context, uuid, job string, state statemachine.State, failFormat string) {
	t, err := p.machines.load(ctx, uuid)
	var st power.State
	if err == nil {
		if err = p.machines.validate(t); err == nil {
			st, err = p.machines.powerState(ctx, t)
		}
	}
	if ctx.Err() != nil {
		return
	}
	_, _, uerr := p.nodes.update(ctx, uuid, state, func(_ store.Tx, n *store.Node, _ *internalinfo.Info) error {
		if err != nil {
			n.LastError = fmt.Sprintf(failFormat, uuid, err)
			return p.nodes.advance(n, statemachine.EvFail)
		}
		n.PowerState = string(st)
		n.LastError = ""
		return p.nodes.advance(n, statemachine.EvDone)
	})
	p.jobs.logError(uuid, job, uerr)
}

// teardown undeploys (a job): power off, forget the instance, then clean
// (deleting -> cleaning); a failure moves the node to error.
func (p *Provisioning) teardown(ctx context.Context, uuid string) {
	p.jobs.polls.stop(uuid)
	t, err := p.machines.load(ctx, uuid)
	if err == nil && !t.node.DisablePowerOff {
		err = p.machines.setPower(ctx, t, power.Off)
	}
	if ctx.Err() != nil {
		return
	}
	n, _, uerr := p.nodes.update(ctx, uuid, statemachine.Deleting, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if err != nil {
			n.LastError = fmt.Sprintf("Failed to tear down. Error: %v", err)
			return p.nodes.advance(n, statemachine.EvFail)
		}
		n.InstanceInfo = map[string]any{}
		n.InstanceUUID = ""
		n.InstanceName = ""
		wipeDeploy(info)
		info.Image = internalinfo.Image{Timings: info.Image.Timings}
		info.Agent.HardwareManagerVersion = nil
		info.Agent.LastHeartbeat, info.Agent.Version = "", ""
		info.BootMode = ""
		wipeClean(info)
		return p.nodes.advance(n, statemachine.EvClean)
	})
	if uerr != nil {
		p.jobs.logError(uuid, "teardown", uerr)
		return
	}
	if n.ProvisionState == statemachine.Cleaning {
		p.clean.start(ctx, uuid)
	}
}

// InterfaceValidation is the result of validating one hardware interface
// of a node (an entry of GET /v1/nodes/{id}/validate): Result is true,
// false, or nil when the interface is not in use ("not supported"), and
// Reason says why it is false or nil.
type InterfaceValidation struct {
	Result *bool
	Reason string
}

// ValidateNode validates a node's interfaces without changing it (GET
// /v1/nodes/{id}/validate): power and management from the driver's
// Validate (and, for drivers that talk to a BMC, a connection to it),
// deploy from the checks made before a deploy (instance_info,
// ports), boot from the deploy ramdisk settings; the interfaces Rivet does
// not implement are "not supported".
func (p *Provisioning) ValidateNode(ctx context.Context, ident string) (map[string]InterfaceValidation, error) {
	n, info, err := p.nodes.read(ctx, ident)
	if err != nil {
		return nil, err
	}
	ok := func() InterfaceValidation { t := true; return InterfaceValidation{Result: &t} }
	bad := func(err error) InterfaceValidation {
		f := false
		return InterfaceValidation{Result: &f, Reason: err.Error()}
	}
	out := map[string]InterfaceValidation{}
	for _, k := range []string{"console", "network", "raid", "rescue", "storage", "bios", "firmware"} {
		out[k] = InterfaceValidation{Reason: "not supported"}
	}
	if _, err := p.machines.driver(n); err != nil {
		err := fmt.Errorf("no conductor service registered which supports driver %s", n.Driver)
		for _, k := range []string{"boot", "deploy", "inspect", "management", "power"} {
			out[k] = bad(err)
		}
		return out, nil
	}
	t, err := p.machines.targetFor(ctx, n, info)
	if err != nil {
		return nil, err
	}
	if err := p.machines.validateConnection(ctx, t); err != nil {
		out["power"], out["management"] = bad(err), bad(err)
	} else {
		out["power"], out["management"] = ok(), ok()
	}
	boot := ok()
	if p.machines.bootsRamdisk(t.drv) {
		if _, err := p.machines.ramdiskFiles(n); err != nil {
			boot = bad(err)
		}
	}
	if err := p.machines.checkHostFiles(&store.Node{DriverInfo: n.DriverInfo}); err != nil && *boot.Result {
		boot = bad(err)
	}
	out["boot"], out["inspect"] = boot, boot
	switch {
	case len(t.ports) == 0:
		out["deploy"] = bad(fmt.Errorf("node %s has no ports: the deploy agent finds its node by the MAC addresses of its ports", n.UUID))
	default:
		if err := imageinfo.Validate(n, p.cfg.ImageCache != nil); err != nil {
			out["deploy"] = bad(err)
		} else if err := p.machines.checkImageSource(n.InstanceInfo); err != nil {
			out["deploy"] = bad(err)
		} else {
			out["deploy"] = ok()
		}
	}
	return out, nil
}
