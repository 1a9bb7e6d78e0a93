package testimage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/google/uuid"
)

// DefaultPartitionSize is the partition image's size when
// PartitionOptions.Size is zero.
const DefaultPartitionSize = 96 << 20

// DefaultKernelVersion names the kernel in the partition image's /boot
// when PartitionOptions.KernelVersion is empty.
const DefaultKernelVersion = "1.0.0-rivet"

// CmdlinePrefix starts the console line on which the booted image prints
// its kernel command line (see CmdlinePattern).
const CmdlinePrefix = "RIVET-TESTIMAGE-CMDLINE"

// CmdlinePattern matches that line; submatch 1 is the command line.
var CmdlinePattern = regexp.MustCompile(CmdlinePrefix + ` (.*)$`)

// PartitionOptions describe a partition image (Ironic's image_type
// "partition"): one ext4 filesystem, no partition table, that the agent
// writes into the root partition it creates and then makes bootable by
// running the image's own grub-install and grub-mkconfig in a chroot. Its
// /boot holds a kernel and the test initramfs (the same init as the
// whole-disk image: it prints the marker, then its kernel command line,
// and powers off); /usr holds GRUB for BIOS (i386-pc) and the programs
// grub-install and grub-mkconfig run, copied from the host with the shared
// libraries they load (Debian's grub-pc-bin and grub2-common must be
// installed). Kernel and Output are required; every other field works
// with its zero value.
type PartitionOptions struct {
	// Kernel is copied to /boot/vmlinuz-<KernelVersion>. Required.
	Kernel string

	// KernelVersion names the kernel and its initramfs in /boot, as
	// grub-mkconfig pairs them (vmlinuz-V, initrd.img-V); it starts with
	// a digit. Zero: DefaultKernelVersion.
	KernelVersion string

	// Output is the path of the raw filesystem image. Required.
	Output string

	// ID names the image in its marker line. Zero: DefaultID.
	ID string

	// Size of the image in bytes, a multiple of 1 MiB, from 64 MiB to
	// 512 MiB. Zero: DefaultPartitionSize.
	Size int64

	// InitPackage and ModuleDir: the Go package built as /init of the
	// initramfs and where it is built (as in Options).
	InitPackage, ModuleDir string

	// Mke2fs is the mke2fs program (e2fsprogs, 1.43 or newer for -d).
	// Zero: found on PATH.
	Mke2fs string

	// Logger receives progress. Zero: slog.Default().
	Logger *slog.Logger
}

// PartitionResult describes a built partition image.
type PartitionResult struct {
	// Path is the image file (PartitionOptions.Output).
	Path string
	// ID is the image id in its marker line.
	ID string
	// SHA256 is the hex SHA-256 of the image file.
	SHA256 string
	// Size is the image size in bytes.
	Size int64
	// FSUUID is the ext4 filesystem's UUID: get_partition_uuids reports
	// it as the root UUID, and grub-mkconfig puts root=UUID=<it> on the
	// deployed kernel's command line.
	FSUUID string
	// KernelVersion names /boot/vmlinuz-<it>.
	KernelVersion string
}

// grubPrograms are the image's GRUB tools: grub-install (i386-pc), and
// grub-mkconfig with the GRUB programs it runs.
var grubPrograms = []string{
	"/usr/sbin/grub-install", "/usr/sbin/grub-mkconfig", "/usr/sbin/grub-probe",
	"/usr/bin/grub-mkrelpath", "/usr/bin/grub-editenv", "/usr/bin/grub-script-check",
}

// shellPrograms are what grub-mkconfig and its /etc/grub.d scripts run
// (found by running them in a chroot of this image until nothing was
// missing); dpkg compares kernel versions.
var shellPrograms = []string{
	"sh", "sed", "grep", "cat", "tr", "cut", "dirname", "basename", "rm", "mv", "cp", "chmod",
	"mkdir", "ls", "sort", "uname", "head", "tail", "awk", "stat", "readlink", "touch", "wc",
	"id", "expr", "env", "mktemp", "tee", "dpkg",
}

// grubData are the host's GRUB data: the i386-pc modules and images
// grub-install writes (grub-pc-bin), grub-mkconfig's library and
// templates (grub-common).
var grubData = []string{"/usr/lib/grub/i386-pc", "/usr/share/grub"}

// grubScripts are the /etc/grub.d generators the image keeps: the header,
// the Linux entries, the custom hooks. Others on the host (os-prober, Xen,
// the ipxe package's entry) would describe the host, not the image.
var grubScripts = []string{"/etc/grub.d/00_header", "/etc/grub.d/10_linux", "/etc/grub.d/40_custom"}

// defaultGrub is the image's /etc/default/grub: boot the first entry at
// once, on the serial console.
const defaultGrub = `# Written by rivet's testimage.
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Rivet
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0 panic=-1"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
`

var kernelVersionPattern = regexp.MustCompile(`^[0-9][A-Za-z0-9._+-]{0,63}$`)

func (o PartitionOptions) withDefaults() (PartitionOptions, error) {
	if o.Kernel == "" {
		return o, fmt.Errorf("testimage: no kernel given")
	}
	if o.Output == "" {
		return o, fmt.Errorf("testimage: no output path given")
	}
	if o.ID == "" {
		o.ID = DefaultID
	}
	if !idPattern.MatchString(o.ID) {
		return o, fmt.Errorf("testimage: image id %q: want 1-64 characters from [A-Za-z0-9._-]", o.ID)
	}
	if o.KernelVersion == "" {
		o.KernelVersion = DefaultKernelVersion
	}
	if !kernelVersionPattern.MatchString(o.KernelVersion) {
		return o, fmt.Errorf("testimage: kernel version %q: want a digit, then up to 63 of [A-Za-z0-9._+-]", o.KernelVersion)
	}
	if o.Size == 0 {
		o.Size = DefaultPartitionSize
	}
	if o.Size%(1<<20) != 0 || o.Size < 64<<20 || o.Size > 512<<20 {
		return o, fmt.Errorf("testimage: partition image size %d: want a multiple of 1 MiB from 64 MiB to 512 MiB", o.Size)
	}
	if o.InitPackage == "" {
		o.InitPackage = DefaultInitPackage
	}
	if o.Mke2fs == "" {
		o.Mke2fs = "mke2fs"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// PartitionFSUUID is the filesystem UUID of the partition image with the
// given id (a name-based UUID, so the same id always gets the same one).
func PartitionFSUUID(id string) string {
	ns := uuid.MustParse("6f0b7a52-4a0c-4b8e-9a57-72697665746d") // Rivet test images
	return uuid.NewSHA1(ns, []byte(id+"/root-fs")).String()
}

// BuildPartition builds the partition image described by opts. The image
// is made in a temporary file next to opts.Output and renamed into place
// when complete. It needs no root: the filesystem is written by mke2fs -d
// from a staging directory.
func BuildPartition(ctx context.Context, opts PartitionOptions) (PartitionResult, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return PartitionResult{}, err
	}
	start := time.Now()
	if _, err := os.Stat(o.Kernel); err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: kernel: %w", err)
	}
	if _, err := os.Stat("/usr/lib/grub/i386-pc/boot.img"); err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: GRUB for BIOS is not installed (Debian grub-pc-bin; scripts/install-deps.sh rack): %w", err)
	}
	mke2fs, err := exec.LookPath(o.Mke2fs)
	if err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: mke2fs (e2fsprogs): %w", err)
	}
	if o.ModuleDir == "" {
		if o.ModuleDir, err = os.Getwd(); err != nil {
			return PartitionResult{}, fmt.Errorf("testimage: working directory: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "rivet-partimage-")
	if err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: %w", err)
	}
	fsUUID := PartitionFSUUID(o.ID)
	if err := stageRoot(ctx, o, tmp, root, fsUUID); err != nil {
		return PartitionResult{}, err
	}

	if err := os.MkdirAll(filepath.Dir(o.Output), 0o755); err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: output dir: %w", err)
	}
	part := filepath.Join(filepath.Dir(o.Output), "."+filepath.Base(o.Output)+".tmp")
	os.Remove(part)
	defer os.Remove(part)
	f, err := os.Create(part)
	if err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: %w", err)
	}
	err = f.Truncate(o.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: %w", err)
	}
	// 4 KiB blocks; the UUID and directory hash seed fixed by the id.
	cmd := exec.CommandContext(ctx, mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "rivet-root",
		"-U", fsUUID, "-E", "hash_seed="+fsUUID+",root_owner=0:0", "-d", root, part)
	if b, err := cmd.CombinedOutput(); err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: %s: %w\n%s", mke2fs, err, b)
	}
	sum, err := fileSHA256(part)
	if err != nil {
		return PartitionResult{}, err
	}
	if err := os.Rename(part, o.Output); err != nil {
		return PartitionResult{}, fmt.Errorf("testimage: %w", err)
	}
	res := PartitionResult{Path: o.Output, ID: o.ID, SHA256: sum, Size: o.Size, FSUUID: fsUUID, KernelVersion: o.KernelVersion}
	o.Logger.InfoContext(ctx, "built partition test image", "path", res.Path, "id", res.ID, "bytes", res.Size,
		"sha256", res.SHA256, "fs_uuid", res.FSUUID, "elapsed", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// stageRoot fills root with the image's files: the kernel and initramfs in
// /boot, GRUB and its tools from the host, /etc/default/grub, /etc/fstab.
func stageRoot(ctx context.Context, o PartitionOptions, tmp, root, fsUUID string) error {
	for _, d := range []string{"boot/grub", "dev", "proc", "sys", "run", "tmp", "etc/default", "etc/grub.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("testimage: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	h, err := newHostTree(root)
	if err != nil {
		return err
	}
	for _, p := range grubPrograms {
		if err := h.program(p); err != nil {
			return fmt.Errorf("%w (install Debian's grub2-common and grub-pc-bin: scripts/install-deps.sh rack)", err)
		}
	}
	for _, name := range shellPrograms {
		p, err := hostProgram(name)
		if err != nil {
			return err
		}
		if err := h.program(p); err != nil {
			return err
		}
	}
	for _, d := range grubData {
		if err := h.tree(d); err != nil {
			return err
		}
	}
	for _, s := range grubScripts {
		if _, err := h.link(s); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}

	initBin := filepath.Join(tmp, "init")
	if err := buildInit(ctx, o.ModuleDir, o.InitPackage, initBin); err != nil {
		return err
	}
	boot := filepath.Join(root, "boot")
	if err := writeInitrd(filepath.Join(boot, "initrd.img-"+o.KernelVersion), initBin, o.ID); err != nil {
		return err
	}
	if err := copyHostFile(o.Kernel, filepath.Join(boot, "vmlinuz-"+o.KernelVersion), 0o644); err != nil {
		return err
	}
	files := map[string]string{
		"etc/default/grub": defaultGrub,
		"etc/fstab":        "# Written by rivet's testimage.\nUUID=" + fsUUID + "\t/\text4\terrors=remount-ro\t0\t1\n",
		"etc/hostname":     o.ID + "\n",
		idFileName:         o.ID + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("testimage: %w", err)
		}
	}
	return nil
}

// hostProgram finds a program in the host's system directories.
func hostProgram(name string) (string, error) {
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("testimage: %s not found on the host (/usr/sbin, /usr/bin, /sbin, /bin)", name)
}
