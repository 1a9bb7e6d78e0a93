package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/plan"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/internal/pause"
	"github.com/rivetmetal/rivet/wire"
)

// Servicing (Ironic's "service" verb, API 1.87: Metal3 updates firmware
// and BIOS settings of provisioned hosts with it) runs the operator's
// service steps on an active node, which goes back to active:
// active → servicing (↔ service wait) → active, or service failed.
//
// The steps are the operator's, in their order. Ironic's flow steps —
// power_on, power_off, reboot and wait (with "seconds"), on any interface
// — are the conductor's own and need no ramdisk. Any other step is the
// agent's: the deploy ramdisk is booted first (unless disable_ramdisk),
// its service steps fetched (service.get_service_steps) and the
// operator's matched against them, as for manual cleaning; at the end
// the node is booted back into its instance. Out-of-band driver steps
// (redfish BIOS and firmware) are not implemented: a plan naming them
// fails with a clear last_error.

// maxWaitStep bounds a "wait" flow step (Ironic's
// [conductor]max_conductor_wait_step_seconds).
const maxWaitStep = 30 * time.Second

// flowSteps are the steps the conductor resolves itself, whatever their
// interface.
var flowSteps = map[string]bool{"power_on": true, "power_off": true, "reboot": true, "wait": true, "hold": true}

// serviceKind is the service step kind.
type serviceKind struct {
	k *kind
	r *runner
}

func newServiceKind(r *runner) *serviceKind {
	sv := &serviceKind{r: r}
	own := map[string]*ownStep{}
	for _, iface := range hardwaretype.Kinds {
		for name := range flowSteps {
			own[iface+"."+name] = &ownStep{Own: plan.Own{Interface: iface, Step: name}, run: sv.flow(name)}
		}
	}
	processFailed := func(n *store.Node, err error) string {
		return fmt.Sprintf("Failed to process the next service step for node %s: %v", n.UUID, err)
	}
	sv.k = &kind{
		wire:     wire.ServiceStepKind,
		working:  statemachine.Servicing,
		waiting:  statemachine.ServiceWait,
		own:      own,
		plan:     sv.plan,
		finish:   sv.finish,
		fail:     sv.fail,
		describe: plan.Repr,
		stepFailed: func(n *store.Node, s wire.PlannedStep, detail string) string {
			return fmt.Sprintf("Agent returned error for service step %s on node %s : %s.", plan.Repr(s), n.UUID, detail)
		},
		stepError:     func(n *store.Node, _ wire.PlannedStep, err error) string { return processFailed(n, err) },
		processFailed: processFailed,
		loadFailed: func(n *store.Node, err error) string {
			return processFailed(n, fmt.Errorf("get service steps: %w", err))
		},
		timeoutMessage: func(_ *store.Node, info *internalinfo.Info) string {
			step, _ := info.Service.Current()
			return "Timeout reached while servicing the node. Please check if the ramdisk responsible for the servicing is running on the node. Failed on step " +
				plan.Repr(step) + "."
		},
	}
	return sv
}

// needsRamdisk reports whether a service plan has steps of the agent's.
func needsRamdisk(steps []wire.PlannedStep) bool {
	for _, s := range steps {
		if !flowSteps[s.Step] {
			return true
		}
	}
	return false
}

// plan is the service plan: the operator's steps in order, flow steps as
// the conductor's own, the others matched against the agent's.
func (sv *serviceKind) plan(n *store.Node, info *internalinfo.Info) ([]wire.PlannedStep, error) {
	agent := plan.Flatten(info.Service.Cached)
	out := make([]wire.PlannedStep, 0, len(info.UserServiceSteps))
	for _, u := range info.UserServiceSteps {
		if flowSteps[u.Step] {
			p := 0
			out = append(out, wire.PlannedStep{Interface: u.Interface, Step: u.Step, Args: u.Args, Priority: &p})
			continue
		}
		i := plan.IndexOf(agent, u)
		if i < 0 {
			msg := fmt.Sprintf("node %s does not support this service step: %s", n.UUID, plan.Repr(u))
			if impl := hardwaretype.Of(n.Driver, n.Interfaces)[hardwaretype.Field(u.Interface)]; u.Interface != "deploy" && impl != "" {
				msg += fmt.Sprintf(" (out-of-band steps of the %s interface %q are not implemented by this conductor)", u.Interface, impl)
			}
			return nil, lastError(msg)
		}
		p, abortable := agent[i].PriorityValue(), agent[i].IsAbortable()
		s := wire.PlannedStep{Interface: u.Interface, Step: u.Step, Args: u.Args, Priority: &p, Abortable: &abortable}
		if u.Reboots() {
			t := true
			s.RebootRequested = &t
		}
		out = append(out, s)
	}
	return out, nil
}

// flow runs one of Ironic's flow steps.
func (sv *serviceKind) flow(name string) func(ctx context.Context, t *target) (outcome, error) {
	return func(ctx context.Context, t *target) (outcome, error) {
		m := sv.r.machines
		switch name {
		case "power_on":
			return next, m.setPower(ctx, t, power.On)
		case "power_off":
			return next, m.setPower(ctx, t, power.Off)
		case "reboot":
			return next, m.setPower(ctx, t, power.Reboot)
		case "wait":
			step, _ := t.info.Service.Current()
			var args struct {
				Seconds *json.Number `json:"seconds"`
			}
			if len(step.Args) > 0 {
				if err := json.Unmarshal(step.Args, &args); err != nil {
					return 0, lastError(fmt.Sprintf("Invalid arguments of the wait step of node %s: %v", t.node.UUID, err))
				}
			}
			if args.Seconds == nil {
				return 0, lastError(fmt.Sprintf("A wait step without \"seconds\" holds node %s, which this conductor does not support.", t.node.UUID))
			}
			secs, err := args.Seconds.Float64()
			if err != nil || secs < 0 {
				return 0, lastError(fmt.Sprintf("Invalid seconds of the wait step of node %s: %s", t.node.UUID, args.Seconds))
			}
			d := min(time.Duration(secs*float64(time.Second)), maxWaitStep)
			return next, pause.For(ctx, d)
		}
		return 0, lastError(fmt.Sprintf("The %q flow step (service hold) is not supported by this conductor.", name))
	}
}

// start starts or resumes the servicing of a node in "servicing" (a job).
func (sv *serviceKind) start(ctx context.Context, uuid string) {
	n, info, err := sv.r.nodes.read(ctx, uuid)
	if err != nil || n.ProvisionState != statemachine.Servicing {
		sv.r.jobs.logError(uuid, "service", err)
		return
	}
	if i := info.Service.IndexValue(); i >= 0 {
		// Resumed after a restart: the agent's next heartbeat tells where
		// its step stands; the conductor's own steps run again.
		if step, ok := info.Service.Current(); ok && sv.k.agentDriven(step) {
			sv.r.toWait(ctx, sv.k, uuid, nil)
			return
		}
		sv.r.run(ctx, sv.k, uuid, i)
		return
	}
	if !needsRamdisk(info.UserServiceSteps) || info.ServiceDisableRamdisk {
		steps, err := sv.plan(n, info)
		if err == nil {
			_, _, err = sv.r.nodes.update(ctx, uuid, statemachine.Servicing, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
				info.Service.Plan = steps
				return nil
			})
		}
		if err != nil {
			if !isStateChanged(err) {
				sv.fail(ctx, uuid, statemachine.Servicing, errorText(err, n))
			}
			return
		}
		sv.r.log.Info("service steps planned (no ramdisk)", "node", uuid, "steps", plan.Names(steps))
		sv.r.run(ctx, sv.k, uuid, 0)
		return
	}
	n, info, err = sv.r.nodes.update(ctx, uuid, statemachine.Servicing, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		info.ServiceRamdisk = true
		info.BootMode = sv.r.machines.bootMode(n, info)
		return nil
	})
	if err != nil {
		sv.r.jobs.logError(uuid, "service", err)
		return
	}
	t, err := sv.r.machines.targetFor(ctx, n, info)
	if err == nil {
		err = sv.r.machines.bootRamdisk(ctx, t)
	}
	if err != nil {
		if ctx.Err() == nil {
			sv.fail(ctx, uuid, statemachine.Servicing, fmt.Sprintf("Failed to prepare node %s for service: %s", uuid, errorText(err, n)))
		}
		return
	}
	sv.r.toWait(ctx, sv.k, uuid, nil)
}

// errorText is a failure's message: a lastError verbatim, else the error.
func errorText(err error, _ *store.Node) string {
	var le lastError
	if errors.As(err, &le) {
		return string(le)
	}
	return err.Error()
}

// wipeService removes the temporary servicing fields.
func wipeService(info *internalinfo.Info) {
	info.Service.Wipe()
	info.UserServiceSteps = nil
	info.ServiceDisableRamdisk = false
	info.ServiceRamdisk = false
}

// finish ends a servicing whose steps are all done: a node that booted
// the ramdisk is booted back into its instance (Ironic's
// tear_down_inband_service), then it is active again.
func (sv *serviceKind) finish(ctx context.Context, uuid string) {
	n, info, err := sv.r.nodes.read(ctx, uuid)
	if err != nil {
		sv.r.jobs.logError(uuid, "service", err)
		return
	}
	if info.ServiceRamdisk {
		t, err := sv.r.machines.targetFor(ctx, n, info)
		if err == nil && !n.DisablePowerOff {
			err = sv.r.machines.setPower(ctx, t, power.Off)
		}
		if err == nil {
			err = sv.r.machines.bootInstance(ctx, t)
		}
		if err != nil {
			if ctx.Err() == nil {
				sv.fail(ctx, uuid, statemachine.Servicing, fmt.Sprintf("Failed to tear down from service for node %s, reason: %v", uuid, err))
			}
			return
		}
	}
	_, _, err = sv.r.nodes.update(ctx, uuid, statemachine.Servicing, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		wipeService(info)
		info.Agent.WipeTokenAndURL()
		n.LastError = ""
		return sv.r.nodes.advance(n, statemachine.EvDone)
	})
	if err == nil {
		sv.r.log.Info("service complete", "node", uuid)
	}
	sv.r.jobs.logError(uuid, "service", err)
}

// fail moves a servicing node to service failed with msg as its last
// error (Ironic's servicing_error_handler): the agent's logs are
// collected and a node that booted the ramdisk is powered off.
func (sv *serviceKind) fail(ctx context.Context, uuid string, from statemachine.State, msg string) {
	if n, info, err := sv.r.nodes.read(ctx, uuid); err == nil && info.ServiceRamdisk {
		sv.r.agents.collectLogs(ctx, n, info, "service-failed")
	}
	var ramdisk bool
	n, info, err := sv.r.nodes.update(ctx, uuid, from, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		n.LastError = msg
		ramdisk = info.ServiceRamdisk
		wipeService(info)
		info.Agent.WipeTokenAndURL()
		return sv.r.nodes.advance(n, statemachine.EvFail)
	})
	if err != nil {
		sv.r.jobs.logError(uuid, "fail service", err)
		return
	}
	if ramdisk {
		sv.r.machines.powerOffAfterFailure(ctx, n, info)
	}
}

// Service starts servicing an active node with the operator's steps (PUT
// /v1/nodes/{id}/states/provision with target "service", API >= 1.87),
// whose shape the API has checked. disableRamdisk (API >= 1.108) runs
// them without booting the ramdisk.
func (p *Provisioning) Service(ctx context.Context, ident string, steps []wire.PlannedStep, disableRamdisk bool) error {
	if len(steps) == 0 {
		return errors.New("provision: servicing without steps")
	}
	return p.act(ctx, ident, "service", statemachine.EvService, func(_ store.Tx, n *store.Node, info *internalinfo.Info, _ power.Driver) error {
		if n.Maintenance {
			return errMaintenance(n)
		}
		wipeService(info)
		info.UserServiceSteps = steps
		info.ServiceDisableRamdisk = disableRamdisk
		return nil
	})
}

// errServiceAborted is Ironic's last_error of an aborted servicing.
func errServiceAborted(info *internalinfo.Info) string {
	msg := "By request, the service operation was aborted"
	if step, ok := info.Service.Current(); ok {
		msg += " during step " + plan.Repr(step)
	}
	return msg + "."
}
