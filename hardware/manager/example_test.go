package manager_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/erase"
	"github.com/rivetmetal/rivet/hardware/manager"
)

// MagicStore is ACME's hardware manager for its MagicStore disks: it
// erases them with the vendor's own sanitize command and offers a
// firmware upgrade clean step. Every other disk and every other call is
// left to the managers below it (in the agent, the generic manager).
type MagicStore struct {
	// Disks lists the machine's disks (hardware.Lister{}.List() in the
	// ramdisk); Sanitize runs the vendor's erase on one of them.
	Disks    func() ([]hardware.BlockDevice, error)
	Sanitize func(ctx context.Context, dev string) error
}

// Identity names the manager in get_*_steps answers and in
// hardware_manager_version. Bump Version whenever the steps change.
func (MagicStore) Identity() manager.Identity {
	return manager.Identity{Class: "MagicStoreHardwareManager", Name: "acme_magicstore", Version: "1.0"}
}

// Support is Mainline on machines with a MagicStore disk, else None (the
// manager is then left out entirely).
func (m MagicStore) Support(ctx context.Context) manager.Level {
	disks, err := m.Disks()
	if err != nil {
		return manager.None
	}
	for _, d := range disks {
		if isMagicStore(d) {
			return manager.Mainline
		}
	}
	return manager.None
}

func isMagicStore(d hardware.BlockDevice) bool { return strings.HasPrefix(d.Model, "ACME MagicStore") }

// Steps offers one clean step, run only when asked for (priority 0).
func (m MagicStore) Steps(ctx context.Context, kind manager.Kind, node manager.NodeInfo) ([]manager.Step, error) {
	if kind != manager.Clean {
		return nil, manager.ErrNotHandled
	}
	return []manager.Step{{
		Name: "upgrade_magicstore_firmware", Interface: "deploy", Priority: 0, RebootRequested: true,
		ArgsInfo: map[string]any{"url": map[string]any{"description": "firmware image URL", "required": true}},
		Prepare:  m.upgradeFirmware,
	}}, nil
}

// upgradeFirmware checks the step's arguments before anything runs (a bad
// call is refused with HTTP 400) and returns the work.
func (m MagicStore) upgradeFirmware(call manager.StepCall) (manager.StepFunc, error) {
	url, ok := call.Args["url"].(string)
	if !ok || url == "" {
		return nil, fmt.Errorf("upgrade_magicstore_firmware needs a url: %w", manager.ErrInvalidArgs)
	}
	return func(ctx context.Context, p manager.Progress) (any, error) {
		return "MagicStore firmware upgraded from " + url, nil
	}, nil
}

// EraseDevice sanitizes MagicStore disks and hands every other disk on.
func (m MagicStore) EraseDevice(ctx context.Context, d hardware.BlockDevice, req manager.EraseRequest) erase.Result {
	if !isMagicStore(d) {
		return erase.Result{Err: manager.ErrNotHandled}
	}
	if err := m.Sanitize(ctx, d.Path); err != nil {
		return erase.Result{Err: fmt.Errorf("sanitize %s: %w", d.Path, err)}
	}
	return erase.Result{Method: "magicstore-sanitize"}
}

// Example selects the vendor manager on a machine with one MagicStore and
// one other disk, then asks the Set what the agent asks it for
// clean.get_clean_steps, for a step call and for erase_devices.
func Example() {
	ctx := context.Background()
	disks := []hardware.BlockDevice{
		{Path: "/dev/sda", Model: "ACME MagicStore 4000"},
		{Path: "/dev/sdb", Model: "Samsung SSD 870"},
	}
	acme := MagicStore{
		Disks:    func() ([]hardware.BlockDevice, error) { return disks, nil },
		Sanitize: func(ctx context.Context, dev string) error { return nil },
	}
	// The agent selects its generic manager plus Options.Managers; here
	// the vendor's manager stands alone.
	set, err := manager.Select(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), acme)
	if err != nil {
		fmt.Println(err)
		return
	}
	steps, _ := set.Steps(ctx, manager.Clean, manager.NodeInfo{})
	fmt.Println(steps["MagicStoreHardwareManager"][0].Step, set.Versions())

	call := manager.StepCall{Kind: manager.Clean, Args: map[string]any{"url": "http://192.0.2.1/fw.bin"}}
	run, _ := set.PrepareStep(ctx, "upgrade_magicstore_firmware", "deploy", call)
	result, _ := run(ctx, nil)
	fmt.Println(result)
	_, err = set.PrepareStep(ctx, "upgrade_magicstore_firmware", "deploy", manager.StepCall{Kind: manager.Clean})
	fmt.Println(err)

	for _, d := range disks {
		r := set.EraseDevice(ctx, d, manager.EraseRequest{})
		fmt.Println(d.Path, r.Method, r.Err)
	}
	// Output:
	// upgrade_magicstore_firmware map[acme_magicstore:1.0]
	// MagicStore firmware upgraded from http://192.0.2.1/fw.bin
	// upgrade_magicstore_firmware needs a url: invalid step arguments
	// /dev/sda magicstore-sanitize <nil>
	// /dev/sdb  erase_devices /dev/sdb: no hardware manager handles it
}
