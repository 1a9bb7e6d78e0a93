package agent

import (
	"context"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/erase"
	"github.com/rivetmetal/rivet/hardware/inventory"
	"github.com/rivetmetal/rivet/hardware/manager"
	"github.com/rivetmetal/rivet/wire"
)

// genericManager is IPA's GenericHardwareManager: the steps, disk erasure
// and inventory that work on any machine. It is always the first of the
// agent's hardware managers; vendor managers come from Options.Managers.
type genericManager struct{ a *Agent }

// The generic manager's identity, as IPA reports it. Ironic hands the
// version back with every step call; a mismatch means the agent changed
// between get_*_steps and execute_*_step.
var genericIdentity = manager.Identity{Class: "GenericHardwareManager", Name: "generic_hardware_manager", Version: "1.2"}

func (genericManager) Identity() manager.Identity            { return genericIdentity }
func (genericManager) Support(context.Context) manager.Level { return manager.Generic }

// prepareFunc checks a step call and returns its work.
type prepareFunc = func(manager.StepCall) (manager.StepFunc, error)

// stepFuncs maps each generic step's name to its function.
func (g genericManager) stepFuncs() map[string]prepareFunc {
	a := g.a
	return map[string]prepareFunc{
		"erase_devices":          noArgs("erase_devices", a.eraseDevicesStep),
		"erase_devices_metadata": noArgs("erase_devices_metadata", a.eraseMetadataStep),
		"erase_devices_express":  noArgs("erase_devices_express", a.eraseExpressStep),
		"erase_pstore":           noArgs("erase_pstore", a.erasePstoreStep),
		"clean_uefi_nvram":       a.cleanUEFINVRAMStep,
		"write_image":            a.writeImageStep,
	}
}

// genericSteps are IPA's generic steps this agent implements, with IPA's
// default priorities. Clean: automated cleaning runs every step above 0,
// highest first, and Ironic overrides the two erase priorities with its
// own settings. Deploy: priority 0, so they run only when a deploy
// template asks, except write_image, which Ironic's out-of-band step of
// the same name drives. Service: steps run on an active node (Ironic's
// "servicing", 2023.2 and later).
var genericSteps = map[manager.Kind][]manager.Step{
	manager.Clean: {
		{Name: "erase_devices", Interface: "deploy", Priority: 10, Abortable: true},
		{Name: "erase_devices_metadata", Interface: "deploy", Priority: 99, Abortable: true},
		{Name: "erase_devices_express", Interface: "deploy", Priority: 0, Abortable: true},
		{Name: "erase_pstore", Interface: "deploy", Priority: 0, Abortable: true},
		uefiNVRAMStep,
	},
	manager.Deploy: {
		{Name: "erase_devices_metadata", Interface: "deploy", Priority: 0},
		{Name: "write_image", Interface: "deploy", Priority: 0},
		uefiNVRAMStep,
	},
	manager.Service: {
		{Name: "write_image", Interface: "deploy", Priority: 0},
		uefiNVRAMStep,
	},
}

// Steps lists the generic steps of kind, each with its function.
func (g genericManager) Steps(_ context.Context, kind manager.Kind, _ manager.NodeInfo) ([]manager.Step, error) {
	funcs := g.stepFuncs()
	var out []manager.Step
	for _, st := range genericSteps[kind] {
		st.Prepare = funcs[st.Name]
		out = append(out, st)
	}
	return out, nil
}

// EraseDevice erases a whole disk with the best method it supports (NVMe
// format, ATA secure erase, else overwriting), as the node's settings say.
func (g genericManager) EraseDevice(ctx context.Context, d hardware.BlockDevice, req manager.EraseRequest) erase.Result {
	return erase.DeviceFunc(req.Settings, g.a.log)(ctx, d, req.Progress)
}

// EraseMetadata zeroes the partition tables and signatures of a disk and
// of its partitions.
func (g genericManager) EraseMetadata(ctx context.Context, d hardware.BlockDevice, req manager.EraseRequest) erase.Result {
	return erase.MetadataFunc()(ctx, d, req.Progress)
}

// ContributeInventory reads the whole inventory from sysfs, procfs and
// DMI; it is the first contributor and fills every field.
func (g genericManager) ContributeInventory(ctx context.Context, inv *wire.Inventory) error {
	a := g.a
	got, err := inventory.Collect(ctx, inventory.Options{Root: a.cfg.SysRoot, BlockDevices: a.cfg.BlockDevices, BootIF: a.bootIF(), Logger: a.log,
		LLDP: a.lldpListener()})
	if err != nil {
		return err
	}
	*inv = *got
	return nil
}

// hardwareManagers is the agent's list of managers: the generic one, then
// those the caller passed in Options.Managers.
func (a *Agent) hardwareManagers() []manager.Manager {
	return append([]manager.Manager{genericManager{a}}, a.extraManagers...)
}

// selectManagers keeps the managers that support this machine.
func (a *Agent) selectManagers(ctx context.Context) error {
	s, err := manager.Select(ctx, a.log, a.hardwareManagers()...)
	if err != nil {
		return err
	}
	a.managers = s
	return nil
}
