package bootloader

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	dgpt "github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/efivar"
	"github.com/rivetmetal/rivet/hardware/ondisk"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"golang.org/x/sys/unix"
)

// buildFakeGRUB compiles testdata/fakegrub for the image.
func buildFakeGRUB(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH to build the fake GRUB: %v", err)
	}
	out := filepath.Join(t.TempDir(), "fakegrub")
	cmd := exec.Command(gobin, "build", "-o", out, "./testdata/fakegrub")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fakegrub: %v %s", err, b)
	}
	return out
}

// partitionImageDisk lays out what Ironic's partition-image deploy leaves
// on a disk: a GPT with an ESP (FAT, empty) and an ext4 root holding the
// image's GRUB tools (here the fake), on a loop device.
func partitionImageDisk(t *testing.T) (hardware.BlockDevice, string) {
	t.Helper()
	for _, tool := range []string{"partx", "mkfs.ext4", "mkfs.vfat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	loop := loopdev.New(t, 96<<20)
	d, err := diskfs.Open(loop.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&dgpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*dgpt.Partition{
		{Index: 1, Start: 2048, End: 2048 + 65536 - 1, Type: dgpt.EFISystemPartition, GUID: espGUID},
		{Index: 2, Start: 67584, End: 67584 + 120000 - 1, Type: dgpt.LinuxFilesystem},
	}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if out, err := exec.Command("partx", "-u", loop.Path).CombinedOutput(); err != nil {
		t.Fatalf("partx: %v %s", err, out)
	}
	run := func(argv ...string) {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", argv, err, out)
		}
	}
	run("mkfs.vfat", "-I", "-F", "16", "--offset", "2048", loop.Path, strconv.Itoa(65536/2))
	run("mkfs.ext4", "-q", "-F", "-E", "offset="+strconv.Itoa(67584*512)+",nodiscard", loop.Path, strconv.Itoa(120000/2))
	dev, err := hardware.Lister{Allow: []string{loop.Path}}.Get(loop.Path)
	if err != nil || len(dev.Partitions) != 2 {
		t.Fatalf("%+v %v", dev, err)
	}
	// Put the image's GRUB tools into the root filesystem.
	fake := buildFakeGRUB(t)
	tmp := t.TempDir()
	node, err := systemMounter{}.DeviceNode("/nonexistent", dev.Partitions[1].Major, dev.Partitions[1].Minor, tmp)
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := (systemMounter{}).Mount(node, mnt, "ext4"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(fake)
	for _, name := range []string{"grub-install", "grub-mkconfig"} {
		os.MkdirAll(filepath.Join(mnt, "usr/sbin"), 0o755)
		if err := os.WriteFile(filepath.Join(mnt, "usr/sbin", name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(mnt, "etc"), 0o755)
	os.MkdirAll(filepath.Join(mnt, "var/log"), 0o755)
	os.WriteFile(filepath.Join(mnt, "etc/fstab"), []byte("UUID=abc / ext4 defaults 0 1\n"), 0o644)
	if err := (systemMounter{}).Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	return dev, tmp
}

// readRoot mounts the root filesystem read-only and returns a file's content.
func readRoot(t *testing.T, dev hardware.BlockDevice, rel string) string {
	t.Helper()
	tmp := t.TempDir()
	node, _ := systemMounter{}.DeviceNode("/nonexistent", dev.Partitions[1].Major, dev.Partitions[1].Minor, tmp)
	mnt := filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount(node, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, 0)
	b, _ := os.ReadFile(filepath.Join(mnt, rel))
	return string(b)
}

func rootUUID(t *testing.T, dev hardware.BlockDevice) string {
	f, err := os.Open(dev.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, ok := ondisk.Probe(f, dev.Partitions[1].Start)
	if !ok || info.Type != "ext4" {
		t.Fatalf("root fs %+v", info)
	}
	return info.UUID
}

func noMountsUnder(t *testing.T, dir string) {
	t.Helper()
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), dir) {
		t.Errorf("mounts left under %s:\n%s", dir, b)
	}
}

// TestGRUBInChrootUEFI runs the whole GRUB path on a real disk: mount
// root + ESP, bind /dev /proc /sys /run, chroot into the image, run its
// grub-install twice (NVRAM-less, then --removable) and grub-mkconfig,
// add the ESP to fstab, unmount, then write the UEFI entry for the loader
// GRUB put on the ESP.
func TestGRUBInChrootUEFI(t *testing.T) {
	if !kernelHas("vfat") {
		// Not a setup fault RIVET_REQUIRE_E2E could fix: the test host's
		// own kernel lacks FAT (the deploy ramdisk's kernel has it).
		t.Skip("the running kernel cannot mount vfat (not in /proc/filesystems); the BIOS variant covers mount, bind and chroot")
	}
	dev, _ := partitionImageDisk(t)
	store := efivar.Store{Dir: t.TempDir()}
	os.WriteFile(filepath.Join(store.Dir, "BootCurrent-"+efivar.GlobalGUID), []byte{6, 0, 0, 0, 1, 0}, 0o644)
	tmpDir := t.TempDir()
	in := &Installer{EFI: store, TempDir: tmpDir, Log: quiet()}
	out, err := in.Install(context.Background(), Request{Disk: dev, RootUUID: rootUUID(t, dev), EFISystemPartUUID: espGUID,
		TargetBootMode: "uefi", AllowGRUB: true})
	if err != nil {
		t.Fatal(err)
	}
	noMountsUnder(t, tmpDir)
	if !out.GRUB || len(out.Entries) != 1 || !strings.Contains(out.Entries[0], `\EFI\BOOT\BOOTX64.EFI`) {
		t.Fatalf("outcome %+v", out)
	}
	log := readRoot(t, dev, "var/log/fake-grub.log")
	want := []string{
		"grub-install --target=" + grubTarget() + " --efi-directory=/boot/efi --no-nvram | sees /proc/self/mountinfo,/sys/class/block,/dev/null,/run,/boot/efi",
		"grub-install --target=" + grubTarget() + " --efi-directory=/boot/efi --removable | sees",
		"grub-mkconfig -o /boot/grub/grub.cfg | sees",
	}
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) != 3 {
		t.Fatalf("GRUB tool runs:\n%s", log)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("run %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	if cfg := readRoot(t, dev, "boot/grub/grub.cfg"); cfg != "# fake grub.cfg\n" {
		t.Errorf("grub.cfg %q", cfg)
	}
	if fstab := readRoot(t, dev, "etc/fstab"); !strings.Contains(fstab, "\t/boot/efi\tvfat\tumask=0077\t0\t1") {
		t.Errorf("fstab %q", fstab)
	}
	es, _ := store.BootEntries()
	if len(es) != 1 || es[0].Description != "ironic1" || !strings.HasPrefix(es[0].FilePath.String(), "HD(1,GPT,3e9b0f4a-") {
		t.Errorf("NVRAM %+v", es)
	}
}

func TestGRUBInChrootBIOS(t *testing.T) {
	dev, _ := partitionImageDisk(t)
	tmpDir := t.TempDir()
	in := &Installer{EFI: efivar.Store{Dir: filepath.Join(t.TempDir(), "none")}, TempDir: tmpDir, Log: quiet()}
	out, err := in.Install(context.Background(), Request{Disk: dev, RootUUID: rootUUID(t, dev), TargetBootMode: "bios", AllowGRUB: true})
	if err != nil || !out.GRUB {
		t.Fatalf("%+v %v", out, err)
	}
	noMountsUnder(t, tmpDir)
	log := readRoot(t, dev, "var/log/fake-grub.log")
	if !strings.HasPrefix(log, "grub-install "+dev.Path+" | sees") || !strings.Contains(log, "grub-mkconfig -o /boot/grub/grub.cfg") {
		t.Errorf("runs:\n%s", log)
	}
	// An unknown root UUID is a clear error, and nothing stays mounted.
	_, err = in.Install(context.Background(), Request{Disk: dev, RootUUID: "11111111-2222-3333-4444-555555555555", TargetBootMode: "bios", AllowGRUB: true})
	if err == nil || !strings.Contains(err.Error(), "no partition with UUID 11111111-2222-3333-4444-555555555555") {
		t.Fatalf("unknown root: %v", err)
	}
	noMountsUnder(t, tmpDir)
}

// kernelHas reports whether the running kernel can mount fstype.
func kernelHas(fstype string) bool {
	b, _ := os.ReadFile("/proc/filesystems")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fstype {
			return true
		}
	}
	return false
}

// noRunMounter is the system's mounter on a machine without /run, as the
// u-root deploy ramdisk is: binding /run fails as mount(2) does there.
type noRunMounter struct {
	systemMounter
	mounts []string
}

func (m *noRunMounter) Bind(source, target string) error {
	if source == "/run" {
		return &os.PathError{Op: "mount --bind", Path: source + " on " + target, Err: unix.ENOENT}
	}
	return m.systemMounter.Bind(source, target)
}

func (m *noRunMounter) Mount(device, target, fstype string) error {
	m.mounts = append(m.mounts, fstype+" "+filepath.Base(target))
	return m.systemMounter.Mount(device, target, fstype)
}

// TestGRUBInChrootWithoutRun: a ramdisk without /run (found by the
// virtual rack's BIOS deploy: u-root has none) gets an empty tmpfs at
// /run in the chroot instead of failing the install; nothing stays
// mounted.
func TestGRUBInChrootWithoutRun(t *testing.T) {
	dev, _ := partitionImageDisk(t)
	tmpDir := t.TempDir()
	m := &noRunMounter{}
	in := &Installer{EFI: efivar.Store{Dir: filepath.Join(t.TempDir(), "none")}, TempDir: tmpDir, Mounter: m, Log: quiet()}
	out, err := in.Install(context.Background(), Request{Disk: dev, RootUUID: rootUUID(t, dev), TargetBootMode: "bios", AllowGRUB: true})
	if err != nil || !out.GRUB {
		t.Fatalf("%+v %v", out, err)
	}
	noMountsUnder(t, tmpDir)
	if want := []string{"ext4 root", "tmpfs run"}; strings.Join(m.mounts, ",") != strings.Join(want, ",") {
		t.Errorf("mounts %q, want %q", m.mounts, want)
	}
	if log := readRoot(t, dev, "var/log/fake-grub.log"); !strings.Contains(log, "grub-install "+dev.Path+" | sees") {
		t.Errorf("runs:\n%s", log)
	}
}
