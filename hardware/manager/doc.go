// Package manager is the agent's hardware-manager seam, modelled on the
// Ironic Python Agent's: the place where vendor- or site-specific
// behaviour goes.
//
// A Manager says how well it supports the machine (its Level: None,
// Generic, Mainline, ServiceProvider) and implements only the capabilities
// it has, each a small interface: StepProvider (deploy, clean and service
// steps), DeviceEraser and MetadataEraser (erasing one disk), and
// InventoryContributor (the hardware inventory). The agent builds its
// list of managers in code (the generic manager first, then the ones
// cmd/rivet-agent passes in); Select keeps those that support the machine,
// most supported first.
//
// The Set dispatches the way IPA does:
//
//   - Steps asks every StepProvider and keeps one step per name: the one
//     of the manager with the highest level, then the highest priority,
//     then the manager class that sorts first. The result is keyed by
//     manager class, with hardware_manager_version from Versions, exactly
//     as get_*_steps answers Ironic.
//   - PrepareStep and the erase calls walk the managers from the most
//     supported down and move on only when one answers ErrNotHandled;
//     any other error is the answer. When no manager handles the call the
//     error wraps ErrNoManager.
//   - Inventory lets every contributor add to one inventory, the least
//     supported first, so a specific manager sees and may amend what the
//     generic one found.
//
// docs/hardware-managers.md shows how a vendor adds a manager.
package manager
