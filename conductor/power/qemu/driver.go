package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
)

var (
	_ power.Driver        = (*Driver)(nil)
	_ power.RamdiskBooter = (*Driver)(nil)
	_ power.NodeView      = (*Driver)(nil)
)

// nodeEntry serializes the calls for one node and remembers the QEMU
// process this Driver started for it.
type nodeEntry struct {
	mu    sync.Mutex
	child *child
}

func (d *Driver) entry(uuid string) *nodeEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.nodes[uuid]
	if e == nil {
		e = &nodeEntry{}
		d.nodes[uuid] = e
	}
	return e
}

// Name implements power.Driver.
func (d *Driver) Name() string { return Name }

// Validate implements power.Driver: it checks driver_info (qemu_disk is
// required) and the node's first MAC, without touching files or VMs.
func (d *Driver) Validate(node power.Node) error {
	_, err := parseSettings(node)
	return err
}

// PowerState implements power.Driver: "power on" while the node's QEMU
// process runs (started by this Driver or found through the pid file),
// "power off" otherwise, including after the guest powered itself off.
func (d *Driver) PowerState(ctx context.Context, node power.Node) (power.State, error) {
	s, err := parseSettings(node)
	if err != nil {
		return power.Error, err
	}
	e := d.entry(node.UUID)
	e.mu.Lock()
	defer e.mu.Unlock()
	on, err := d.running(e, node.UUID, d.pathsFor(node.UUID, s))
	if err != nil {
		return power.Error, fmt.Errorf("qemu: node %s: power state: %w", node.UUID, err)
	}
	if on {
		return power.On, nil
	}
	return power.Off, nil
}

// running reports whether the node's VM runs. Call with e.mu held.
func (d *Driver) running(e *nodeEntry, uuid string, p nodePaths) (bool, error) {
	if e.child != nil {
		return !e.child.exited(), nil
	}
	a, err := attach(p.pid, uuid)
	if err != nil || a == nil {
		return false, err
	}
	defer a.close()
	return a.alive(), nil
}

// SetPowerState implements power.Driver for power.On, power.Off and
// power.Reboot (off, then on). Power on returns once QEMU has set up every
// device and forward; the VM then runs on its own, outliving ctx and the
// conductor. Power off is SIGTERM, then SIGKILL after a grace period:
// pulling the plug, as a BMC's hard power off does. Soft power off and
// soft reboot are not supported.
func (d *Driver) SetPowerState(ctx context.Context, node power.Node, target power.State) error {
	s, err := parseSettings(node)
	if err != nil {
		return err
	}
	e := d.entry(node.UUID)
	e.mu.Lock()
	defer e.mu.Unlock()
	p := d.pathsFor(node.UUID, s)
	switch target {
	case power.On:
		err = d.start(ctx, e, node.UUID, s, p)
	case power.Off:
		err = d.stop(ctx, e, node.UUID, p)
	case power.Reboot:
		if err = d.stop(ctx, e, node.UUID, p); err == nil {
			err = d.start(ctx, e, node.UUID, s, p)
		}
	default:
		err = fmt.Errorf("power state %q: %w", target, power.ErrUnsupported)
	}
	if err != nil {
		return fmt.Errorf("qemu: node %s: set power %s: %w", node.UUID, target, err)
	}
	return nil
}

// maxSocketPath is the longest path a unix socket address can hold.
const maxSocketPath = 107

// start powers the node on unless it already is. Call with e.mu held.
func (d *Driver) start(ctx context.Context, e *nodeEntry, uuid string, s settings, p nodePaths) error {
	if on, err := d.running(e, uuid, p); err != nil || on {
		return err
	}
	if s.mac == "" {
		return fmt.Errorf("%w: the node has no port (its first MAC is the VM's NIC)", power.ErrInvalidDriverInfo)
	}
	if fi, err := os.Stat(s.disk); err != nil {
		return fmt.Errorf("disk: %w", err)
	} else if fi.IsDir() {
		return fmt.Errorf("disk %s is a directory", s.disk)
	}
	if len(p.qmp) > maxSocketPath {
		return fmt.Errorf("QMP socket path %s is longer than %d bytes: use a shorter StateDir", p.qmp, maxSocketPath)
	}
	st, err := loadState(p)
	if err != nil {
		return err
	}
	boot := st.nextBoot()
	spec := vmSpec{uuid: uuid, set: s, paths: p, boot: boot, forwards: st.Forwards,
		guestHost: d.guestHost.String(), relay: d.relay}
	if spec.agentPort, err = d.agentPort(s, &st); err != nil {
		return err
	}
	if boot == power.BootPXE {
		if st.Ramdisk == nil {
			return errors.New("boot device is pxe but no deploy ramdisk was prepared")
		}
		spec.ramdisk = st.Ramdisk
	}
	if s.bootMode == BootUEFI {
		if err := d.prepareOVMF(p); err != nil {
			return err
		}
		spec.ovmfCode = d.cfg.OVMFCode
	}
	if err := saveState(p, st); err != nil {
		return err
	}
	if err := appendConsoleHeader(p.console, boot, s.bootMode); err != nil {
		return err
	}
	c, logStart, err := d.launch(uuid, p, qemuArgs(spec), func(c *child) { d.reaped(uuid, p, c) })
	if err != nil {
		return err
	}
	e.child = c
	started := time.Now()
	if err := waitReady(ctx, c, p, logStart, d.startLimit); err != nil {
		_ = stopChild(context.Background(), c, d.stopGrace)
		e.child = nil
		removePidFile(p.pid, c.pid)
		return err
	}
	if st.OneTimeBoot != "" {
		st.OneTimeBoot = ""
		if err := saveState(p, st); err != nil {
			return err
		}
	}
	d.log.InfoContext(ctx, "qemu started", "node", uuid, "pid", c.pid, "boot_device", boot, "boot_mode", s.bootMode,
		"agent_port", spec.agentPort, "forwards", forwardPorts(st.Forwards), "console_log", p.console,
		"ready_after", time.Since(started).Round(time.Millisecond))
	return nil
}

// agentPort returns the host port forwarded to the agent: the fixed
// qemu_agent_port, else the node's allocated port if it is still free,
// else a newly allocated one (recorded in st).
func (d *Driver) agentPort(s settings, st *nodeState) (int, error) {
	if s.agentPort != 0 {
		return s.agentPort, nil
	}
	if st.AgentPort != 0 && portFree(st.AgentPort) {
		return st.AgentPort, nil
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	st.AgentPort = port
	return port, nil
}

// prepareOVMF copies the variable-store template for a node once; the copy
// is the node's NVRAM and persists across power cycles.
func (d *Driver) prepareOVMF(p nodePaths) error {
	if d.cfg.OVMFCode == "" {
		return errors.New("uefi boot mode but no OVMF firmware found (install Debian's ovmf package or set OVMFCode/OVMFVars)")
	}
	if fileExists(p.vars) {
		return nil
	}
	b, err := os.ReadFile(d.cfg.OVMFVars)
	if err != nil {
		return fmt.Errorf("OVMF variables template: %w", err)
	}
	return writeFileAtomic(p.vars, b)
}

// appendConsoleHeader marks a power on in the console log.
func appendConsoleHeader(path string, boot power.BootDevice, mode string) error {
	if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
		return fmt.Errorf("console log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n=== rivet qemu driver: power on %s, boot device %s, %s ===\n",
		time.Now().UTC().Format(time.RFC3339), boot, mode)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	return nil
}

// reaped runs after a QEMU process this Driver started was reaped.
func (d *Driver) reaped(uuid string, p nodePaths, c *child) {
	e := d.entry(uuid)
	e.mu.Lock()
	if e.child == c {
		e.child = nil
		removePidFile(p.pid, c.pid)
	}
	e.mu.Unlock()
	var status string
	switch {
	case c.stopping.Load():
		status = "stopped by the driver"
	case c.err == nil:
		status = "exit 0 (guest powered off)"
	default:
		status = c.err.Error()
	}
	d.log.Info("qemu exited", "node", uuid, "pid", c.pid, "status", status)
}

// stop powers the node off if it is on. Call with e.mu held.
func (d *Driver) stop(ctx context.Context, e *nodeEntry, uuid string, p nodePaths) error {
	if c := e.child; c != nil {
		err := stopChild(ctx, c, d.stopGrace)
		if err != nil {
			return err
		}
		e.child = nil
		removePidFile(p.pid, c.pid)
		d.log.InfoContext(ctx, "qemu stopped", "node", uuid, "pid", c.pid)
		return nil
	}
	a, err := attach(p.pid, uuid)
	if err != nil {
		return err
	}
	if a == nil {
		_ = os.Remove(p.pid)
		return nil
	}
	defer a.close()
	if err := a.stop(ctx, d.stopGrace); err != nil {
		return err
	}
	removePidFile(p.pid, a.pid)
	d.log.InfoContext(ctx, "qemu stopped", "node", uuid, "pid", a.pid, "attached", true)
	return nil
}

// removePidFile removes the pid file if it still names pid.
func removePidFile(path string, pid int) {
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
		_ = os.Remove(path)
	}
}

// SetBootDevice implements power.Driver. A persistent setting applies to
// every later power on; a non-persistent one to the next power on only,
// after which the persistent device (default disk) applies again.
func (d *Driver) SetBootDevice(ctx context.Context, node power.Node, dev power.BootDevice, persistent bool) error {
	if dev != power.BootPXE && dev != power.BootDisk {
		return fmt.Errorf("qemu: node %s: boot device %q: %w", node.UUID, dev, power.ErrUnsupported)
	}
	s, err := parseSettings(node)
	if err != nil {
		return err
	}
	e := d.entry(node.UUID)
	e.mu.Lock()
	defer e.mu.Unlock()
	p := d.pathsFor(node.UUID, s)
	st, err := loadState(p)
	if err != nil {
		return fmt.Errorf("qemu: node %s: %w", node.UUID, err)
	}
	if persistent {
		st.BootDevice, st.OneTimeBoot = dev, ""
	} else {
		st.OneTimeBoot = dev
	}
	if err := saveState(p, st); err != nil {
		return fmt.Errorf("qemu: node %s: set boot device: %w", node.UUID, err)
	}
	d.log.InfoContext(ctx, "boot device set", "node", node.UUID, "device", dev, "persistent", persistent)
	return nil
}

func forwardPorts(fs []forward) string {
	ports := make([]string, len(fs))
	for i, f := range fs {
		ports[i] = strconv.Itoa(f.Port)
	}
	return strings.Join(ports, ",")
}
