package manager

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rivetmetal/rivet/wire"
)

// Kind is one of IPA's three step families.
type Kind string

// Step kinds; each names its command extension and result keys
// ("clean_steps", "clean_result").
const (
	Deploy  Kind = "deploy"
	Clean   Kind = "clean"
	Service Kind = "service"
)

// NodeInfo is what Ironic sends about the node with every step call: the
// node as a dict (secrets masked; the deploy steps' configdrive is not)
// and its ports.
type NodeInfo struct {
	Node  map[string]any
	Ports []map[string]any
}

// StepCall is one call of a step: its arguments (the step's "args", to
// be checked by Prepare) and the node.
type StepCall struct {
	Kind Kind
	Args map[string]any
	NodeInfo
}

// Progress is where a running step publishes its progress; it shows in
// the command's result while the step runs.
type Progress interface {
	SetProgress(wire.Progress)
	SetDiskProgress(wire.DiskProgress)
}

// StepFunc does a step's work. Its result becomes the <kind>_result: nil
// for null, a string (sent as {"result": …}), or any JSON-marshalable
// value. ErrNotHandled hands the step to the next manager that offers it.
type StepFunc func(ctx context.Context, p Progress) (any, error)

// Step is a step a manager offers, with the function that runs it.
type Step struct {
	// Name and Interface identify the step ("erase_devices", "deploy").
	Name      string
	Interface string
	// Priority orders automated steps (highest first); 0 runs the step
	// only when asked for (manual cleaning, deploy templates, servicing).
	Priority int
	// Abortable says the step may be stopped while it runs.
	Abortable bool
	// RebootRequested asks Ironic to reboot the node when the step ends.
	RebootRequested bool
	// ArgsInfo describes the step's arguments as IPA's argsinfo does:
	// name → {"description": …, "required": …}.
	ArgsInfo map[string]any
	// Prepare checks the call's arguments before the command starts and
	// returns the work. Its error is the caller's answer at once (a 400
	// when it wraps ErrInvalidArgs), except ErrNotHandled, which hands the
	// step to the next manager.
	Prepare func(call StepCall) (StepFunc, error)
}

// Wire is the step as get_*_steps reports it; abortable is sent only when
// true, as IPA leaves it out of its deploy steps.
func (s Step) Wire() wire.Step {
	w := wire.Step{Step: s.Name, Interface: s.Interface, Priority: s.Priority, RebootRequested: s.RebootRequested, ArgsInfo: s.ArgsInfo}
	if s.Abortable {
		t := true
		w.Abortable = &t
	}
	return w
}

// StepProvider is a manager that offers steps.
type StepProvider interface {
	// Steps lists the manager's steps of kind for the node. ErrNotHandled
	// means none for this node; any other error fails get_*_steps.
	Steps(ctx context.Context, kind Kind, node NodeInfo) ([]Step, error)
}

// offer is one manager's steps of a kind, by name.
type offer struct {
	member
	steps []Step
}

// offers asks every StepProvider for its steps of kind, most supported
// first; ok is false when none answered.
func (s *Set) offers(ctx context.Context, kind Kind, node NodeInfo) ([]offer, bool, error) {
	var out []offer
	answered := false
	for _, m := range s.managers {
		p, ok := m.m.(StepProvider)
		if !ok {
			continue
		}
		steps, err := p.Steps(ctx, kind, node)
		if errors.Is(err, ErrNotHandled) {
			s.log.Debug("hardware manager offers no steps for this node", "manager", m.Name, "kind", string(kind))
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s steps of hardware manager %s: %w", kind, m.Name, err)
		}
		answered = true
		out = append(out, offer{member: m, steps: steps})
	}
	return out, answered, nil
}

// Steps is get_<kind>_steps: every manager's steps of kind, one per step
// name. Where managers offer the same name, the step of the most
// supported manager wins, then the higher priority, then the manager
// class that sorts first (IPA's deduplicate_steps). The result is keyed by
// manager class; each manager's steps keep the order it listed them in.
func (s *Set) Steps(ctx context.Context, kind Kind, node NodeInfo) (map[string][]wire.Step, error) {
	offers, answered, err := s.offers(ctx, kind, node)
	if err != nil {
		return nil, err
	}
	if !answered {
		return nil, fmt.Errorf("%s steps: %w", kind, ErrNoManager)
	}
	type candidate struct {
		level    Level
		priority int
		class    string
	}
	best := map[string]candidate{}
	for _, o := range offers {
		for _, st := range o.steps {
			c := candidate{o.Level, st.Priority, o.Class}
			b, seen := best[st.Name]
			if !seen || cmp.Or(cmp.Compare(b.level, c.level), cmp.Compare(b.priority, c.priority), cmp.Compare(c.class, b.class)) < 0 {
				best[st.Name] = c
			}
		}
	}
	out := map[string][]wire.Step{}
	for _, o := range offers {
		for _, st := range o.steps {
			if b := best[st.Name]; b.class == o.Class && b.priority == st.Priority && !slices.ContainsFunc(out[o.Class], func(w wire.Step) bool { return w.Step == st.Name }) {
				out[o.Class] = append(out[o.Class], st.Wire())
			}
		}
	}
	return out, nil
}

// PrepareStep finds the managers offering the step of kind named name on
// interface iface, most supported first, and prepares it with the first
// whose Prepare does not answer ErrNotHandled. The StepFunc it returns
// runs that manager's step; when the step itself answers ErrNotHandled,
// the next manager offering it is prepared and run. An error wrapping
// ErrNoManager means no manager offers (or, from the StepFunc, handled)
// the step; any other error is Prepare's.
func (s *Set) PrepareStep(ctx context.Context, name, iface string, call StepCall) (StepFunc, error) {
	offers, _, err := s.offers(ctx, call.Kind, call.NodeInfo)
	if err != nil {
		return nil, err
	}
	var cands []candidateStep
	for _, o := range offers {
		for _, st := range o.steps {
			if st.Name == name && st.Interface == iface {
				cands = append(cands, candidateStep{o.member, st})
				break
			}
		}
	}
	notFound := fmt.Errorf("%s step %s.%s: %w", call.Kind, iface, name, ErrNoManager)
	for i, c := range cands {
		fn, err := c.prepare(call)
		if errors.Is(err, ErrNotHandled) {
			s.log.Debug("hardware manager passes the step on", "manager", c.Name, "step", iface+"."+name)
			continue
		}
		if err != nil {
			return nil, err
		}
		return s.runFrom(cands[i+1:], c, fn, call, notFound), nil
	}
	return nil, notFound
}

type candidateStep struct {
	member
	step Step
}

func (c candidateStep) prepare(call StepCall) (StepFunc, error) {
	if c.step.Prepare == nil {
		return nil, fmt.Errorf("hardware manager %s: step %s.%s has no Prepare", c.Name, c.step.Interface, c.step.Name)
	}
	return c.step.Prepare(call)
}

// runFrom runs fn (prepared by cur) and, while the step answers
// ErrNotHandled, the next candidates.
func (s *Set) runFrom(rest []candidateStep, cur candidateStep, fn StepFunc, call StepCall, notFound error) StepFunc {
	return func(ctx context.Context, p Progress) (any, error) {
		for {
			s.log.Info("running step", "manager", cur.Name, "kind", string(call.Kind), "step", cur.step.Interface+"."+cur.step.Name)
			res, err := fn(ctx, p)
			if !errors.Is(err, ErrNotHandled) {
				return res, err
			}
			s.log.Info("hardware manager passes the step on", "manager", cur.Name, "step", cur.step.Interface+"."+cur.step.Name)
			for {
				if len(rest) == 0 {
					return nil, notFound
				}
				cur, rest = rest[0], rest[1:]
				fn, err = cur.prepare(call)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrNotHandled) {
					return nil, err
				}
			}
		}
	}
}
