package agent

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"

	"github.com/rivetmetal/rivet/agent/wire"
)

// Hardware manager identity reported with the steps. Ironic hands the
// version back with every step call; a mismatch means the agent changed
// between get_*_steps and execute_*_step.
const (
	hardwareManagerClass   = "GenericHardwareManager"
	hardwareManagerName    = "generic_hardware_manager"
	hardwareManagerVersion = "1.2"
)

func managerVersion() wire.HardwareManagerVersion {
	return wire.HardwareManagerVersion{hardwareManagerName: hardwareManagerVersion}
}

// deploy is IPA's deploy extension: deploy steps.
type deploy struct{ a *Agent }

func (deploy) Name() string { return "deploy" }

func (d deploy) Commands() []Command {
	return []Command{
		{Name: "get_deploy_steps", Mode: Sync, Prepare: d.getSteps},
		{Name: "execute_deploy_step", Mode: Async, Prepare: d.executeStep},
	}
}

// deployStep is an in-band deploy step this agent implements.
type deployStep struct {
	wire.Step
	// prepare decodes and validates the step's args.
	prepare func(args json.RawMessage) (RunFunc, error)
}

func (d deploy) steps() []deployStep {
	return []deployStep{
		{Step: wire.Step{Step: "write_image", Interface: "deploy", Priority: 0}, prepare: d.writeImageStep},
	}
}

func (d deploy) getSteps(raw json.RawMessage) (RunFunc, error) {
	var p wire.GetStepsParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ *Job) (any, error) {
		d.a.nodes.setNode(p.Node)
		var list []wire.Step
		for _, s := range d.steps() {
			list = append(list, s.Step)
		}
		return wire.DeploySteps{
			DeploySteps:            map[string][]wire.Step{hardwareManagerClass: list},
			HardwareManagerVersion: managerVersion(),
		}, nil
	}, nil
}

func (d deploy) executeStep(raw json.RawMessage) (RunFunc, error) {
	var p wire.ExecuteStepParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Step.Step == "" || p.Step.Interface == "" {
		return nil, ErrInvalidParams("step must have both 'step' and 'interface'")
	}
	d.a.nodes.setNode(p.Node)
	if p.DeployVersion != nil && !maps.Equal(p.DeployVersion, managerVersion()) {
		// Ironic refreshes its steps and calls again; the step's args may
		// belong to another agent's steps, so they are not checked.
		return func(context.Context, *Job) (any, error) {
			return nil, errVersionMismatch("deploy_version %v does not match this agent's %v", p.DeployVersion, managerVersion())
		}, nil
	}
	var impl *deployStep
	for _, s := range d.steps() {
		if s.Step.Step == p.Step.Step && s.Interface == p.Step.Interface {
			impl = &s
			break
		}
	}
	var work RunFunc
	if impl != nil {
		args, _ := json.Marshal(p.Step.Args)
		var err error
		if work, err = impl.prepare(args); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, job *Job) (any, error) {
		if work == nil {
			return nil, newError("HardwareManagerMethodNotFound", http.StatusNotFound, "No HardwareManager found to handle method", nil,
				"Could not find a hardware manager with the deploy step %s.%s", p.Step.Interface, p.Step.Step)
		}
		res, err := work(ctx, job)
		if err != nil {
			return nil, err
		}
		encoded, err := encodeResult(p.Step.Step, res)
		if err != nil {
			return nil, err
		}
		if encoded == nil {
			encoded = json.RawMessage("null")
		}
		return wire.DeployStepResult{DeployResult: encoded, DeployStep: p.Step}, nil
	}, nil
}

// writeImageStep is the in-band write_image step: the same work as
// standby.prepare_image, whose result it reports.
func (d deploy) writeImageStep(raw json.RawMessage) (RunFunc, error) {
	var args wire.WriteImageArgs
	if err := decodeParams(raw, &args); err != nil {
		return nil, err
	}
	if args.ImageInfo.ID == "" && len(args.ImageInfo.URLs) == 0 {
		return nil, ErrInvalidParams("write_image needs args.image_info")
	}
	if err := validateImageInfo(&args.ImageInfo, args.Configdrive); err != nil {
		return nil, err
	}
	return func(ctx context.Context, job *Job) (any, error) {
		// IPA's step calls prepare_image and reports its result.
		return d.a.writeImage(ctx, job, args.ImageInfo)
	}, nil
}
