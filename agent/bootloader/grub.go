package bootloader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/ondisk"
)

// Mounter mounts filesystems for the GRUB step.
type Mounter interface {
	// Mount mounts the filesystem on device at target.
	Mount(device, target, fstype string) error
	// Bind bind-mounts source (a directory of the running system) at
	// target.
	Bind(source, target string) error
	// Unmount unmounts target, detaching it lazily if it stays busy.
	Unmount(target string) error
	// DeviceNode returns a path to a block device node for major:minor,
	// making one under dir when /dev has none (no udev, no devtmpfs).
	DeviceNode(path string, major, minor int, dir string) (string, error)
}

// bindMounts are the running system's directories the image's tools need
// inside the chroot.
var bindMounts = []string{"/dev", "/proc", "/sys", "/run"}

// optionalBind is the one of bindMounts a ramdisk may lack (u-root's has
// no /run): the chroot then gets an empty tmpfs there, where the image's
// tools (LVM, libudev clients) look for runtime state and find none.
const optionalBind = "/run"

// ErrRootNotFound is returned when no partition carries the root UUID.
var ErrRootNotFound = errors.New("root partition not found")

// partUUID returns the partition's PARTUUID: its GPT unique GUID, or for
// MBR disks the disk signature and number ("1a2b3c4d-01").
func partUUID(f *os.File, d hardware.BlockDevice, number int) string {
	ss := d.LogicalSectorSize
	if ss == 0 {
		ss = 512
	}
	return ondisk.PartUUID(f, d.Size, ss, number)
}

// findPartition returns the partition of d whose filesystem UUID or
// PARTUUID is uuid, and its filesystem.
func findPartition(f *os.File, d hardware.BlockDevice, uuid string) (hardware.Partition, ondisk.Filesystem, error) {
	for _, p := range d.Partitions {
		fs, ok := ondisk.Probe(f, p.Start)
		if ok && strings.EqualFold(fs.UUID, uuid) {
			return p, fs, nil
		}
		if strings.EqualFold(partUUID(f, d, p.Number), uuid) {
			return p, fs, nil
		}
	}
	return hardware.Partition{}, ondisk.Filesystem{}, fmt.Errorf("%w: no partition with UUID %s on %s (%d partitions)", ErrRootNotFound, uuid, d.Path, len(d.Partitions))
}

// grubTarget is grub-install's EFI platform for this machine.
func grubTarget() string {
	if runtime.GOARCH == "arm64" {
		return "arm64-efi"
	}
	return "x86_64-efi"
}

// installGRUB mounts the written root filesystem and runs its own GRUB
// tools in a chroot.
func (in *Installer) installGRUB(ctx context.Context, req Request, uefi bool) (err error) {
	d := req.Disk
	f, err := os.Open(in.devPath(d.Name))
	if err != nil {
		return fmt.Errorf("install GRUB on %s: %w", d.Path, err)
	}
	defer f.Close()
	rootPart, rootFS, err := findPartition(f, d, req.RootUUID)
	if err != nil {
		return err
	}
	if rootFS.Type == "" || rootFS.Type == "swap" || rootFS.Type == "iso9660" {
		return fmt.Errorf("install GRUB on %s: partition %s holds no root filesystem (%q)", d.Path, rootPart.Path, rootFS.Type)
	}
	var espPart *hardware.Partition
	var espFS ondisk.Filesystem
	if uefi {
		e, err := findESP(f, d, req.EFISystemPartUUID)
		if err != nil {
			return fmt.Errorf("install GRUB for UEFI on %s: %w", d.Path, err)
		}
		for i := range d.Partitions {
			if d.Partitions[i].Number == e.number {
				espPart = &d.Partitions[i]
			}
		}
		if espPart == nil {
			return fmt.Errorf("install GRUB for UEFI on %s: the kernel lists no partition %d (the ESP)", d.Path, e.number)
		}
		espFS, _ = ondisk.Probe(f, espPart.Start)
	}

	m := in.mounter()
	tmp, err := os.MkdirTemp(in.TempDir, "rivet-grub-")
	if err != nil {
		return fmt.Errorf("install GRUB: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return fmt.Errorf("install GRUB: %w", err)
	}
	var mounted []string
	defer func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			if uerr := m.Unmount(mounted[i]); uerr != nil {
				in.log().Error("unmount after GRUB install failed", "target", mounted[i], "error", uerr)
				if err == nil {
					err = fmt.Errorf("install GRUB on %s: %w", d.Path, uerr)
				}
			}
		}
	}()
	node, err := m.DeviceNode(in.devPath(rootPart.Name), rootPart.Major, rootPart.Minor, tmp)
	if err != nil {
		return fmt.Errorf("install GRUB on %s: %w", d.Path, err)
	}
	if err := m.Mount(node, root, rootFS.Type); err != nil {
		return fmt.Errorf("install GRUB on %s: mount root %s (%s): %w", d.Path, rootPart.Path, rootFS.Type, err)
	}
	mounted = append(mounted, root)
	for _, b := range bindMounts {
		t := filepath.Join(root, b)
		if err := os.MkdirAll(t, 0o755); err != nil {
			return fmt.Errorf("install GRUB: %w", err)
		}
		err := m.Bind(b, t)
		if err != nil && b == optionalBind && errors.Is(err, os.ErrNotExist) {
			in.log().Info("the running system has no "+b+"; an empty tmpfs takes its place in the chroot", "disk", d.Path)
			err = m.Mount("tmpfs", t, "tmpfs")
		}
		if err != nil {
			return fmt.Errorf("install GRUB on %s: bind %s: %w", d.Path, b, err)
		}
		mounted = append(mounted, t)
	}
	if espPart != nil {
		t := filepath.Join(root, "boot/efi")
		if err := os.MkdirAll(t, 0o755); err != nil {
			return fmt.Errorf("install GRUB: %w", err)
		}
		enode, err := m.DeviceNode(in.devPath(espPart.Name), espPart.Major, espPart.Minor, tmp)
		if err != nil {
			return fmt.Errorf("install GRUB on %s: %w", d.Path, err)
		}
		if err := m.Mount(enode, t, "vfat"); err != nil {
			return fmt.Errorf("install GRUB on %s: mount ESP %s: %w", d.Path, espPart.Path, err)
		}
		mounted = append(mounted, t)
	}

	uuids := map[string]string{rootFS.UUID: rootPart.Name}
	if espPart != nil {
		uuids[espFS.UUID] = espPart.Name
	}
	links := in.byUUIDLinks(uuids)
	defer in.removeLinks(links)

	bin := "grub"
	if _, err := findInRoot(root, "grub2-install"); err == nil {
		bin = "grub2"
	}
	var cmds [][]string
	if uefi {
		efi := []string{bin + "-install", "--target=" + grubTarget(), "--efi-directory=/boot/efi", "--no-nvram"}
		cmds = append(cmds, efi, append(append([]string{}, efi[:3]...), "--removable"))
	} else {
		cmds = append(cmds, []string{bin + "-install", d.Path})
	}
	cmds = append(cmds, []string{bin + "-mkconfig", "-o", "/boot/" + bin + "/grub.cfg"})
	for _, argv := range cmds {
		in.log().Info("running in the image", "root", rootPart.Path, "argv", strings.Join(argv, " "))
		out, err := in.run(ctx, root, argv)
		if err != nil {
			return fmt.Errorf("install GRUB on %s: %s: %w: %s", d.Path, strings.Join(argv, " "), err, strings.TrimSpace(tail(string(out))))
		}
	}
	if espPart != nil && espFS.UUID != "" {
		if err := ensureESPInFstab(root, espFS.UUID); err != nil {
			return fmt.Errorf("install GRUB on %s: %w", d.Path, err)
		}
	}
	in.log().Info("GRUB installed", "disk", d.Path, "root", rootPart.Path, "uefi", uefi)
	return nil
}

// byUUIDLinks makes the /dev/disk/by-uuid links udev would have made for
// the given filesystems (UUID → partition name), where they are missing
// and the partition's node is in /dev: a ramdisk has no udev, and without
// the link to the root filesystem's UUID grub-mkconfig writes
// root=/dev/<name> instead of root=UUID=…, which boots the wrong disk when
// disks enumerate in another order. It returns the links it made.
func (in *Installer) byUUIDLinks(uuids map[string]string) []string {
	dir := in.devPath("disk/by-uuid")
	var made []string
	for uuid, name := range uuids {
		if uuid == "" || strings.ContainsAny(uuid, "/\x00") || name == "" {
			continue
		}
		if _, err := os.Stat(in.devPath(name)); err != nil {
			continue
		}
		link := filepath.Join(dir, uuid)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			in.log().Warn("cannot make /dev/disk/by-uuid; grub-mkconfig will name the root by device", "error", err)
			return made
		}
		if err := os.Symlink("../../"+name, link); err != nil {
			in.log().Warn("cannot link the filesystem UUID to its partition; grub-mkconfig will name it by device",
				"uuid", uuid, "partition", name, "error", err)
			continue
		}
		made = append(made, link)
	}
	return made
}

// removeLinks removes the links byUUIDLinks made.
func (in *Installer) removeLinks(links []string) {
	for _, l := range links {
		if err := os.Remove(l); err != nil {
			in.log().Warn("cannot remove a /dev/disk/by-uuid link made for GRUB", "link", l, "error", err)
		}
	}
}

// ensureESPInFstab adds the ESP to the image's /etc/fstab unless it
// already mounts something at /boot/efi.
func ensureESPInFstab(root, uuid string) error {
	p := filepath.Join(root, "etc/fstab")
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && !strings.HasPrefix(f[0], "#") && f[1] == "/boot/efi" {
			return nil
		}
	}
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(fh, "UUID=%s\t/boot/efi\tvfat\tumask=0077\t0\t1\n", uuid)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

// findInRoot finds a program in the image's usual directories and
// returns its path inside the image.
func findInRoot(root, name string) (string, error) {
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in the image (/usr/sbin, /usr/bin, /sbin, /bin)", name)
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

func (in *Installer) run(ctx context.Context, root string, argv []string) ([]byte, error) {
	if in.Run != nil {
		return in.Run(ctx, root, argv)
	}
	return runChroot(ctx, root, argv)
}

func (in *Installer) mounter() Mounter {
	if in.Mounter != nil {
		return in.Mounter
	}
	return systemMounter{}
}
