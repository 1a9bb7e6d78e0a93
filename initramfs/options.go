package initramfs

import (
	"fmt"
	"log/slog"
)

// DefaultAgentPackage is the Go package built as the ramdisk's uinit.
const DefaultAgentPackage = "github.com/rivetmetal/rivet/cmd/rivet-agent"

// InitPackage is u-root's init, always part of the busybox binary.
const InitPackage = "github.com/u-root/u-root/cmds/core/init"

// ModprobePackage is Rivet's modprobe (hardware/kmod): built into the
// busybox binary and linked as /sbin/modprobe, the program the kernel runs
// to load a module it needs (a filesystem, an md personality, a crypto
// algorithm).
const ModprobePackage = "github.com/rivetmetal/rivet/initramfs/cmds/modprobe"

// DefaultCommands are the commands built into the busybox binary besides
// init: enough for an operator on the console to look around, and
// modprobe.
var DefaultCommands = []string{
	ModprobePackage,
	"github.com/u-root/u-root/cmds/core/cat",
	"github.com/u-root/u-root/cmds/core/dmesg",
	"github.com/u-root/u-root/cmds/core/gosh",
	"github.com/u-root/u-root/cmds/core/ip",
	"github.com/u-root/u-root/cmds/core/ls",
	"github.com/u-root/u-root/cmds/core/lsmod",
	"github.com/u-root/u-root/cmds/core/mount",
	"github.com/u-root/u-root/cmds/core/ps",
	"github.com/u-root/u-root/cmds/core/shutdown",
}

// DefaultLoadModules are the kernel modules named in
// /lib/modules-load.d/rivet.conf: the virtio drivers a QEMU node needs,
// efivarfs (UEFI boot entries), and vfat with its code pages (mounting an
// EFI system partition: the ramdisk has no modprobe helper for the
// kernel's on-demand loading). Dependencies are resolved through
// modules.dep at boot.
var DefaultLoadModules = []string{"virtio_pci", "virtio_net", "virtio_blk", "virtio_rng",
	"efivarfs", "vfat", "nls_cp437", "nls_ascii"}

// HardwareLoadModules are the modules named in modules-load.d by the
// hardware flavour: only those no device asks for (filesystems of a UEFI
// deploy, the IPMI device interface the agent reads the BMC through).
// Device drivers are loaded by the agent from each device's modalias
// (hardware/kmod), not from a list.
var HardwareLoadModules = []string{"efivarfs", "vfat", "nls_cp437", "nls_ascii", "ipmi_devintf"}

// Compression is the compression of the output archive.
type Compression string

// Compressions the kernel's initramfs unpacker understands (Debian's kernels
// have RD_ZSTD, RD_GZIP and RD_XZ built in).
const (
	Zstd Compression = "zstd"
	Gzip Compression = "gzip"
	XZ   Compression = "xz"
	None Compression = "none"
)

// ParseCompression returns the Compression named s ("" means Zstd).
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case "":
		return Zstd, nil
	case Zstd, Gzip, XZ, None:
		return c, nil
	default:
		return "", fmt.Errorf("initramfs: unknown compression %q (want zstd, gzip, xz or none)", s)
	}
}

// Options say what goes into the ramdisk. The zero value of every field but
// Output is usable.
type Options struct {
	// AgentPackage is the Go package (import path, or a directory path)
	// built as a separate binary into /bin and linked from /bin/uinit.
	// Zero: DefaultAgentPackage. Tests point it at a small test program.
	AgentPackage string

	// AgentArgs are passed to the uinit through /etc/uinit.flags.
	// Zero: no arguments.
	AgentArgs []string

	// ModulesDir is a directory tree copied to the archive's root,
	// normally lib/modules/<kernel version>/... with a modules.dep made
	// by depmod. Zero: no kernel modules.
	ModulesDir string

	// FirmwareDir is a directory tree copied to the archive's root,
	// normally lib/firmware/... with the files the modules request
	// (scripts/fetch-firmware.sh). Zero: no firmware.
	FirmwareDir string

	// LoadModules are written to /lib/modules-load.d/rivet.conf, which
	// u-root's init reads at boot. Zero (nil): DefaultLoadModules when
	// ModulesDir is set, nothing otherwise. An empty non-nil slice writes
	// no file.
	LoadModules []string

	// Output is the path of the compressed archive. Required.
	Output string

	// Compression of Output. Zero: Zstd.
	Compression Compression

	// Commands are the u-root commands (import paths) built into the
	// busybox binary besides InitPackage. Zero (nil): DefaultCommands.
	// An empty non-nil slice builds init alone.
	Commands []string

	// Shell is the command linked from /bin/sh and /bin/defaultsh, which
	// init runs on the console if the uinit exits. Zero: "gosh" when gosh
	// is among the commands, otherwise no shell.
	Shell string

	// ModuleDir is the Go module directory in which packages are resolved
	// and built. Zero: the current working directory, as for go build.
	ModuleDir string

	// CAFile is a PEM bundle of CA certificates copied to CAFilePath,
	// which the agent trusts (besides the system roots) to verify the
	// conductor, the inspection callback and image servers. Zero: none.
	CAFile string

	// Logger receives build progress. Zero: slog.Default().
	Logger *slog.Logger
}

// Result describes a built archive.
type Result struct {
	// Path is the archive's path (Options.Output).
	Path string
	// Compression is the compression used.
	Compression Compression
	// Size is the size of the archive file in bytes (compressed).
	Size int64
	// CPIOSize is the size of the uncompressed cpio stream in bytes.
	CPIOSize int64
}
