// Package fake is the "fake-hardware" power driver: power state and boot
// device live in memory (optionally persisted to a JSON file so they survive
// a conductor restart), and tests can observe or drive every change through
// hooks.
package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
)

// Name is the driver name nodes use.
const Name = "fake-hardware"

// Hooks let tests react to driver calls. Each hook runs synchronously after
// the change is recorded, without the driver's lock held; nil hooks are
// skipped. A hook returning an error makes the call fail.
type Hooks struct {
	// OnPowerState runs after a node's power state was set.
	OnPowerState func(node power.Node, state power.State) error
	// OnBootDevice runs after a node's boot device was set.
	OnBootDevice func(node power.Node, dev power.BootDevice, persistent bool) error
}

// Config configures the driver; the zero value is an in-memory driver.
type Config struct {
	// StateFile, when set, is where power states and boot devices are
	// persisted (read by New; a change returns once a write of the file
	// that includes it has been renamed into place — changes made while a
	// write runs share the next one).
	StateFile string
	// CallLog, when set, is a file a line is appended to for every call
	// the driver gets that reaches the "machine" (JSON: time, op, node,
	// arg), so that a test can tell which calls a conductor process made.
	CallLog string
	Hooks   Hooks
}

// Call is one line of Config.CallLog.
type Call struct {
	Time time.Time `json:"time"`
	// Op is power_state, set_power_state, set_boot_device or
	// get_boot_device.
	Op   string `json:"op"`
	Node string `json:"node"`
	// Arg is the state or device asked for ("" for reads).
	Arg string `json:"arg,omitempty"`
}

// Driver is the fake-hardware driver. It implements power.Driver.
type Driver struct {
	cfg   Config
	mu    sync.Mutex
	nodes map[string]*nodeState
	// changes counts changes to nodes (under mu).
	changes uint64

	// writeMu serializes writes of the state file; persisted is the change
	// count the file last written holds (under writeMu).
	writeMu   sync.Mutex
	persisted uint64
	// logMu serializes appends to the call log.
	logMu sync.Mutex
}

type nodeState struct {
	Power      power.State      `json:"power"`
	BootDevice power.BootDevice `json:"boot_device"`
	Persistent bool             `json:"persistent"`
	BootMode   power.BootMode   `json:"boot_mode,omitempty"`
}

var (
	_ power.Driver           = (*Driver)(nil)
	_ power.BootDeviceReader = (*Driver)(nil)
	_ power.BootDeviceLister = (*Driver)(nil)
)

// bootDevices are the devices the fake machine can boot from.
var bootDevices = []power.BootDevice{power.BootPXE, power.BootDisk, "cdrom", "bios"}

// New returns a driver, loading Config.StateFile when it exists.
func New(cfg Config) (*Driver, error) {
	d := &Driver{cfg: cfg, nodes: map[string]*nodeState{}}
	if cfg.StateFile == "" {
		return d, nil
	}
	b, err := os.ReadFile(cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fake driver: read state %s: %w", cfg.StateFile, err)
	}
	if err := json.Unmarshal(b, &d.nodes); err != nil {
		return nil, fmt.Errorf("fake driver: decode state %s: %w", cfg.StateFile, err)
	}
	return d, nil
}

// Name implements power.Driver.
func (d *Driver) Name() string { return Name }

// Validate implements power.Driver; any driver_info is valid.
func (d *Driver) Validate(node power.Node) error { return nil }

// PowerState implements power.Driver. A node never seen is off.
func (d *Driver) PowerState(ctx context.Context, node power.Node) (power.State, error) {
	if err := ctx.Err(); err != nil {
		return power.Error, fmt.Errorf("fake driver: node %s: get power state: %w", node.UUID, err)
	}
	if err := d.logCall("power_state", node.UUID, ""); err != nil {
		return power.Error, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.get(node.UUID).Power, nil
}

// SetPowerState implements power.Driver. Reboot ends powered on; the soft
// variants behave as their hard counterparts.
func (d *Driver) SetPowerState(ctx context.Context, node power.Node, target power.State) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake driver: node %s: set power %q: %w", node.UUID, target, err)
	}
	var st power.State
	switch target {
	case power.On, power.Reboot, power.SoftReboot:
		st = power.On
	case power.Off, power.SoftOff:
		st = power.Off
	default:
		return fmt.Errorf("fake driver: node %s: set power %q: %w", node.UUID, target, power.ErrUnsupported)
	}
	if err := d.logCall("set_power_state", node.UUID, string(target)); err != nil {
		return err
	}
	if err := d.update(node.UUID, func(s *nodeState) { s.Power = st }); err != nil {
		return err
	}
	if h := d.hooks().OnPowerState; h != nil {
		return h(node, target)
	}
	return nil
}

// SetBootDevice implements power.Driver; the boot mode is recorded too
// (UEFI unless the node asks for BIOS).
func (d *Driver) SetBootDevice(ctx context.Context, node power.Node, dev power.BootDevice, persistent bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake driver: node %s: set boot device %s: %w", node.UUID, dev, err)
	}
	if !slices.Contains(bootDevices, dev) {
		return fmt.Errorf("fake driver: node %s: set boot device %q: %w", node.UUID, dev, power.ErrUnsupported)
	}
	mode := node.BootMode
	if mode == "" {
		mode = power.BootModeUEFI
	}
	if err := d.logCall("set_boot_device", node.UUID, string(dev)); err != nil {
		return err
	}
	if err := d.update(node.UUID, func(s *nodeState) { s.BootDevice, s.Persistent, s.BootMode = dev, persistent, mode }); err != nil {
		return err
	}
	if h := d.hooks().OnBootDevice; h != nil {
		return h(node, dev, persistent)
	}
	return nil
}

// GetBootDevice implements power.BootDeviceReader.
func (d *Driver) GetBootDevice(ctx context.Context, node power.Node) (power.BootDevice, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, fmt.Errorf("fake driver: node %s: get boot device: %w", node.UUID, err)
	}
	if err := d.logCall("get_boot_device", node.UUID, ""); err != nil {
		return "", false, err
	}
	dev, persistent := d.BootDevice(node.UUID)
	return dev, persistent, nil
}

// SupportedBootDevices implements power.BootDeviceLister.
func (d *Driver) SupportedBootDevices(node power.Node) []power.BootDevice {
	return slices.Clone(bootDevices)
}

// BootMode returns the boot mode recorded with a node's boot device.
func (d *Driver) BootMode(uuid string) power.BootMode {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.get(uuid).BootMode
}

// SetHooks replaces the hooks (for tests that build the driver before the
// things the hooks call).
func (d *Driver) SetHooks(h Hooks) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg.Hooks = h
}

func (d *Driver) hooks() Hooks {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Hooks
}

// Force sets a node's power state without running hooks, as the machine
// itself would (an OS powering off).
func (d *Driver) Force(uuid string, st power.State) error {
	return d.update(uuid, func(s *nodeState) { s.Power = st })
}

// BootDevice returns a node's boot device and whether it is persistent.
func (d *Driver) BootDevice(uuid string) (power.BootDevice, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.get(uuid)
	return s.BootDevice, s.Persistent
}

func (d *Driver) get(uuid string) *nodeState {
	s, ok := d.nodes[uuid]
	if !ok {
		s = &nodeState{Power: power.Off}
		d.nodes[uuid] = s
	}
	return s
}

func (d *Driver) update(uuid string, fn func(*nodeState)) error {
	d.mu.Lock()
	fn(d.get(uuid))
	d.changes++
	change := d.changes
	d.mu.Unlock()
	return d.persist(change)
}

// persist returns once the state file holds change: either a write that
// started after it already did, or a new write of every node. A whole-file
// write per change would make enrolling N nodes cost O(N²); this way the
// changes made while one write runs are all carried by the next.
func (d *Driver) persist(change uint64) error {
	if d.cfg.StateFile == "" {
		return nil
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	if d.persisted >= change {
		return nil
	}
	d.mu.Lock()
	b, err := json.Marshal(d.nodes)
	snapshot := d.changes
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fake driver: encode state: %w", err)
	}
	if err := d.writeFile(b); err != nil {
		return err
	}
	d.persisted = snapshot
	return nil
}

// logCall appends a call to Config.CallLog, if set.
func (d *Driver) logCall(op, node, arg string) error {
	if d.cfg.CallLog == "" {
		return nil
	}
	b, err := json.Marshal(Call{Time: time.Now().UTC(), Op: op, Node: node, Arg: arg})
	if err != nil {
		return fmt.Errorf("fake driver: encode call: %w", err)
	}
	d.logMu.Lock()
	defer d.logMu.Unlock()
	f, err := os.OpenFile(d.cfg.CallLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("fake driver: call log: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fake driver: call log %s: %w", d.cfg.CallLog, err)
	}
	return nil
}

// writeFile replaces the state file with b atomically (temporary file and
// rename in the same directory).
func (d *Driver) writeFile(b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(d.cfg.StateFile), ".fake-power-*")
	if err != nil {
		return fmt.Errorf("fake driver: write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("fake driver: write state %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fake driver: write state %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), d.cfg.StateFile); err != nil {
		return fmt.Errorf("fake driver: write state %s: %w", d.cfg.StateFile, err)
	}
	return nil
}
