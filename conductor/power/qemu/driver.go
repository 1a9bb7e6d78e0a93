package qemu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
)

var (
	_ power.Driver          = (*Driver)(nil)
	_ power.RamdiskBooter   = (*Driver)(nil)
	_ power.NodeView        = (*Driver)(nil)
	_ power.HostPathChecker = (*Driver)(nil)
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
// required) and the node's first MAC, and that the files it names are in
// the files directory (regular files, where they exist), without touching
// VMs.
func (d *Driver) Validate(node power.Node) error {
	if _, err := d.settings(node); err != nil {
		return err
	}
	return d.CheckHostPaths(node)
}

// PowerState implements power.Driver: "power on" while the node's QEMU
// process runs (started by this Driver or found through the pid file),
// "power off" otherwise, including after the guest powered itself off.
func (d *Driver) PowerState(ctx context.Context, node power.Node) (power.State, error) {
	s, err := d.settings(node)
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
	s, err := d.settings(node)
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
	args, st, boot, err := d.prepare(uuid, s, p)
	if err != nil {
		return err
	}
	if err := d.appendConsoleHeader(s, p.console, boot); err != nil {
		return err
	}
	c, logStart, err := d.launch(uuid, p, args, func(c *child) { d.reaped(uuid, p, c) })
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
	if err := d.consumeOneTimeBoot(p, st); err != nil {
		return err
	}
	d.log.InfoContext(ctx, "qemu started", "node", uuid, "pid", c.pid, "boot_device", boot, "boot_mode", s.bootMode,
		"boot", s.boot, "bridge", s.bridge, "nic_model", s.nicModel, "disk_bus", s.diskBus,
		"agent_port", cmp.Or(s.agentPort, st.AgentPort), "forwards", forwardPorts(st.Forwards), "console_log", p.console,
		"ready_after", time.Since(started).Round(time.Millisecond))
	return nil
}

// prepare readies everything a power on needs but the process (ports,
// OVMF variables, the bridge's ifup script, saved state) and returns
// QEMU's arguments, the node's state and the boot device used.
func (d *Driver) prepare(uuid string, s settings, p nodePaths) ([]string, nodeState, power.BootDevice, error) {
	fail := func(err error) ([]string, nodeState, power.BootDevice, error) { return nil, nodeState{}, "", err }
	if s.mac == "" {
		return fail(fmt.Errorf("%w: the node has no port (its first MAC is the VM's NIC)", power.ErrInvalidDriverInfo))
	}
	// Checked again at each use: the disk may have been replaced since
	// driver_info was set.
	if err := d.checkFiles(uuid, s); err != nil {
		return fail(err)
	}
	if len(p.qmp) > maxSocketPath {
		return fail(fmt.Errorf("QMP socket path %s is longer than %d bytes: use a shorter StateDir", p.qmp, maxSocketPath))
	}
	st, err := loadState(p)
	if err != nil {
		return fail(err)
	}
	boot := st.nextBoot()
	spec := vmSpec{uuid: uuid, set: s, paths: p, boot: boot, forwards: st.Forwards,
		guestHost: d.guestHost.String(), relay: d.relay}
	if s.bridge == "" {
		if spec.agentPort, err = d.agentPort(s, &st); err != nil {
			return fail(err)
		}
	} else if err := writeIfup(p.ifup, s.bridge); err != nil {
		return fail(err)
	}
	if boot == power.BootPXE && s.boot == BootKernel {
		if st.Ramdisk == nil {
			return fail(errors.New("boot device is pxe but no deploy ramdisk was prepared"))
		}
		spec.ramdisk = st.Ramdisk
	}
	if s.bootMode == BootUEFI {
		if err := d.prepareOVMF(p); err != nil {
			return fail(err)
		}
		spec.ovmfCode = d.cfg.OVMFCode
	}
	if err := saveState(p, st); err != nil {
		return fail(err)
	}
	args, err := qemuArgs(spec)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", power.ErrInvalidDriverInfo, err))
	}
	return args, st, boot, nil
}

// consumeOneTimeBoot clears a one-time boot device after the power on that
// used it.
func (d *Driver) consumeOneTimeBoot(p nodePaths, st nodeState) error {
	if st.OneTimeBoot == "" {
		return nil
	}
	st.OneTimeBoot = ""
	return saveState(p, st)
}

// Command returns the command line (QEMU first) of the VM the node's next
// power on would start, with everything it needs made ready: the node's
// state directory, OVMF variables, the host port forwarded to the agent,
// the bridge's ifup script, and the deploy ramdisk prepared for a pxe
// boot. It is for a caller that runs the VM itself (a BMC simulator whose
// power on runs a command) instead of SetPowerState: that caller starts
// and stops the process, and this Driver then neither sees it nor stops
// it. A one-time boot device is used up by the call, as by a power on.
func (d *Driver) Command(ctx context.Context, node power.Node) ([]string, error) {
	s, err := d.settings(node)
	if err != nil {
		return nil, err
	}
	e := d.entry(node.UUID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qemu: node %s: command: %w", node.UUID, err)
	}
	p := d.pathsFor(node.UUID, s)
	args, st, _, err := d.prepare(node.UUID, s, p)
	if err != nil {
		return nil, fmt.Errorf("qemu: node %s: command: %w", node.UUID, err)
	}
	if err := d.consumeOneTimeBoot(p, st); err != nil {
		return nil, fmt.Errorf("qemu: node %s: command: %w", node.UUID, err)
	}
	bin, err := exec.LookPath(d.cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("qemu: node %s: qemu program: %w", node.UUID, err)
	}
	return append([]string{bin}, args...), nil
}

// writeIfup writes the script QEMU runs with the name of the tap it made:
// it puts the tap on the bridge and brings it up.
func writeIfup(path, bridge string) error {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("qemu_bridge needs ip (iproute2): %w", err)
	}
	script := "#!/bin/sh\n# Written by the rivet qemu driver: QEMU runs it with the name of the tap it created.\n" +
		"exec " + ip + " link set dev \"$1\" master " + bridge + " up\n"
	if err := writeFileAtomic(path, []byte(script)); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
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

// appendConsoleHeader marks a power on in the console log: the node's
// default one, or the one driver_info names, opened through the files
// directory.
func (d *Driver) appendConsoleHeader(s settings, path string, boot power.BootDevice) error {
	var f *os.File
	var err error
	if s.consoleRel != "" {
		f, err = d.files.check("", InfoConsoleLog, s.consoleRel, false, true)
	} else {
		if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
			return fmt.Errorf("console log dir: %w", err)
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n=== rivet qemu driver: power on %s, boot device %s, %s ===\n",
		time.Now().UTC().Format(time.RFC3339), boot, s.bootMode)
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
	s, err := d.settings(node)
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
