package testimage

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// TestBootOVMF builds the image with build/kernel/vmlinuz, writes it at
// offset 0 of a 4 GiB sparse file (so the backup GPT is not at the end of
// the disk) and boots that as a virtio disk with OVMF, no kernel given to
// QEMU. The image must print its marker and power off.
func TestBootOVMF(t *testing.T) {
	kernel := vmtest.Kernel(t)
	vmtest.QEMU(t)
	vmtest.Tool(t, "grub-mkstandalone")
	code, vars := vmtest.OVMF(t)
	dir := t.TempDir()
	res, err := Build(t.Context(), Options{Kernel: kernel, Output: filepath.Join(dir, "image.raw"), ID: "vmtest-42", ModuleDir: vmtest.RepoRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.raw")
	writeSparse(t, res.Path, disk, 4<<30)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	vm := vmtest.Start(ctx, t, "-m", "1024", "-smp", "1",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-drive", "file="+disk+",if=virtio,format=raw",
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
	)
	m, at, err := vm.WaitFor(ctx, MarkerPattern)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "vmtest-42" || m[2] != "uefi" {
		t.Errorf("marker id=%s firmware=%s, want id=vmtest-42 firmware=uefi", m[1], m[2])
	}
	t.Logf("OVMF boot of the %d MiB image on a 4 GiB disk: marker %v after QEMU start", res.Size>>20, at.Round(10*time.Millisecond))
	if _, err := vm.Wait(ctx); err != nil {
		t.Errorf("qemu did not exit cleanly after the image powered off: %v", err)
	}
}

// writeSparse copies the image to the start of a sparse file of size bytes.
func writeSparse(t *testing.T, image, path string, size int64) {
	t.Helper()
	b, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}
