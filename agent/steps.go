package agent

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"

	"github.com/rivetmetal/rivet/hardware/manager"
	"github.com/rivetmetal/rivet/wire"
)

// jobProgress is where a running step or image write publishes its
// progress: the command's *Job.
type jobProgress = manager.Progress

// stepSet is the commands of one step family: get_<kind>_steps and
// execute_<kind>_step, served by the agent's hardware managers.
type stepSet struct {
	a    *Agent
	kind manager.Kind
}

// commands are get_<kind>_steps (sync) and execute_<kind>_step (async).
func (s stepSet) commands() []Command {
	return []Command{
		{Name: "get_" + string(s.kind) + "_steps", Mode: Sync, Prepare: s.getSteps},
		{Name: "execute_" + string(s.kind) + "_step", Mode: Async, Prepare: s.executeStep},
	}
}

func (s stepSet) getSteps(raw json.RawMessage) (RunFunc, error) {
	var p wire.GetStepsParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ *Job) (any, error) {
		s.a.nodes.setNode(p.Node)
		steps, err := s.a.managers.Steps(ctx, s.kind, manager.NodeInfo{Node: p.Node, Ports: p.Ports})
		if err != nil {
			return nil, err
		}
		return map[string]any{
			string(s.kind) + "_steps":  steps,
			"hardware_manager_version": s.a.managers.Versions(),
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
	name := step.Interface + "." + step.Step
	given := map[manager.Kind]wire.HardwareManagerVersion{manager.Deploy: p.DeployVersion, manager.Clean: p.CleanVersion, manager.Service: p.ServiceVersion}[s.kind]
	if ours := s.a.managers.Versions(); len(given) > 0 && !maps.Equal(given, ours) {
		// Ironic refreshes its steps and calls again (or restarts an
		// automated clean); the args may belong to another agent's step,
		// so they are not checked.
		return func(context.Context, *Job) (any, error) {
			s.a.log.Warn("step from a different hardware manager version; Ironic will refresh its steps and retry",
				"step", name, "given", given, "ours", ours)
			return nil, errVersionMismatch("%s_version %v does not match this agent's %v", s.kind, given, ours)
		}, nil
	}
	call := manager.StepCall{Kind: s.kind, Args: step.Args, NodeInfo: manager.NodeInfo{Node: p.Node, Ports: p.Ports}}
	work, prepErr := s.a.managers.PrepareStep(context.Background(), step.Step, step.Interface, call)
	switch {
	case errors.Is(prepErr, manager.ErrInvalidArgs):
		return nil, ErrInvalidParams("%s: %v", name, prepErr)
	case prepErr != nil && !errors.Is(prepErr, manager.ErrNoManager):
		return nil, prepErr
	}
	return func(ctx context.Context, job *Job) (any, error) {
		res, err := any(nil), prepErr
		if work != nil {
			res, err = work(ctx, job)
		}
		if errors.Is(err, manager.ErrNoManager) {
			s.a.log.Error("no hardware manager has this step; the command fails and Ironic fails the "+string(s.kind)+" operation",
				"step", name, "managers", s.a.managers.Versions())
			return nil, newError("HardwareManagerMethodNotFound", http.StatusNotFound, "No HardwareManager found to handle method", err,
				"Could not find a hardware manager with the %s step %s", s.kind, name)
		}
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

// noArgs is the Prepare of a step that takes no arguments; unexpected
// ones are refused (IPA would fail on an unknown keyword argument).
func noArgs(name string, run manager.StepFunc) func(manager.StepCall) (manager.StepFunc, error) {
	return func(call manager.StepCall) (manager.StepFunc, error) {
		if len(call.Args) > 0 {
			keys := make([]string, 0, len(call.Args))
			for k := range call.Args {
				keys = append(keys, k)
			}
			return nil, ErrInvalidParams("step %s takes no arguments, got %v", name, keys)
		}
		return run, nil
	}
}
