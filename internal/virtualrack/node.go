package virtualrack

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/internal/ipmisim"
)

// Node is one server of the rack.
type Node struct {
	// Name and UUID are the node's in the conductor (the UUID is also
	// the VM's SMBIOS system UUID).
	Name, UUID string
	// Firmware is UEFI or BIOS; NICModel and DiskBus the emulated devices.
	Firmware, NICModel, DiskBus string
	// MAC is the NIC's address (the node's port).
	MAC string
	// Disk is the disk's sparse backing file on the host.
	Disk string
	// ConsoleLog is the serial console's log file.
	ConsoleLog string
	// BMC is the node's ipmi_sim.
	BMC *ipmisim.BMC
	// BMCAddress is the BMC's IPMI address (host:port) on the BMC network.
	BMCAddress string

	spec    NodeSpec
	rack    *Rack
	console *console

	mu       sync.Mutex
	powerOns []PowerOn
}

// PowerOn is one start of the node's machine by its BMC.
type PowerOn struct {
	// At is when the BMC started QEMU.
	At time.Time
	// BootDevice is the boot device the BMC had been given ("pxe",
	// "disk", …; "" when none).
	BootDevice string
	// ConsoleSeq is the Seq of the first console line of this boot.
	ConsoleSeq int
}

// PowerOns lists the node's power ons so far, in order.
func (n *Node) PowerOns() []PowerOn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]PowerOn(nil), n.powerOns...)
}

// WaitConsole waits for a console line at or after Seq from that matches
// re and returns it with its submatches.
func (n *Node) WaitConsole(ctx context.Context, re *regexp.Regexp, from int) (Line, []string, error) {
	return n.console.wait(ctx, re, from)
}

// ConsoleSeq is the Seq the node's next console line will get.
func (n *Node) ConsoleSeq() int { return n.console.seq() }

// ConsoleTail writes the node's last lines console lines to w.
func (n *Node) ConsoleTail(w io.Writer, lines int) { n.console.tail(w, lines) }

// powerNode is the node as the qemu driver sees it: the VM's settings.
func (n *Node) powerNode() power.Node {
	return power.Node{UUID: n.UUID, MACs: []string{n.MAC}, DriverInfo: map[string]any{
		qemu.InfoDisk:       n.Disk,
		qemu.InfoMemoryMB:   n.spec.MemoryMB,
		qemu.InfoCPUs:       n.spec.CPUs,
		qemu.InfoBootMode:   n.Firmware,
		qemu.InfoBoot:       qemu.BootNetwork,
		qemu.InfoBridge:     provBridge,
		qemu.InfoNICModel:   n.NICModel,
		qemu.InfoDiskBus:    n.DiskBus,
		qemu.InfoNICROM:     n.spec.NICROM,
		qemu.InfoConsoleLog: n.ConsoleLog,
	}}
}

// machineCommand is the BMC's start command: the qemu driver's command
// line for the boot device the BMC was given, run in the rack's
// namespace, with the in-band interface to the BMC. It returns nil (the
// BMC then fails the power on) when the command cannot be made.
func (n *Node) machineCommand(bootDevice string) []string {
	r := n.rack
	dev := power.BootDisk
	if bootDevice == "pxe" {
		dev = power.BootPXE
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pn := n.powerNode()
	argv, err := func() ([]string, error) {
		if err := r.qemu.SetBootDevice(ctx, pn, dev, false); err != nil {
			return nil, err
		}
		return r.qemu.Command(ctx, pn)
	}()
	if err != nil {
		r.log.Error("node power on: no machine command", "node", n.Name, "boot_device", bootDevice, "error", err)
		return nil
	}
	n.mu.Lock()
	bmc := n.BMC
	n.mu.Unlock()
	if bmc != nil {
		argv = append(argv, bmc.QEMUArgs()...)
	}
	now := time.Now()
	seq := n.console.seq()
	if f, err := os.OpenFile(n.ConsoleLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		fmt.Fprintf(f, "\n=== virtual rack: %s powered on by its BMC at %s, boot device %q ===\n", n.Name, now.UTC().Format(time.RFC3339Nano), bootDevice)
		f.Close()
	}
	n.mu.Lock()
	n.powerOns = append(n.powerOns, PowerOn{At: now, BootDevice: bootDevice, ConsoleSeq: seq})
	n.mu.Unlock()
	r.log.Info("node powered on", "node", n.Name, "boot_device", bootDevice, "firmware", n.Firmware)
	return append([]string{r.ip, "netns", "exec", r.Netns}, argv...)
}
