package statemachine

import (
	"fmt"
	"sort"
)

// Transition is one allowed move: in state From, event Event leads to To.
type Transition struct {
	From  State
	Event Event
	To    State
}

// transitions is the whole machine, one line per allowed move (Ironic's
// state_machine.py, reduced to the flows Rivet implements).
var transitions = []Transition{
	// Enrollment and verification.
	{Enroll, EvManage, Verifying},
	{Verifying, EvDone, Manageable},
	{Verifying, EvFail, Enroll},

	// manageable -> available (cleaning; automated cleaning may be off).
	{Manageable, EvProvide, Cleaning},
	{Cleaning, EvDone, Available},
	{Cleaning, EvWait, CleanWait},
	{CleanWait, EvResume, Cleaning},
	{Cleaning, EvFail, CleanFailed},
	{CleanWait, EvFail, CleanFailed},
	{CleanFailed, EvManage, Manageable},
	{Available, EvManage, Manageable},

	// Deploy.
	{Available, EvDeploy, Deploying},
	{Deploying, EvWait, DeployWait},
	{DeployWait, EvResume, Deploying},
	{Deploying, EvDone, Active},
	{Deploying, EvFail, DeployFailed},
	{DeployWait, EvFail, DeployFailed},
	{DeployFailed, EvDeploy, Deploying},

	// Undeploy.
	{Active, EvDelete, Deleting},
	{DeployWait, EvDelete, Deleting},
	{DeployFailed, EvDelete, Deleting},
	{Error, EvDelete, Deleting},
	{Deleting, EvClean, Cleaning},
	{Deleting, EvError, Error},
}

// targets gives every transient state its stable target (Ironic's
// add_state(..., target=...)). Stable states have none.
var targets = map[State]State{
	Verifying:  Manageable,
	Cleaning:   Available,
	CleanWait:  Available,
	Deploying:  Active,
	DeployWait: Active,
	Deleting:   Available,
}

// stable are the states a node rests in.
var stable = setOf(Enroll, Manageable, Available, Active, DeployFailed,
	CleanFailed, Error)

// Verbs maps the target of PUT /v1/nodes/{id}/states/provision onto an
// event.
var Verbs = map[string]Event{
	"manage":   EvManage,
	"provide":  EvProvide,
	"active":   EvDeploy,
	"deploy":   EvDeploy,
	"deleted":  EvDelete,
	"undeploy": EvDelete,
}

// VerbMinVersion is the API minor version that introduced a verb (Ironic's
// MIN_VERB_VERSIONS).
var VerbMinVersion = map[string]int{
	"manage":   4,
	"provide":  4,
	"deploy":   73,
	"undeploy": 73,
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

// Next returns the move event ev makes from state from.
func Next(from State, ev Event) (Move, error) {
	for _, t := range transitions {
		if t.From == from && t.Event == ev {
			return Move{From: from, To: t.To, Target: targets[t.To]}, nil
		}
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

// Target returns the stable target of state s (NoState for stable states).
func Target(s State) State { return targets[s] }

// Transitions returns a copy of the transition table.
func Transitions() []Transition { return append([]Transition(nil), transitions...) }

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
