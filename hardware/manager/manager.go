package manager

import (
	"context"
	"errors"
	"fmt"
)

// Level is how well a manager supports the machine it runs on (IPA's
// HardwareSupport). Managers are consulted from the highest level down.
type Level int

// Support levels, with IPA's values.
const (
	// None: the manager does not apply to this machine and is left out.
	None Level = 0
	// Generic: works on any machine; the generic manager's level.
	Generic Level = 1
	// Mainline: knows this machine's hardware; a vendor manager shipped
	// with Rivet.
	Mainline Level = 2
	// ServiceProvider: an operator's own manager for its fleet; it wins
	// over every manager shipped with Rivet.
	ServiceProvider Level = 3
)

// String names the level the way IPA's HardwareSupport does.
func (l Level) String() string {
	switch l {
	case None:
		return "NONE"
	case Generic:
		return "GENERIC"
	case Mainline:
		return "MAINLINE"
	case ServiceProvider:
		return "SERVICE_PROVIDER"
	}
	return fmt.Sprintf("level %d", int(l))
}

// ErrNotHandled is what a manager answers for a call it does not handle on
// this machine or for this device or node ("try the next manager"; IPA's
// IncompatibleHardwareMethodError). It never means that something failed.
var ErrNotHandled = errors.New("not handled by this hardware manager")

// ErrInvalidArgs is wrapped by a step's Prepare when the call's arguments
// are wrong: the agent refuses the call at once (HTTP 400,
// InvalidCommandParamsError), before anything runs.
var ErrInvalidArgs = errors.New("invalid step arguments")

// ErrNoManager is wrapped by the Set's errors when no manager handles a
// call (IPA's HardwareManagerMethodNotFound).
var ErrNoManager = errors.New("no hardware manager handles it")

// Identity names a manager on the wire.
type Identity struct {
	// Class keys the manager's steps in get_*_steps answers, as IPA keys
	// them by class name ("GenericHardwareManager"), and breaks ties
	// between equal steps.
	Class string
	// Name and Version are the manager's entry in
	// hardware_manager_version ({"generic_hardware_manager": "1.2"}) and
	// in the inspection data. Change Version whenever the manager's steps
	// change: Ironic restarts a cleaning when the versions it started
	// with no longer match the agent's.
	Name, Version string
}

// Manager is a hardware manager. It implements any of the capability
// interfaces (StepProvider, DeviceEraser, MetadataEraser,
// InventoryContributor) it needs; the Set finds them by type assertion.
type Manager interface {
	// Identity names the manager; it does not change.
	Identity() Identity
	// Support evaluates how well the manager supports this machine. It is
	// called once, when the agent starts, before any other call; None
	// leaves the manager out.
	Support(ctx context.Context) Level
}
