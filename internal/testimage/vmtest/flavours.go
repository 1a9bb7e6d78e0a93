package vmtest

import (
	"os"
	"path/filepath"
	"testing"
)

// The deploy ramdisk comes in two flavours (docs/ramdisk.md), each booted
// with its own kernel: the virtual one (virtio only, Debian's cloud
// kernel, build/kernel) and the hardware one (server drivers and
// firmware, Debian's generic kernel, build/kernel-generic).

// VirtualRamdisk returns build/initramfs-virtual.cpio.zst (make
// initramfs-virtual), booted with Kernel.
func VirtualRamdisk(t testing.TB) string {
	t.Helper()
	return built(t, filepath.Join("build", "initramfs-virtual.cpio.zst"), "make initramfs-virtual")
}

// HardwareRamdisk returns build/initramfs.cpio.zst (make initramfs),
// booted with GenericKernel.
func HardwareRamdisk(t testing.TB) string {
	t.Helper()
	return built(t, filepath.Join("build", "initramfs.cpio.zst"), "make initramfs")
}

// GenericKernel returns build/kernel-generic/vmlinuz (make kernel-generic),
// the kernel of the hardware ramdisk.
func GenericKernel(t testing.TB) string {
	t.Helper()
	return built(t, filepath.Join("build", "kernel-generic", "vmlinuz"), "make kernel-generic")
}

func built(t testing.TB, rel, how string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), rel)
	if !fileExists(p) {
		Unavailable(t, "%s missing (run %s)", rel, how)
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
