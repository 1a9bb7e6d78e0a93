// Package inventory collects the machine's hardware inventory in the shape
// the Ironic Python Agent reports it (list_hardware_info; contract §5.1):
// interfaces, CPU, memory, disks, system vendor and firmware, boot mode,
// hostname. CPU, memory and DMI data come from ghw; disks and NICs come
// from the hardware package's sysfs readers, which fill what ghw would
// only read from udev (absent in a u-root ramdisk).
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
)

// Inventory is IPA's hardware inventory.
type Inventory struct {
	Interfaces []hardware.Interface   `json:"interfaces"`
	CPU        CPU                    `json:"cpu"`
	Disks      []hardware.BlockDevice `json:"disks"`
	Memory     Memory                 `json:"memory"`
	// BMCAddress and BMCv6Address are the BMC's LAN addresses; IPA reports
	// "0.0.0.0" and "::/0" when there is none or detection is skipped.
	BMCAddress   string       `json:"bmc_address"`
	BMCv6Address string       `json:"bmc_v6address"`
	BMCMAC       *string      `json:"bmc_mac"`
	SystemVendor SystemVendor `json:"system_vendor"`
	Boot         Boot         `json:"boot"`
	Hostname     string       `json:"hostname"`
}

// CPU describes the processors.
type CPU struct {
	ModelName string `json:"model_name"`
	// Frequency is the maximum (else current) clock in MHz, as lscpu
	// prints it; empty when unknown.
	Frequency string `json:"frequency"`
	// Count is the number of logical CPUs.
	Count        int      `json:"count"`
	Architecture string   `json:"architecture"`
	Flags        []string `json:"flags"`
	SocketCount  int      `json:"socket_count"`
}

// Memory is the machine's RAM.
type Memory struct {
	// Total is the usable memory in bytes (MemTotal).
	Total int64 `json:"total"`
	// PhysicalMB is the installed memory in MiB.
	PhysicalMB int64 `json:"physical_mb"`
}

// SystemVendor is the DMI system identity.
type SystemVendor struct {
	ProductName  string   `json:"product_name"`
	SerialNumber string   `json:"serial_number"`
	Manufacturer string   `json:"manufacturer"`
	Firmware     Firmware `json:"firmware"`
}

// Firmware is the DMI BIOS/UEFI firmware identity.
type Firmware struct {
	Vendor    string `json:"vendor"`
	Version   string `json:"version"`
	BuildDate string `json:"build_date"`
}

// Boot says how the ramdisk booted.
type Boot struct {
	// CurrentBootMode is "uefi" when /sys/firmware/efi exists, else "bios".
	CurrentBootMode string `json:"current_boot_mode"`
	// PXEInterface is the MAC from BOOTIF, when given.
	PXEInterface string `json:"pxe_interface"`
}

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
}

// Collect reads the inventory. A component that cannot be read is logged
// and left empty; only a machine whose disks and NICs both cannot be
// listed is an error.
func Collect(ctx context.Context, opts Options) (*Inventory, error) {
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
	inv := &Inventory{BMCAddress: "0.0.0.0", BMCv6Address: "::/0", Interfaces: []hardware.Interface{}, Disks: []hardware.BlockDevice{}}
	ghwOpts := []any{ghw.WithChroot(root), ghw.WithDisableTools(), ghw.WithDisableWarnings()}

	var errs []error
	disks, err := hardware.Lister{Root: root, Allow: opts.BlockDevices}.List()
	if err != nil {
		errs = append(errs, err)
		log.WarnContext(ctx, "inventory: cannot list disks", "error", err)
	} else if disks != nil {
		inv.Disks = disks
	}
	ifs, err := hardware.ListInterfaces(root)
	if err != nil {
		errs = append(errs, err)
		log.WarnContext(ctx, "inventory: cannot list network interfaces", "error", err)
	} else if ifs != nil {
		for i := range ifs {
			if addrs != nil {
				ifs[i].IPv4Address, ifs[i].IPv6Address = addrs(ifs[i].Name)
			}
		}
		inv.Interfaces = ifs
	}
	if len(errs) == 2 {
		return nil, fmt.Errorf("inventory: %w", errors.Join(errs...))
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
		inv.SystemVendor.Firmware = Firmware{Vendor: dmi(b.Vendor), Version: dmi(b.Version), BuildDate: dmi(b.Date)}
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
	return inv, nil
}

// readBMC fills in the BMC's addresses read in-band (IPA's
// get_bmc_address, get_bmc_mac and get_bmc_v6address); a machine without
// an IPMI device keeps "0.0.0.0", "::/0" and no MAC.
func readBMC(ctx context.Context, inv *Inventory, conn bmc.Conn, root string, log *slog.Logger) {
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
