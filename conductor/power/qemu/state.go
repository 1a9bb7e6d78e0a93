package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rivetmetal/rivet/conductor/power"
)

// nodeState is what the driver remembers about a node between calls and
// across conductor restarts (StateDir/<uuid>/state.json).
type nodeState struct {
	// BootDevice is the persistent boot device; "" means disk.
	BootDevice power.BootDevice `json:"boot_device,omitempty"`
	// OneTimeBoot, when set, is used for the next power on only.
	OneTimeBoot power.BootDevice `json:"one_time_boot,omitempty"`
	// AgentPort is the allocated host port forwarded to the guest's 9999
	// (unused when driver_info fixes qemu_agent_port).
	AgentPort int `json:"agent_port,omitempty"`
	// Forwards are the host ports the guest reaches at GuestHost.
	Forwards []forward `json:"forwards,omitempty"`
	// Ramdisk is the deploy ramdisk prepared for the next "pxe" boot.
	Ramdisk *ramdisk `json:"ramdisk,omitempty"`
}

// forward is one guestfwd: GuestHost:Port in the guest → Target:Port on
// the host.
type forward struct {
	Port   int    `json:"port"`
	Target string `json:"target"`
}

// ramdisk is a prepared deploy ramdisk; the files are copies inside the
// node's state directory.
type ramdisk struct {
	Kernel    string   `json:"kernel"`
	Initramfs string   `json:"initramfs"`
	Params    []string `json:"params,omitempty"`
}

// nextBoot is the boot device the next power on uses.
func (s *nodeState) nextBoot() power.BootDevice {
	if s.OneTimeBoot != "" {
		return s.OneTimeBoot
	}
	if s.BootDevice != "" {
		return s.BootDevice
	}
	return power.BootDisk
}

// nodePaths are the files of one node under StateDir.
type nodePaths struct {
	dir, state, pid, qemuLog, qmp, vars, kernel, initramfs, console, ifup string
}

func (d *Driver) pathsFor(uuid string, s settings) nodePaths {
	dir := filepath.Join(d.cfg.StateDir, uuid)
	p := nodePaths{
		dir:       dir,
		state:     filepath.Join(dir, "state.json"),
		pid:       filepath.Join(dir, "qemu.pid"),
		qemuLog:   filepath.Join(dir, "qemu.log"),
		qmp:       filepath.Join(dir, "qmp.sock"),
		vars:      filepath.Join(dir, "OVMF_VARS.fd"),
		kernel:    filepath.Join(dir, "ramdisk", "kernel"),
		initramfs: filepath.Join(dir, "ramdisk", "initramfs"),
		console:   filepath.Join(dir, "console.log"),
		ifup:      filepath.Join(dir, "ifup"),
	}
	if s.consoleLog != "" {
		p.console = s.consoleLog
	}
	return p
}

// loadState reads a node's state; a node never seen has the zero state.
func loadState(p nodePaths) (nodeState, error) {
	var s nodeState
	b, err := os.ReadFile(p.state)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode state %s: %w", p.state, err)
	}
	return s, nil
}

// saveState writes a node's state atomically.
func saveState(p nodePaths, s nodeState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return writeFileAtomic(p.state, append(b, '\n'))
}

// writeFileAtomic writes data to a temporary file next to path, syncs it
// and renames it over path.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
