//go:build linux && amd64

package bmc_test

// TestVMReadsBMC boots the kernel with an isa-ipmi-kcs device whose BMC is
// OpenIPMI's ipmi_sim (internal/ipmisim) and checks that package bmc,
// running in the guest, reads the LAN address and MAC the simulator was
// given. See testdata/README.md.

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/mkuimage/cpio"

	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

func TestMain(m *testing.M) {
	ipmisim.RunHelper()
	os.Exit(m.Run())
}

// ipmiModules are the modules the guest loads, in order.
var ipmiModules = []string{"ipmi_msghandler", "ipmi_devintf", "ipmi_si"}

// kernelAndModules returns the kernel and the paths of ipmiModules.
func kernelAndModules(t *testing.T) (string, []string) {
	t.Helper()
	kernel, modDir := os.Getenv("RIVET_BMC_TEST_KERNEL"), os.Getenv("RIVET_BMC_TEST_MODULES")
	if kernel == "" {
		// The hardware ramdisk's kernel: Debian's generic kernel, whose
		// module tree (make kernel-generic) has the IPMI drivers.
		kernel = vmtest.GenericKernel(t)
	}
	if modDir == "" {
		modDir = filepath.Join(filepath.Dir(kernel), "modules")
	}
	found := map[string]string{}
	_ = filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			for _, m := range ipmiModules {
				if d.Name() == m+".ko" {
					found[m] = p
				}
			}
		}
		return nil
	})
	var paths []string
	for _, m := range ipmiModules {
		if found[m] == "" {
			vmtest.Unavailable(t, "no %s.ko under %s: the kernel needs the IPMI modules %v (Debian's generic kernel has them, the cloud kernel does not; set RIVET_BMC_TEST_KERNEL and RIVET_BMC_TEST_MODULES to use another)", m, modDir, ipmiModules)
		}
		paths = append(paths, found[m])
	}
	return kernel, paths
}

func buildGuest(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/guest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build guest: %v\n%s", err, b)
	}
	return out
}

func writeInitramfs(t *testing.T, path, init string, modules []string) {
	t.Helper()
	bin, err := os.ReadFile(init)
	if err != nil {
		t.Fatal(err)
	}
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.Directory("lib", 0o755),
		cpio.Directory("lib/modules", 0o755),
		cpio.StaticFile("init", string(bin), 0o755),
	}
	for i, m := range modules {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, cpio.StaticFile(fmt.Sprintf("lib/modules/%d-%s", i+1, filepath.Base(m)), string(b), 0o644))
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	w := cpio.Newc.Writer(zw)
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestVMReadsBMC(t *testing.T) {
	if ok, why := ipmisim.Available(); !ok {
		vmtest.Unavailable(t, "%s", why)
	}
	vmtest.QEMU(t)
	kernel, modules := kernelAndModules(t)
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.gz")
	writeInitramfs(t, initrd, buildGuest(t, dir), modules)

	bmcMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0xb3, 0xc0, 0x01}
	sim, err := ipmisim.Start(context.Background(), ipmisim.Config{
		Dir: filepath.Join(dir, "bmc"),
		LAN: ipmisim.LAN{IP: net.IPv4(192, 0, 2, 77), MAC: bmcMAC},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"-m", "512", "-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 loglevel=4"}, sim.QEMUArgs()...)
	vm := vmtest.Start(ctx, t, args...)
	m, took, err := vm.WaitFor(ctx, regexp.MustCompile(`^(RIVET-BMC(?:-ERROR)? .*)$`))
	if err != nil {
		t.Fatalf("no result from the guest: %v", err)
	}
	got := m[1]
	want := fmt.Sprintf("RIVET-BMC address=192.0.2.77 mac=%s v6=::/0", bmcMAC)
	if got != want {
		t.Fatalf("guest printed %q, want %q", got, want)
	}
	t.Logf("guest read the BMC after %s", took.Round(time.Millisecond))
	if _, err := vm.Wait(ctx); err != nil {
		t.Logf("qemu exit: %v", err)
	}
}
