// Package inventory collects the machine's hardware inventory as a
// wire.Inventory, the shape the Ironic Python Agent reports
// (list_hardware_info; contract §5.1): interfaces, CPU, memory, disks,
// system vendor and firmware, boot mode, hostname. CPU, memory and DMI data
// come from ghw; disks and NICs come from the hardware package's sysfs
// readers, which fill what ghw would only read from udev (absent in a
// u-root ramdisk).
//
// Everything is read under a root directory, so tests run on fixture trees
// and ghw snapshots, and the live machine is Root "/".
package inventory

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jaypipes/ghw"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/bmc"
	"github.com/rivetmetal/rivet/hardware/lldp"
	"github.com/rivetmetal/rivet/wire"
)

// Options say where and what to read. The zero value reads the live
// machine and lists every non-virtual disk.
type Options struct {
	// Root holds proc/ and sys/ (and dev/); "" means "/".
	Root string
	// BlockDevices, when set, restricts the disks listed
	// (ipa-block-devices).
	BlockDevices []string
	// BootIF is the PXE MAC (BOOTIF), already normalized.
	BootIF string
	// Addresses returns an interface's first IPv4 and IPv6 address. Nil:
	// the live addresses when Root is "/", none otherwise.
	Addresses func(iface string) (v4, v6 string)
	// Logger receives one warning per component that could not be read.
	// Nil: slog.Default().
	Logger *slog.Logger
	// BMC is the BMC's in-band interface. Nil: /dev/ipmi0 when Root is
	// "/" and the device exists, else none.
	BMC bmc.Conn
	// LLDP, when set, listens for LLDP on every listed interface while
	// the rest is read (ipa-collect-lldp) and fills each one's "lldp":
	// the TLVs heard, [] when no frame came in time, null when the
	// interface could not be listened on. Nil: every "lldp" is null.
	LLDP LLDPListener
}

// LLDPListener hears LLDP on the named interfaces (lldp.Listener).
type LLDPListener interface {
	Listen(ctx context.Context, interfaces []string) []lldp.Result
}

// Collect reads the inventory. A component that cannot be read is logged
// and left empty; only a machine whose disks and NICs both cannot be
// listed is an error.
func Collect(ctx context.Context, opts Options) (*wire.Inventory, error) {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	addrs := opts.Addresses
	if addrs == nil && root == "/" {
		addrs = liveAddresses
	}
	inv := &wire.Inventory{BMCAddress: wire.NoBMCAddress, BMCv6Address: wire.NoBMCv6Address,
		Interfaces: []wire.NetworkInterface{}, Disks: []wire.Disk{}}
	ghwOpts := []any{ghw.WithChroot(root), ghw.WithDisableTools(), ghw.WithDisableWarnings()}

	var errs []error
	disks, err := hardware.Lister{Root: root, Allow: opts.BlockDevices}.List()
	if err != nil {
		errs = append(errs, err)
		log.WarnContext(ctx, "inventory: cannot list disks", "error", err)
	} else {
		for _, d := range disks {
			inv.Disks = append(inv.Disks, Disk(d))
		}
	}
	ifs, err := hardware.ListInterfaces(root)
	if err != nil {
		errs = append(errs, err)
		log.WarnContext(ctx, "inventory: cannot list network interfaces", "error", err)
	} else {
		for _, it := range ifs {
			nic := networkInterface(it)
			if addrs != nil {
				nic.IPv4Address, nic.IPv6Address = addrs(it.Name)
			}
			inv.Interfaces = append(inv.Interfaces, nic)
		}
	}
	if len(errs) == 2 {
		return nil, fmt.Errorf("inventory: %w", errors.Join(errs...))
	}
	var heard <-chan []lldp.Result
	if opts.LLDP != nil && len(inv.Interfaces) > 0 {
		names := make([]string, len(inv.Interfaces))
		for i, nic := range inv.Interfaces {
			names[i] = nic.Name
		}
		// The wait (up to ipa-lldp-timeout) runs while the rest is read.
		heard = listenLLDP(ctx, opts.LLDP, names)
	}

	if cpu, err := ghw.CPU(ghwOpts...); err != nil {
		log.WarnContext(ctx, "inventory: cannot read the CPUs", "error", err)
	} else {
		inv.CPU.Count = int(cpu.TotalHardwareThreads)
		inv.CPU.SocketCount = len(cpu.Processors)
		if len(cpu.Processors) > 0 {
			inv.CPU.ModelName = cpu.Processors[0].Model
			inv.CPU.Flags = cpu.Processors[0].Capabilities
		}
	}
	if inv.CPU.Flags == nil {
		inv.CPU.Flags = []string{}
	}
	inv.CPU.Architecture = architecture()
	inv.CPU.Frequency = frequency(root)

	if mem, err := ghw.Memory(ghwOpts...); err != nil {
		log.WarnContext(ctx, "inventory: cannot read the memory size", "error", err)
	} else {
		inv.Memory.Total = mem.TotalUsableBytes
		inv.Memory.PhysicalMB = mem.TotalPhysicalBytes >> 20
	}
	if p, err := ghw.Product(ghwOpts...); err == nil {
		inv.SystemVendor.ProductName = dmi(p.Name)
		inv.SystemVendor.SerialNumber = dmi(p.SerialNumber)
		inv.SystemVendor.Manufacturer = dmi(p.Vendor)
	} else {
		log.WarnContext(ctx, "inventory: cannot read the DMI product", "error", err)
	}
	if b, err := ghw.BIOS(ghwOpts...); err == nil {
		inv.SystemVendor.Firmware = wire.SystemFirmware{Vendor: dmi(b.Vendor), Version: dmi(b.Version), BuildDate: dmi(b.Date)}
	} else {
		log.WarnContext(ctx, "inventory: cannot read the DMI firmware", "error", err)
	}

	inv.Boot.CurrentBootMode = "bios"
	if _, err := os.Stat(filepath.Join(root, "sys/firmware/efi")); err == nil {
		inv.Boot.CurrentBootMode = "uefi"
	}
	inv.Boot.PXEInterface = opts.BootIF
	inv.Hostname = hostname(root)
	readBMC(ctx, inv, opts.BMC, root, log)
	if heard != nil {
		fillLLDP(inv, <-heard)
	}
	return inv, nil
}

// listenLLDP starts l on names and delivers its results.
func listenLLDP(ctx context.Context, l LLDPListener, names []string) <-chan []lldp.Result {
	out := make(chan []lldp.Result, 1)
	go func() { out <- l.Listen(ctx, names) }()
	return out
}

// fillLLDP sets each interface's "lldp" from what its listener heard, as
// IPA reports it: [type, hex] pairs, [] when nothing came, null when the
// interface could not be listened on.
func fillLLDP(inv *wire.Inventory, results []lldp.Result) {
	byName := make(map[string]lldp.Result, len(results))
	for _, r := range results {
		byName[r.Interface] = r
	}
	for i := range inv.Interfaces {
		r, ok := byName[inv.Interfaces[i].Name]
		if !ok || r.Err != nil {
			continue
		}
		tlvs := make([]wire.LLDPTLV, 0, len(r.TLVs))
		for _, t := range r.TLVs {
			tlvs = append(tlvs, wire.NewLLDPTLV(int(t.Type), t.Value))
		}
		inv.Interfaces[i].LLDP = tlvs
	}
}

// readBMC fills in the BMC's addresses read in-band (IPA's
// get_bmc_address, get_bmc_mac and get_bmc_v6address); a machine without
// an IPMI device keeps "0.0.0.0", "::/0" and no MAC.
func readBMC(ctx context.Context, inv *wire.Inventory, conn bmc.Conn, root string, log *slog.Logger) {
	if conn == nil {
		if root != "/" {
			return
		}
		dev, err := bmc.Open(bmc.DefaultDevice)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				log.WarnContext(ctx, "inventory: cannot open the BMC's device", "error", err)
			}
			return
		}
		defer dev.Close()
		conn = dev
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := bmc.Read(ctx, conn)
	if err != nil {
		log.WarnContext(ctx, "inventory: cannot read the BMC's addresses", "error", err)
		return
	}
	inv.BMCAddress, inv.BMCv6Address = info.Address, info.V6Address
	if info.MAC != "" {
		inv.BMCMAC = &info.MAC
	}
}

// Disk is a block device as the inventory's "disks" (and the inspection's
// "root_disk") describe it.
func Disk(d hardware.BlockDevice) wire.Disk {
	return wire.Disk{
		Name: d.Path, Model: d.Model, Vendor: d.Vendor, Serial: d.Serial,
		WWN: d.WWN, WWNWithExt: d.WWNWithExt, WWNVendExt: d.WWNVendExt,
		HCTL: d.HCTL, ByPath: d.ByPath, Size: d.Size, Rotational: d.Rotational,
		LogicalSectors: d.LogicalSectorSize, PhysicalSectors: d.PhysicalSectorSize, Tran: d.Tran,
	}
}

// networkInterface is a NIC as the inventory's "interfaces" describe it,
// without its addresses and LLDP (filled by Collect); the InfiniBand
// client id and the biosdevname name are not collected (null, as IPA
// sends them when unknown).
func networkInterface(it hardware.Interface) wire.NetworkInterface {
	return wire.NetworkInterface{
		Name: it.Name, MACAddress: it.MACAddress, HasCarrier: it.HasCarrier,
		Vendor: it.Vendor, Product: it.Product, SpeedMbps: it.SpeedMbps,
		PCIAddress: it.PCIAddress, Driver: it.Driver,
	}
}

// dmi drops ghw's placeholder for values it could not read.
func dmi(s string) string {
	if s == "unknown" {
		return ""
	}
	return strings.TrimSpace(s)
}

// architecture is the kernel's machine name (uname -m).
func architecture() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	default:
		return runtime.GOARCH
	}
}

// frequency is lscpu's "CPU max MHz" (cpufreq's cpuinfo_max_freq), else
// the first "cpu MHz" of /proc/cpuinfo.
func frequency(root string) string {
	if b, err := os.ReadFile(filepath.Join(root, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")); err == nil {
		if khz, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && khz > 0 {
			return strconv.FormatFloat(float64(khz)/1000, 'f', 4, 64)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// hostname reads the kernel's host name under root.
func hostname(root string) string {
	if root == "/" {
		if h, err := os.Hostname(); err == nil {
			return h
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel/hostname"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// liveAddresses returns the first global IPv4 and IPv6 address of a NIC.
func liveAddresses(name string) (string, string) {
	it, err := net.InterfaceByName(name)
	if err != nil {
		return "", ""
	}
	as, err := it.Addrs()
	if err != nil {
		return "", ""
	}
	var v4, v6 string
	for _, a := range as {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		switch {
		case ipn.IP.To4() != nil && v4 == "":
			v4 = ipn.IP.String()
		case ipn.IP.To4() == nil && v6 == "" && !ipn.IP.IsLinkLocalUnicast():
			v6 = ipn.IP.String()
		}
	}
	return v4, v6
}
