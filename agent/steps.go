package agent

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"

	"github.com/rivetmetal/rivet/wire"
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

// stepKind is one of IPA's three step families. Its name prefixes the
// result keys ("clean_steps", "clean_result", "clean_step") and the
// version parameter ("clean_version").
type stepKind string

const (
	kindDeploy  stepKind = "deploy"
	kindClean   stepKind = "clean"
	kindService stepKind = "service"
)

// stepImpl is an in-band step this agent implements.
type stepImpl struct {
	wire.Step
	// prepare validates the step's args (an error is a 400 answer) and
	// returns the work.
	prepare func(args map[string]any) (RunFunc, error)
}

// stepSet is the steps of one family and the commands that serve them.
type stepSet struct {
	a     *Agent
	kind  stepKind
	steps func() []stepImpl
}

// getCommand is get_<kind>_steps: the step list (sync).
func (s stepSet) getCommand() Command {
	return Command{Name: "get_" + string(s.kind) + "_steps", Mode: Sync, Prepare: s.getSteps}
}

// executeCommand is execute_<kind>_step (async).
func (s stepSet) executeCommand() Command {
	return Command{Name: "execute_" + string(s.kind) + "_step", Mode: Async, Prepare: s.executeStep}
}

func (s stepSet) list() []wire.Step {
	var out []wire.Step
	for _, st := range s.steps() {
		out = append(out, st.Step)
	}
	return out
}

func (s stepSet) getSteps(raw json.RawMessage) (RunFunc, error) {
	var p wire.GetStepsParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ *Job) (any, error) {
		s.a.nodes.setNode(p.Node)
		return map[string]any{
			string(s.kind) + "_steps":  map[string][]wire.Step{hardwareManagerClass: s.list()},
			"hardware_manager_version": managerVersion(),
		}, nil
	}, nil
}

// executeParams are the params of execute_<kind>_step, with the step kept
// raw so that a malformed one is reported precisely.
type executeParams struct {
	Step           json.RawMessage             `json:"step"`
	Node           map[string]any              `json:"node"`
	Ports          []map[string]any            `json:"ports"`
	DeployVersion  wire.HardwareManagerVersion `json:"deploy_version"`
	CleanVersion   wire.HardwareManagerVersion `json:"clean_version"`
	ServiceVersion wire.HardwareManagerVersion `json:"service_version"`
}

// parseStep validates a step dict: an object with non-empty string "step"
// and "interface", an integer "priority" if given, and "args" an object if
// given.
func parseStep(raw json.RawMessage) (wire.Step, error) {
	var st wire.Step
	if len(raw) == 0 || string(raw) == "null" {
		return st, ErrInvalidParams("the step is missing")
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, ErrInvalidParams("malformed step %s: %v", shorten(raw), err)
	}
	if st.Step == "" || st.Interface == "" {
		return st, ErrInvalidParams("malformed step %s: it needs both 'step' and 'interface'", shorten(raw))
	}
	return st, nil
}

// shorten keeps error messages about bad input readable.
func shorten(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func (s stepSet) executeStep(raw json.RawMessage) (RunFunc, error) {
	var p executeParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	step, err := parseStep(p.Step)
	if err != nil {
		return nil, err
	}
	s.a.nodes.setNode(p.Node)
	given := map[stepKind]wire.HardwareManagerVersion{kindDeploy: p.DeployVersion, kindClean: p.CleanVersion, kindService: p.ServiceVersion}[s.kind]
	if len(given) > 0 && !maps.Equal(given, managerVersion()) {
		// Ironic refreshes its steps and calls again (or restarts an
		// automated clean); the args may belong to another agent's step,
		// so they are not checked.
		return func(context.Context, *Job) (any, error) {
			s.a.log.Warn("step from a different hardware manager version; Ironic will refresh its steps and retry",
				"step", step.Interface+"."+step.Step, "given", given, "ours", managerVersion())
			return nil, errVersionMismatch("%s_version %v does not match this agent's %v", s.kind, given, managerVersion())
		}, nil
	}
	var work RunFunc
	for _, impl := range s.steps() {
		if impl.Step.Step == step.Step && impl.Interface == step.Interface {
			if work, err = impl.prepare(step.Args); err != nil {
				return nil, err
			}
			break
		}
	}
	return func(ctx context.Context, job *Job) (any, error) {
		if work == nil {
			s.a.log.Error("unknown step; the command fails and Ironic fails the "+string(s.kind)+" operation",
				"step", step.Interface+"."+step.Step, "known", s.list())
			return nil, newError("HardwareManagerMethodNotFound", http.StatusNotFound, "No HardwareManager found to handle method", nil,
				"Could not find a hardware manager with the %s step %s.%s", s.kind, step.Interface, step.Step)
		}
		res, err := work(ctx, job)
		if err != nil {
			return nil, err
		}
		encoded, err := encodeResult(step.Step, res)
		if err != nil {
			return nil, err
		}
		if encoded == nil {
			encoded = json.RawMessage("null")
		}
		return map[string]any{string(s.kind) + "_result": encoded, string(s.kind) + "_step": step}, nil
	}, nil
}

// decodeArgs re-decodes a step's args into v, a 400 on mismatch.
func decodeArgs(step string, args map[string]any, v any) error {
	b, err := json.Marshal(args)
	if err != nil {
		return ErrInvalidParams("%s: args: %v", step, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return ErrInvalidParams("%s: malformed args %s: %v", step, shorten(b), err)
	}
	return nil
}

// noArgs is the prepare of a step that takes no arguments; unexpected
// ones are refused (IPA would fail on an unknown keyword argument).
func noArgs(name string, run RunFunc) func(map[string]any) (RunFunc, error) {
	return func(args map[string]any) (RunFunc, error) {
		if len(args) > 0 {
			keys := make([]string, 0, len(args))
			for k := range args {
				keys = append(keys, k)
			}
			return nil, ErrInvalidParams("step %s takes no arguments, got %v", name, keys)
		}
		return run, nil
	}
}

// stepOf builds a step with IPA's defaults for the flags.
func stepOf(name, iface string, priority int, abortable bool) wire.Step {
	st := wire.Step{Step: name, Interface: iface, Priority: priority}
	if abortable {
		t := true
		st.Abortable = &t
	}
	return st
}
