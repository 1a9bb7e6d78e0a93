// Package plan chooses and orders the steps of a deploy or a cleaning as
// Ironic's conductor/steps.py does: highest priority first with ties
// broken by the interface's rank, the agent's deploy steps slotted in
// around the conductor's own, automated cleaning from priorities and
// manual cleaning from the operator's list. It also renders a step as the
// Python dictionary Ironic's messages show.
package plan

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/rivetmetal/rivet/wire"
)

// Interface ranks that break priority ties (Ironic's
// DEPLOYING_INTERFACE_PRIORITY and CLEANING_INTERFACE_PRIORITY).
var (
	DeployInterfaceRank = map[string]int{"power": 8, "management": 7, "deploy": 6, "bios": 5,
		"raid": 4, "boot": 3, "storage": 2, "network": 1}
	CleanInterfaceRank = map[string]int{"power": 5, "management": 4, "deploy": 3, "bios": 2, "raid": 1}
)

// Sort orders steps as Ironic runs them: highest priority first, ties
// broken by the interface's rank, otherwise kept in order.
func Sort(steps []wire.PlannedStep, rank map[string]int) {
	sort.SliceStable(steps, func(i, j int) bool {
		pi, pj := steps[i].PriorityValue(), steps[j].PriorityValue()
		if pi != pj {
			return pi > pj
		}
		return rank[steps[i].Interface] > rank[steps[j].Interface]
	})
}

// Flatten lists the agent's cached steps, interfaces in name order.
func Flatten(byInterface map[string][]wire.PlannedStep) []wire.PlannedStep {
	ifaces := make([]string, 0, len(byInterface))
	for k := range byInterface {
		ifaces = append(ifaces, k)
	}
	sort.Strings(ifaces)
	var out []wire.PlannedStep
	for _, k := range ifaces {
		out = append(out, byInterface[k]...)
	}
	return out
}

// Cache groups the agent's reported steps (by hardware manager, managers
// in name order) by interface, each marked requires_ramdisk, as Ironic
// caches them.
func Cache(byManager map[string][]wire.Step) (map[string][]wire.PlannedStep, error) {
	managers := make([]string, 0, len(byManager))
	for m := range byManager {
		managers = append(managers, m)
	}
	sort.Strings(managers)
	out := map[string][]wire.PlannedStep{}
	for _, m := range managers {
		for _, s := range byManager[m] {
			p, err := s.Planned()
			if err != nil {
				return nil, err
			}
			out[p.Interface] = append(out[p.Interface], p)
		}
	}
	return out, nil
}

// Own is one of the conductor's own steps with its priority.
type Own struct {
	Interface, Step string
	Priority        int
}

// Planned is the step as Ironic plans its own steps: "argsinfo": null,
// no reboot_requested.
func (o Own) Planned() wire.PlannedStep {
	p := o.Priority
	return wire.PlannedStep{Step: o.Step, Priority: &p, Interface: o.Interface, ArgsInfo: json.RawMessage("null")}
}

// WithAgentSteps is a plan made of the conductor's own steps and the
// agent's cached steps whose priority is above 0 and below ceiling (the
// priority of the step that boots the ramdisk: an agent step cannot run
// before its agent is up), ordered by Sort. An own step shadows an agent
// step of the same name. The agent steps left out for their priority are
// returned apart.
func WithAgentSteps(own []Own, cached map[string][]wire.PlannedStep, ceiling int, rank map[string]int) (plan, tooEarly []wire.PlannedStep) {
	shadow := map[string]bool{}
	for _, o := range own {
		plan = append(plan, o.Planned())
		shadow[o.Interface+"."+o.Step] = true
	}
	for _, s := range Flatten(cached) {
		p := s.PriorityValue()
		if p <= 0 || shadow[s.Name()] {
			continue
		}
		if p >= ceiling {
			tooEarly = append(tooEarly, s)
			continue
		}
		c := wire.PlannedStep{Step: s.Step, Priority: &p, Interface: s.Interface, Args: s.Args, RequiresRamdisk: true}
		if s.Reboots() {
			t := true
			c.RebootRequested = &t
		}
		plan = append(plan, c)
	}
	Sort(plan, rank)
	return plan, tooEarly
}

// Automated is an automated cleaning plan: every cached agent step whose
// priority, after overrides (keyed "<interface>.<step>"), is above 0,
// ordered by Sort.
func Automated(cached map[string][]wire.PlannedStep, overrides map[string]int, rank map[string]int) []wire.PlannedStep {
	plan := []wire.PlannedStep{}
	for _, s := range Flatten(cached) {
		p := s.PriorityValue()
		if o, ok := overrides[s.Name()]; ok {
			p = o
		}
		if p <= 0 {
			continue
		}
		s.Priority = &p
		plan = append(plan, s)
	}
	Sort(plan, rank)
	return plan
}

// UnsupportedStepError names an operator's step the agent does not have.
type UnsupportedStepError struct{ Step wire.PlannedStep }

// Error implements error.
func (e *UnsupportedStepError) Error() string { return "unsupported step " + Repr(e.Step) }

// Manual is a manual cleaning plan: the operator's steps in their order,
// each matched against the agent's (which gives its priority and
// abortable flag), with the operator's args and reboot_requested. A step
// the agent does not have is an *UnsupportedStepError.
func Manual(user []wire.PlannedStep, cached map[string][]wire.PlannedStep) ([]wire.PlannedStep, error) {
	agent := Flatten(cached)
	plan := make([]wire.PlannedStep, 0, len(user))
	for _, u := range user {
		var found *wire.PlannedStep
		for i := range agent {
			if agent[i].Same(u) {
				found = &agent[i]
				break
			}
		}
		if found == nil {
			return nil, &UnsupportedStepError{Step: u}
		}
		p, abortable := found.PriorityValue(), found.IsAbortable()
		s := wire.PlannedStep{Interface: u.Interface, Step: u.Step, Abortable: &abortable, Priority: &p, Args: u.Args}
		if u.Reboots() {
			t := true
			s.RebootRequested = &t
		}
		plan = append(plan, s)
	}
	return plan, nil
}

// WithUser applies the user's deploy steps (deploy_steps of "active", each
// with a priority) to a plan, as Ironic does: a user step named like a
// planned step sets its priority and, when given, its args (priority 0
// drops it); any other user step is one of the agent's, added with the
// user's priority and args once the agent's steps (cached, nil when not
// fetched yet) show it has it — before that it is planned on trust, and
// checked when they are. A step the agent does not have is an
// *UnsupportedStepError. An agent step must come after the step that
// boots the ramdisk (priority below ceiling).
func WithUser(planned, user []wire.PlannedStep, cached map[string][]wire.PlannedStep, ceiling int, rank map[string]int) ([]wire.PlannedStep, error) {
	out := append([]wire.PlannedStep(nil), planned...)
	agent := Flatten(cached)
	for _, u := range user {
		p := u.PriorityValue()
		if i := IndexOf(out, u); i >= 0 {
			if p == 0 {
				out = append(out[:i], out[i+1:]...)
				continue
			}
			out[i].Priority = &p
			if len(u.Args) > 0 && string(u.Args) != "null" {
				out[i].Args = u.Args
			}
			continue
		}
		if p == 0 {
			continue
		}
		if cached != nil && IndexOf(agent, u) < 0 {
			return nil, &UnsupportedStepError{Step: u}
		}
		if p >= ceiling {
			return nil, fmt.Errorf("deploy step %s runs in the agent and needs a priority below %d, not %d", u.Name(), ceiling, p)
		}
		out = append(out, wire.PlannedStep{Interface: u.Interface, Step: u.Step, Priority: &p, Args: u.Args, RequiresRamdisk: true})
	}
	Sort(out, rank)
	return out, nil
}

// Names lists the steps as "<interface>.<step>".
func Names(steps []wire.PlannedStep) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name()
	}
	return out
}

// IndexOf is the index of the step named like s in steps, -1 if none.
func IndexOf(steps []wire.PlannedStep, s wire.PlannedStep) int {
	for i := range steps {
		if steps[i].Same(s) {
			return i
		}
	}
	return -1
}

// Repr renders a step as Ironic's messages show it (a Python dict): the
// keys it has, in the order Ironic writes them.
func Repr(s wire.PlannedStep) string {
	if s.Step == "" && s.Interface == "" {
		return "{}"
	}
	var b strings.Builder
	b.WriteByte('{')
	item := func(k, v string) {
		if b.Len() > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "'%s': %s", k, v)
	}
	item("step", pyValue(s.Step))
	if s.Priority != nil {
		item("priority", strconv.Itoa(*s.Priority))
	}
	item("interface", pyValue(s.Interface))
	if len(s.Args) > 0 {
		item("args", pyRaw(s.Args))
	}
	if s.RebootRequested != nil {
		item("reboot_requested", pyValue(*s.RebootRequested))
	}
	if s.Abortable != nil {
		item("abortable", pyValue(*s.Abortable))
	}
	if s.RequiresRamdisk {
		item("requires_ramdisk", "True")
	}
	if len(s.ArgsInfo) > 0 {
		item("argsinfo", pyRaw(s.ArgsInfo))
	}
	b.WriteByte('}')
	return b.String()
}

func pyRaw(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	return pyValue(v)
}

// pyValue renders a JSON value as Python's repr does.
func pyValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return "'" + x + "'"
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("'%s': %s", k, pyValue(x[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = pyValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}
