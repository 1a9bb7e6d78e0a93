package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// TestBootInQEMU boots build/kernel/vmlinuz with the test ramdisk. The VM
// has one virtio NIC (MAC 52:54:00:12:34:56, user networking with no
// forwards), one 64 MiB virtio disk (a sparse temp file) and virtio-rng.
// testuinit reports what it found, mounts the blank disk as vfat (not
// loaded at boot, so the kernel runs /sbin/modprobe for it) and powers off.
func TestBootInQEMU(t *testing.T) {
	kernel := vmtest.Kernel(t)
	vmtest.QEMU(t)
	rd := testRamdisk(t)
	disk := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	vm := vmtest.Start(ctx, t,
		"-m", "512", "-smp", "1",
		"-kernel", kernel, "-initrd", rd.Path, "-append", "console=ttyS0",
		"-netdev", "user,id=n0,restrict=on",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=",
		"-drive", "file="+disk+",if=virtio,format=raw",
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
	)
	// The console line gives the timing; the report is read from the disk
	// once the guest is off, since a kernel message can cut into a console
	// line.
	_, at, err := vm.WaitFor(ctx, regexp.MustCompile(`^RIVET-TEST-UINIT uptime=`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := vm.WaitFor(ctx, regexp.MustCompile(`Welcome to u-root`)); err != nil {
		t.Errorf("u-root init banner: %v", err)
	}
	took, err := vm.Wait(ctx)
	if err != nil {
		t.Fatalf("qemu did not exit cleanly after the guest powered off: %v", err)
	}
	t.Logf("QEMU exited 0 after %v", took.Round(10*time.Millisecond))
	sector := make([]byte, 512)
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(sector, 0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^RIVET-TEST-UINIT uptime=(\S+) nic=(\S+) disk=(\S+) modules=(\S*) vfat=(\S+)\n`).FindStringSubmatch(string(sector))
	if m == nil {
		t.Fatalf("no report on the disk; its first bytes: %q", strings.TrimRight(string(sector[:128]), "\x00"))
	}
	t.Logf("uinit ran %v after QEMU started (guest uptime %ss); ramdisk %d bytes", at.Round(10*time.Millisecond), m[1], rd.Size)
	if m[2] != "eth0/virtio_net/52:54:00:12:34:56" {
		t.Errorf("nic = %s, want eth0 bound to virtio_net with the VM's MAC", m[2])
	}
	if m[3] != "/dev/vda/67108864" {
		t.Errorf("disk = %s, want /dev/vda of 64 MiB", m[3])
	}
	// vfat is not in this ramdisk's modules-load.d: the kernel loaded it
	// on demand through /sbin/modprobe when testuinit mounted vfat.
	if m[5] != "loaded" {
		t.Errorf("vfat = %s, want loaded on demand by /sbin/modprobe", m[5])
	}
	loaded := strings.Split(m[4], ",")
	for _, want := range []string{"virtio_pci", "virtio_net", "virtio_blk", "virtio_rng"} {
		if !contains(loaded, want) {
			t.Errorf("module %s not loaded (loaded: %s)", want, m[4])
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
