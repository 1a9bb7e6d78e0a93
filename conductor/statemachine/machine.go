package statemachine

import (
	"fmt"
	"slices"
	"sort"
)

// Transition is one allowed move: in state From, event Event leads to To.
// Target, when set, overrides the default target of To for this move
// (Ironic's process_event(..., target_state=...)): manual cleaning heads for
// manageable, not available.
type Transition struct {
	From   State
	Event  Event
	To     State
	Target State
}

// transitions is the whole machine, one line per allowed move: Ironic's
// state machine (ironic/common/states.py) for every flow Rivet drives, plus
// abort from wait call-back (newer Ironic).
var transitions = []Transition{
	// Enrollment and verification.
	{From: Enroll, Event: EvManage, To: Verifying},
	{From: Verifying, Event: EvDone, To: Manageable},
	{From: Verifying, Event: EvFail, To: Enroll},

	// manageable -> available through automated cleaning (which may be
	// disabled: cleaning then ends at once).
	{From: Manageable, Event: EvProvide, To: Cleaning},
	{From: Cleaning, Event: EvDone, To: Available},
	// Manual cleaning: manageable -> cleaning ... -> manageable.
	{From: Manageable, Event: EvClean, To: Cleaning, Target: Manageable},
	{From: Cleaning, Event: EvManage, To: Manageable},
	// Cleaning waits for the agent, may fail or be aborted.
	{From: Cleaning, Event: EvWait, To: CleanWait},
	{From: CleanWait, Event: EvResume, To: Cleaning},
	{From: Cleaning, Event: EvFail, To: CleanFailed},
	{From: CleanWait, Event: EvFail, To: CleanFailed},
	{From: CleanWait, Event: EvAbort, To: CleanFailed},
	{From: CleanFailed, Event: EvManage, To: Manageable},
	{From: Available, Event: EvManage, To: Manageable},

	// In-band inspection: the ramdisk posts its inventory.
	{From: Manageable, Event: EvInspect, To: Inspecting},
	{From: Inspecting, Event: EvWait, To: InspectWait},
	{From: InspectWait, Event: EvResume, To: Inspecting},
	{From: Inspecting, Event: EvDone, To: Manageable},
	{From: InspectWait, Event: EvDone, To: Manageable},
	{From: Inspecting, Event: EvFail, To: InspectFail},
	{From: InspectWait, Event: EvFail, To: InspectFail},
	{From: InspectWait, Event: EvAbort, To: InspectFail},
	{From: InspectFail, Event: EvManage, To: Manageable},
	{From: InspectFail, Event: EvInspect, To: Inspecting},

	// Adoption: take over a node that already runs its instance.
	{From: Manageable, Event: EvAdopt, To: Adopting},
	{From: Adopting, Event: EvDone, To: Active},
	{From: Adopting, Event: EvFail, To: AdoptFailed},
	{From: AdoptFailed, Event: EvAdopt, To: Adopting},
	{From: AdoptFailed, Event: EvManage, To: Manageable},

	// Deploy.
	{From: Available, Event: EvDeploy, To: Deploying},
	{From: Deploying, Event: EvWait, To: DeployWait},
	{From: DeployWait, Event: EvResume, To: Deploying},
	{From: Deploying, Event: EvDone, To: Active},
	{From: Deploying, Event: EvFail, To: DeployFailed},
	{From: DeployWait, Event: EvFail, To: DeployFailed},
	{From: DeployWait, Event: EvAbort, To: DeployFailed},
	{From: DeployFailed, Event: EvDeploy, To: Deploying},
	{From: DeployFailed, Event: EvRebuild, To: Deploying},
	{From: Active, Event: EvRebuild, To: Deploying},
	{From: Error, Event: EvRebuild, To: Deploying},

	// Undeploy: deleting -> cleaning -> available.
	{From: Active, Event: EvDelete, To: Deleting},
	{From: DeployWait, Event: EvDelete, To: Deleting},
	{From: DeployFailed, Event: EvDelete, To: Deleting},
	{From: Error, Event: EvDelete, To: Deleting},
	{From: Deleting, Event: EvClean, To: Cleaning},
	{From: Deleting, Event: EvFail, To: Error},

	// Servicing: steps run on an active node, which stays active.
	{From: Active, Event: EvService, To: Servicing},
	{From: Servicing, Event: EvWait, To: ServiceWait},
	{From: ServiceWait, Event: EvResume, To: Servicing},
	{From: Servicing, Event: EvDone, To: Active},
	{From: Servicing, Event: EvFail, To: ServiceFail},
	{From: ServiceWait, Event: EvFail, To: ServiceFail},
	{From: ServiceWait, Event: EvAbort, To: ServiceFail},
	{From: ServiceWait, Event: EvDelete, To: Deleting},
	{From: ServiceFail, Event: EvService, To: Servicing},
	{From: ServiceFail, Event: EvAbort, To: Active},
	{From: ServiceFail, Event: EvDelete, To: Deleting},
}

// targets gives every transient state its stable targets (Ironic's
// add_state(..., target=...)): the first is the default, the others are
// targets a transition may set instead and that later moves keep. Stable
// states have none.
var targets = map[State][]State{
	Verifying:   {Manageable},
	Cleaning:    {Available, Manageable},
	CleanWait:   {Available, Manageable},
	Inspecting:  {Manageable},
	InspectWait: {Manageable},
	Adopting:    {Active},
	Deploying:   {Active},
	DeployWait:  {Active},
	Deleting:    {Available},
	Servicing:   {Active},
	ServiceWait: {Active},
}

// stable are the states a node rests in. Rivet, unlike Ironic, treats the
// failure states as stable (no target): a client waiting for a target
// stops on them, and an operator moves the node on.
var stable = setOf(Enroll, Manageable, Available, Active, DeployFailed,
	CleanFailed, InspectFail, AdoptFailed, ServiceFail, Error)

// Verbs maps the target of PUT /v1/nodes/{id}/states/provision onto an
// event.
var Verbs = map[string]Event{
	"manage":   EvManage,
	"provide":  EvProvide,
	"clean":    EvClean,
	"inspect":  EvInspect,
	"adopt":    EvAdopt,
	"abort":    EvAbort,
	"active":   EvDeploy,
	"deploy":   EvDeploy,
	"rebuild":  EvRebuild,
	"deleted":  EvDelete,
	"undeploy": EvDelete,
	"service":  EvService,
}

// InvalidTransitionError is returned (wrapped) when an event is not allowed in
// a state.
type InvalidTransitionError struct {
	From  State
	Event Event
}

// Error implements error.
func (e *InvalidTransitionError) Error() string {
	return fmt.Sprintf("event %q is not allowed in provision state %q", e.Event, e.From)
}

// Move is the result of a transition: the new state and its target.
type Move struct {
	From   State
	To     State
	Target State
}

// Next returns the move event ev makes from state from, with the default
// target of the new state (or the transition's own target).
func Next(from State, ev Event) (Move, error) { return Step(from, NoState, ev) }

// Step returns the move event ev makes from state from when the node
// currently heads for target: the transition's own target if it has one,
// else the current target when the new state accepts it (manual cleaning
// keeps heading for manageable through clean wait), else the new state's
// default target. A stable new state has no target.
func Step(from, target State, ev Event) (Move, error) {
	for _, t := range transitions {
		if t.From != from || t.Event != ev {
			continue
		}
		m := Move{From: from, To: t.To}
		switch allowed := targets[t.To]; {
		case len(allowed) == 0:
		case t.Target != NoState:
			m.Target = t.Target
		case target != NoState && slices.Contains(allowed, target):
			m.Target = target
		default:
			m.Target = allowed[0]
		}
		return m, nil
	}
	return Move{}, &InvalidTransitionError{From: from, Event: ev}
}

// Allowed reports whether event ev is actionable in state s.
func Allowed(s State, ev Event) bool {
	_, err := Next(s, ev)
	return err == nil
}

// IsStable reports whether s is a stable state.
func IsStable(s State) bool { return stable[s] }

// Target returns the default stable target of state s (NoState for stable
// states).
func Target(s State) State {
	if t := targets[s]; len(t) > 0 {
		return t[0]
	}
	return NoState
}

// Targets returns every stable target state s may head for (none for
// stable states).
func Targets(s State) []State { return slices.Clone(targets[s]) }

// Transitions returns a copy of the transition table.
func Transitions() []Transition { return slices.Clone(transitions) }

// States returns every state that appears in the table, sorted.
func States() []State {
	seen := map[State]bool{}
	for _, t := range transitions {
		seen[t.From] = true
		seen[t.To] = true
	}
	out := make([]State, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
