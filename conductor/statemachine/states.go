// Package statemachine is the conductor's provision state machine: Ironic's
// state strings, the one table of allowed transitions, the API verbs that
// map onto events, and the named sets (stable, failure, lookup-allowed)
// derived from them.
package statemachine

// State is a provision state, with Ironic's exact wire string (at most 15
// characters, the width of Ironic's DB column).
type State string

// Provision states (contract §4.1). NoState is the empty target of a stable
// state, shown as null by the API.
const (
	NoState      State = ""
	Enroll       State = "enroll"
	Verifying    State = "verifying"
	Manageable   State = "manageable"
	Available    State = "available"
	Deploying    State = "deploying"
	DeployWait   State = "wait call-back"
	DeployFailed State = "deploy failed"
	DeployHold   State = "deploy hold"
	Active       State = "active"
	Deleting     State = "deleting"
	Cleaning     State = "cleaning"
	CleanWait    State = "clean wait"
	CleanFailed  State = "clean failed"
	CleanHold    State = "clean hold"
	Inspecting   State = "inspecting"
	InspectWait  State = "inspect wait"
	InspectFail  State = "inspect failed"
	Adopting     State = "adopting"
	AdoptFailed  State = "adopt failed"
	Rescuing     State = "rescuing"
	RescueWait   State = "rescue wait"
	Rescue       State = "rescue"
	RescueFailed State = "rescue failed"
	Unrescuing   State = "unrescuing"
	UnrescueFail State = "unrescue failed"
	Servicing    State = "servicing"
	ServiceWait  State = "service wait"
	ServiceFail  State = "service failed"
	ServiceHold  State = "service hold"
	Error        State = "error"
)

// Event is an input of the state machine.
type Event string

// Events. The API verbs map onto some of them through Verbs.
const (
	EvManage  Event = "manage"
	EvProvide Event = "provide"
	EvDeploy  Event = "deploy"
	EvDelete  Event = "delete"
	EvClean   Event = "clean"
	EvInspect Event = "inspect"
	EvAdopt   Event = "adopt"
	EvAbort   Event = "abort"
	EvRebuild Event = "rebuild"
	EvService Event = "service"
	EvWait    Event = "wait"
	EvResume  Event = "resume"
	EvDone    Event = "done"
	EvFail    Event = "fail"
)

// LookupAllowed are the states in which GET /v1/lookup finds a node
// (Ironic's LOOKUP_ALLOWED_STATES with [api]restrict_lookup, contract
// §3.3, and service wait since Ironic 2023.2). Servicing is there too, as
// deploying and cleaning are: the ramdisk boots while the node is in it.
var LookupAllowed = setOf(Deploying, DeployWait, Cleaning, CleanWait,
	Inspecting, InspectWait, Rescuing, RescueWait, Servicing, ServiceWait)

// FastTrackLookupAllowed are the states in which lookup is also allowed
// when fast-track applies (contract §3.3, §4.7).
var FastTrackLookupAllowed = setOf(Enroll, Manageable, Available)

// HeartbeatAllowed are the states in which a heartbeat is recorded (and,
// in the wait states, processed); in any other state it is accepted (202)
// and only logged. With fast-track, heartbeats are also recorded in
// FastTrackLookupAllowed.
var HeartbeatAllowed = setOf(DeployWait, Deploying, CleanWait, Cleaning,
	InspectWait, Inspecting, ServiceWait, Servicing)

// AgentWait are the states in which the engine waits for the agent's
// heartbeat; the callback timeouts apply to them.
var AgentWait = setOf(DeployWait, CleanWait, InspectWait, ServiceWait)

// DeleteAllowed are the states in which a node may be deleted (outside
// maintenance).
var DeleteAllowed = setOf(Enroll, Manageable, Available, AdoptFailed)

// Failure are the failure states; a client waiting for a target stops on
// them.
var Failure = setOf(DeployFailed, CleanFailed, InspectFail, RescueFailed,
	UnrescueFail, AdoptFailed, ServiceFail, Error)

func setOf(states ...State) map[State]bool {
	m := make(map[State]bool, len(states))
	for _, s := range states {
		m[s] = true
	}
	return m
}
