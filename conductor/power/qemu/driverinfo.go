package qemu

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/rivetmetal/rivet/conductor/power"
)

// driver_info keys the driver reads.
const (
	InfoDisk       = "qemu_disk"        // required: the node's raw disk file, in Config.FilesDir
	InfoMemoryMB   = "qemu_memory_mb"   // default 1024
	InfoCPUs       = "qemu_cpus"        // default 1
	InfoBootMode   = "qemu_boot_mode"   // "uefi" (default, OVMF) or "bios" (SeaBIOS)
	InfoAgentPort  = "qemu_agent_port"  // fixed host port forwarded to the agent's 9999
	InfoConsoleLog = "qemu_console_log" // default StateDir/<uuid>/console.log; else in Config.FilesDir
	InfoBoot       = "qemu_boot"        // "kernel" (default) or "network": how a pxe boot device boots
	InfoBridge     = "qemu_bridge"      // a Linux bridge: the NIC is a tap on it instead of user networking
	InfoNICModel   = "qemu_nic_model"   // NICModels; default virtio
	InfoDiskBus    = "qemu_disk_bus"    // DiskBuses; default virtio
	InfoNICROM     = "qemu_nic_rom"     // NICROMiPXE (default) or NICROMNone
)

// Values of qemu_nic_rom: what network-boots a qemu_boot=network node.
const (
	// NICROMiPXE gives the NIC its iPXE option ROM (Debian's ipxe-qemu):
	// the firmware's network boot is iPXE itself, which asks DHCP for its
	// script at once.
	NICROMiPXE = "ipxe"
	// NICROMNone gives the NIC no option ROM: the firmware's own network
	// stack boots it, as on a server whose NIC has a vendor PXE ROM. OVMF
	// has one for virtio NICs (VirtioNetDxe and its PXE client: DHCP,
	// then the network boot program over TFTP); SeaBIOS has none, so a
	// BIOS node cannot network-boot this way.
	NICROMNone = "none"
)

// Values of qemu_boot.
const (
	// BootKernel boots the prepared deploy ramdisk directly (-kernel,
	// -initrd) when the boot device is pxe: fast, and all user
	// networking needs.
	BootKernel = "kernel"
	// BootNetwork boots through the firmware (OVMF or SeaBIOS) and the
	// NIC's iPXE option ROM, network first when the boot device is pxe,
	// as a real server does; the node needs DHCP and TFTP/HTTP boot
	// services on its network (normally qemu_bridge).
	BootNetwork = "network"
)

// Boot modes.
const (
	BootUEFI = "uefi"
	BootBIOS = "bios"
)

// Defaults for driver_info.
const (
	DefaultMemoryMB = 1024
	DefaultCPUs     = 1
)

// settings are a node's parsed driver_info.
type settings struct {
	disk       string
	diskRel    string // disk in Config.FilesDir, once resolved (files.go)
	memoryMB   int
	cpus       int
	bootMode   string
	agentPort  int // 0: allocated by the driver
	consoleLog string
	consoleRel string // consoleLog in Config.FilesDir, once resolved; "" for the default
	mac        string // "" when the node has no port yet
	boot       string // BootKernel or BootNetwork
	bridge     string // "" for user networking
	nicModel   string
	diskBus    string
	noNICROM   bool // qemu_nic_rom none
}

// uuidPattern keeps node UUIDs usable as directory names and QEMU option
// values.
var uuidPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// parseSettings validates a node's driver_info and MACs; the file paths
// are cleaned, not yet resolved against the files directory (files.go).
func parseSettings(node power.Node) (settings, error) {
	s := settings{memoryMB: DefaultMemoryMB, cpus: DefaultCPUs, bootMode: BootUEFI, boot: BootKernel,
		nicModel: DefaultNICModel, diskBus: DefaultDiskBus}
	bad := func(format string, args ...any) (settings, error) {
		return settings{}, fmt.Errorf("%w: node %s: %s", power.ErrInvalidDriverInfo, node.UUID, fmt.Sprintf(format, args...))
	}
	if !uuidPattern.MatchString(node.UUID) {
		return bad("uuid %q cannot name a VM", node.UUID)
	}
	info := node.DriverInfo
	disk, ok := info[InfoDisk].(string)
	if !ok || disk == "" {
		return bad("%s (the raw disk file) is required", InfoDisk)
	}
	s.disk = filepath.Clean(disk)
	var err error
	if s.memoryMB, err = intSetting(info, InfoMemoryMB, DefaultMemoryMB, 64, 1<<20); err != nil {
		return bad("%v", err)
	}
	if s.cpus, err = intSetting(info, InfoCPUs, DefaultCPUs, 1, 64); err != nil {
		return bad("%v", err)
	}
	if s.agentPort, err = intSetting(info, InfoAgentPort, 0, 1, 65535); err != nil {
		return bad("%v", err)
	}
	if v, ok := info[InfoBootMode]; ok {
		mode, _ := v.(string)
		if mode != BootUEFI && mode != BootBIOS {
			return bad("%s %v: want %q or %q", InfoBootMode, v, BootUEFI, BootBIOS)
		}
		s.bootMode = mode
	}
	if v, ok := info[InfoConsoleLog]; ok {
		p, _ := v.(string)
		if p == "" {
			return bad("%s %v: want a file name", InfoConsoleLog, v)
		}
		s.consoleLog = filepath.Clean(p)
	}
	if v, ok := info[InfoBoot]; ok {
		b, _ := v.(string)
		if b != BootKernel && b != BootNetwork {
			return bad("%s %v: want %q or %q", InfoBoot, v, BootKernel, BootNetwork)
		}
		s.boot = b
	}
	if v, ok := info[InfoBridge]; ok {
		b, _ := v.(string)
		if !bridgePattern.MatchString(b) {
			return bad("%s %v: want a Linux bridge name (up to 15 letters, digits, '.', '-' or '_')", InfoBridge, v)
		}
		s.bridge = b
	}
	if v, ok := info[InfoNICModel]; ok {
		m, _ := v.(string)
		if _, known := nicDevices[m]; !known {
			return bad("%s %v: want one of %s", InfoNICModel, v, strings.Join(NICModels, ", "))
		}
		s.nicModel = m
	}
	if v, ok := info[InfoDiskBus]; ok {
		b, _ := v.(string)
		if !slices.Contains(DiskBuses, b) {
			return bad("%s %v: want one of %s", InfoDiskBus, v, strings.Join(DiskBuses, ", "))
		}
		s.diskBus = b
	}
	if v, ok := info[InfoNICROM]; ok {
		r, _ := v.(string)
		if r != NICROMiPXE && r != NICROMNone {
			return bad("%s %v: want %q or %q", InfoNICROM, v, NICROMiPXE, NICROMNone)
		}
		s.noNICROM = r == NICROMNone
	}
	if len(node.MACs) > 0 {
		hw, err := net.ParseMAC(node.MACs[0])
		if err != nil || len(hw) != 6 {
			return bad("MAC %q: not an Ethernet address", node.MACs[0])
		}
		if hw[0]&1 == 1 {
			return bad("MAC %s is a multicast address", hw)
		}
		s.mac = hw.String()
	}
	return s, nil
}

// intSetting reads an integer driver_info value given as a JSON number, a
// Go integer or a decimal string; def when the key is absent.
func intSetting(info map[string]any, key string, def, minV, maxV int) (int, error) {
	v, ok := info[key]
	if !ok || v == nil {
		return def, nil
	}
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<31 {
			return 0, fmt.Errorf("%s %v: not an integer", key, v)
		}
		n = int64(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return 0, fmt.Errorf("%s %v: not an integer", key, v)
		}
		n = i
	case string:
		i, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q: not an integer", key, x)
		}
		n = i
	default:
		return 0, fmt.Errorf("%s %v: not an integer", key, v)
	}
	if n < int64(minV) || n > int64(maxV) {
		return 0, fmt.Errorf("%s %d: want %d to %d", key, n, minV, maxV)
	}
	return int(n), nil
}
