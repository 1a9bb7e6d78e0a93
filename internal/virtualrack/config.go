package virtualrack

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/power/qemu"
)

// Firmware of a node.
const (
	UEFI = qemu.BootUEFI // OVMF
	BIOS = qemu.BootBIOS // SeaBIOS
)

// Defaults of Config and NodeSpec fields.
const (
	DefaultNICModel         = "e1000e"
	DefaultDiskSize         = 5 << 30
	DefaultMemoryMB         = 1024
	DefaultHeartbeatTimeout = 30 * time.Second
	// DefaultKernelAppendParams keeps Ironic's defaults and puts the
	// deploy ramdisk's console on the serial port (the console log).
	DefaultKernelAppendParams = "%default% console=ttyS0"
	// APIPort is the conductor's API port on the provisioning network.
	APIPort = 6385
	// IPMIPort is where each BMC listens (IPMI's standard port).
	IPMIPort = 623
	// MaxNodes bounds a rack: the DHCP range and BMC addresses of one /24
	// each, and the host's memory.
	MaxNodes = 64
)

// DefaultNetwork is the provisioning network; the BMC network is the /24
// after it.
var DefaultNetwork = netip.MustParsePrefix("10.250.0.0/24")

// maxDirLen keeps Dir short enough for QEMU's QMP socket path
// (Dir/qemu/<uuid>/qmp.sock within a unix socket's 107 bytes).
const maxDirLen = 56

// NodeSpec describes one node. The zero value is a UEFI node with an
// e1000e NIC and an NVMe disk.
type NodeSpec struct {
	// Name is the node's name in the conductor and in the rack's files:
	// up to 16 of [A-Za-z0-9-] (IPMI's limit for the BMC's name).
	// Zero: "node<i>", counting from 1.
	Name string
	// Firmware is UEFI (zero) or BIOS.
	Firmware string
	// NICModel is a qemu driver NIC model (qemu.NICModels). Zero:
	// DefaultNICModel.
	NICModel string
	// DiskBus is a qemu driver disk bus (qemu.DiskBuses). Zero: nvme.
	DiskBus string
	// NICROM is what network-boots the node: qemu.NICROMiPXE (zero: the
	// NIC's iPXE option ROM, which asks DHCP for the iPXE script at once)
	// or qemu.NICROMNone (the firmware's own PXE client: DHCP, the network
	// boot program over TFTP, then iPXE; OVMF has one for virtio NICs
	// only, SeaBIOS none).
	NICROM string
	// DiskSize is the sparse disk's size in bytes (at least 4 GiB, so that
	// the agent picks it without root device hints). Zero:
	// DefaultDiskSize.
	DiskSize int64
	// MemoryMB and CPUs size the VM. Zero: DefaultMemoryMB, 1.
	MemoryMB, CPUs int
}

// Config configures a rack. Dir, Conductor, DeployKernel, DeployRamdisk
// and at least one node are required.
type Config struct {
	// Dir holds the rack's files: the conductor's state and log, the user
	// file, each node's disk, console log, QEMU state and BMC files. It
	// is created; at most 56 bytes long (QEMU's socket paths). Close
	// removes the disks and leaves the rest to the caller.
	Dir string
	// Conductor is the rivet-conductor binary.
	Conductor string
	// DeployKernel and DeployRamdisk are the conductor's deploy files
	// (network-booted nodes need the hardware flavour: its kernel has the
	// drivers of the emulated NICs and disks).
	DeployKernel, DeployRamdisk string
	// ImageDir, when set, is served by the conductor under /images/.
	ImageDir string
	// Nodes are the rack's nodes, in order.
	Nodes []NodeSpec
	// Network is the provisioning network, a /24 (the conductor is .1);
	// the BMC network is the /24 after it. Zero: DefaultNetwork.
	Network netip.Prefix
	// HeartbeatTimeout is the conductor's --ramdisk-heartbeat-timeout.
	// Zero: DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// KernelAppendParams is every node's driver_info
	// kernel_append_params. Zero: DefaultKernelAppendParams.
	KernelAppendParams string
	// AutomatedClean turns the conductor's automated cleaning on. The
	// rack turns it off by default, explicitly (--automated-clean=false),
	// as make demo does: cleaning boots every node into the ramdisk on
	// provide and after each undeploy, a minute per node under software
	// emulation, to erase disks that hold nothing but test images.
	AutomatedClean bool
	// ConductorArgs are appended to the conductor's flags.
	ConductorArgs []string
	// ConductorOutput, when set, also receives the conductor's log (it
	// always goes to Dir/conductor.log).
	ConductorOutput io.Writer
	// QEMU is the QEMU program. Zero: qemu.DefaultBinary.
	QEMU string
	// Logger receives the rack's own logs. Zero: slog.Default().
	Logger *slog.Logger
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,15}$`)

// withDefaults checks cfg and fills in its zero values.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.Dir == "" {
		bad("no Dir")
	} else if d, err := filepath.Abs(cfg.Dir); err != nil {
		bad("Dir: %v", err)
	} else if cfg.Dir = d; len(d) > maxDirLen {
		bad("Dir %s: longer than %d bytes (QEMU's socket paths under it would not fit); use a directory like /tmp/rivet-rack-X", d, maxDirLen)
	}
	for name, p := range map[string]string{"Conductor": cfg.Conductor, "DeployKernel": cfg.DeployKernel, "DeployRamdisk": cfg.DeployRamdisk} {
		if p == "" {
			bad("no %s", name)
		}
	}
	if len(cfg.Nodes) == 0 || len(cfg.Nodes) > MaxNodes {
		bad("%d nodes: want 1 to %d", len(cfg.Nodes), MaxNodes)
	}
	if !cfg.Network.IsValid() {
		cfg.Network = DefaultNetwork
	}
	if p := cfg.Network.Masked(); !p.Addr().Is4() || p.Bits() != 24 || p.Addr().As4()[2] == 255 {
		bad("Network %s: want an IPv4 /24 with room for the BMC /24 after it", cfg.Network)
	} else {
		cfg.Network = p
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.HeartbeatTimeout < time.Second {
		bad("HeartbeatTimeout %s: want at least 1s", cfg.HeartbeatTimeout)
	}
	if cfg.KernelAppendParams == "" {
		cfg.KernelAppendParams = DefaultKernelAppendParams
	}
	if cfg.QEMU == "" {
		cfg.QEMU = qemu.DefaultBinary
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	nodes := make([]NodeSpec, len(cfg.Nodes))
	seen := map[string]bool{}
	for i, n := range cfg.Nodes {
		if n.Name == "" {
			n.Name = fmt.Sprintf("node%d", i+1)
		}
		if !nameRE.MatchString(n.Name) {
			bad("node %d: name %q: want up to 16 of [A-Za-z0-9-], starting with a letter or digit", i+1, n.Name)
		} else if seen[strings.ToLower(n.Name)] {
			bad("node %d: name %q used twice", i+1, n.Name)
		}
		seen[strings.ToLower(n.Name)] = true
		if n.Firmware == "" {
			n.Firmware = UEFI
		}
		if n.Firmware != UEFI && n.Firmware != BIOS {
			bad("node %s: firmware %q: want %q or %q", n.Name, n.Firmware, UEFI, BIOS)
		}
		if n.NICModel == "" {
			n.NICModel = DefaultNICModel
		}
		if !slices.Contains(qemu.NICModels, n.NICModel) {
			bad("node %s: NIC model %q: want one of %s", n.Name, n.NICModel, strings.Join(qemu.NICModels, ", "))
		}
		if n.DiskBus == "" {
			n.DiskBus = qemu.DiskNVMe
		}
		if !slices.Contains(qemu.DiskBuses, n.DiskBus) {
			bad("node %s: disk bus %q: want one of %s", n.Name, n.DiskBus, strings.Join(qemu.DiskBuses, ", "))
		}
		switch n.NICROM {
		case "":
			n.NICROM = qemu.NICROMiPXE
		case qemu.NICROMiPXE:
		case qemu.NICROMNone:
			if n.Firmware != UEFI || n.NICModel != "virtio" {
				bad("node %s: NIC ROM %q needs UEFI firmware and a virtio NIC (OVMF's own PXE client drives only virtio)", n.Name, n.NICROM)
			}
		default:
			bad("node %s: NIC ROM %q: want %q or %q", n.Name, n.NICROM, qemu.NICROMiPXE, qemu.NICROMNone)
		}
		if n.DiskSize == 0 {
			n.DiskSize = DefaultDiskSize
		}
		if n.DiskSize < 4<<30 || n.DiskSize%(1<<20) != 0 {
			bad("node %s: disk size %d: want at least 4 GiB, a multiple of 1 MiB", n.Name, n.DiskSize)
		}
		if n.MemoryMB == 0 {
			n.MemoryMB = DefaultMemoryMB
		}
		if n.CPUs == 0 {
			n.CPUs = 1
		}
		if n.MemoryMB < 512 || n.CPUs < 1 || n.CPUs > 8 {
			bad("node %s: %d MiB and %d CPUs: want at least 512 MiB and 1 to 8 CPUs", n.Name, n.MemoryMB, n.CPUs)
		}
		nodes[i] = n
	}
	cfg.Nodes = nodes
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("virtualrack: %w", err)
	}
	return cfg, nil
}

// addressPlan is where everything sits on the rack's two networks.
type addressPlan struct {
	prov, bmc netip.Prefix
}

func planFor(network netip.Prefix) addressPlan {
	a := network.Addr().As4()
	a[2]++
	return addressPlan{prov: network, bmc: netip.PrefixFrom(netip.AddrFrom4(a), 24)}
}

// host is address n of a /24.
func host(p netip.Prefix, n int) netip.Addr {
	a := p.Addr().As4()
	a[3] = byte(n)
	return netip.AddrFrom4(a)
}

// conductorProv and conductorBMC are the conductor's addresses.
func (p addressPlan) conductorProv() netip.Addr { return host(p.prov, 1) }
func (p addressPlan) conductorBMC() netip.Addr  { return host(p.bmc, 1) }

// dhcpRange is the provisioning network's lease range.
func (p addressPlan) dhcpRange() (netip.Addr, netip.Addr) {
	return host(p.prov, 100), host(p.prov, 100+MaxNodes*2-1)
}

// bmcAddr is node i's BMC address (i from 0).
func (p addressPlan) bmcAddr(i int) netip.Addr { return host(p.bmc, 10+i) }

// nodeMAC and bmcMAC are node i's NIC and BMC MAC addresses (i from 0).
func nodeMAC(i int) string { return fmt.Sprintf("52:54:00:72:00:%02x", i+1) }
func bmcMAC(i int) string  { return fmt.Sprintf("52:54:00:72:01:%02x", i+1) }
