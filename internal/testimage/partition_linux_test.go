package testimage

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"golang.org/x/sys/unix"
)

// TestPartitionToolsRunInChroot writes the partition image to a loop
// device, mounts it with /dev, /proc and /sys bound in, as the agent does,
// and runs the image's own GRUB tools in a chroot: every program and
// library they need is in the image. (The boot itself, grub-install onto
// a disk and the kernel it starts, is the virtual rack's e2e test.)
func TestPartitionToolsRunInChroot(t *testing.T) {
	res, img := buildPartition(t)
	loop := loopdev.New(t, res.Size)
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(loop.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	src.Close()
	if err == nil {
		err = dst.Sync()
	}
	dst.Close()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	os.Mkdir(root, 0o755)
	if err := unix.Mount(loop.Path, root, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s: %v", loop.Path, err)
	}
	mounted := []string{root}
	defer func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			if err := unix.Unmount(mounted[i], 0); err != nil {
				unix.Unmount(mounted[i], unix.MNT_DETACH)
			}
		}
	}()
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(d, filepath.Join(root, d), "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s: %v", d, err)
		}
		mounted = append(mounted, filepath.Join(root, d))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	chroot := func(argv ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "chroot", append([]string{root}, argv...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		return string(out)
	}
	if out := chroot("/usr/sbin/grub-probe", "--target=fs_uuid", "/"); strings.TrimSpace(out) != res.FSUUID {
		t.Errorf("grub-probe fs_uuid / = %q, want %s", out, res.FSUUID)
	}
	if out := chroot("/usr/sbin/grub-install", "--version"); !strings.Contains(out, "GRUB") {
		t.Errorf("grub-install --version: %s", out)
	}
	chroot("/usr/sbin/grub-mkconfig", "-o", "/boot/grub/grub.cfg")
	cfg, err := os.ReadFile(filepath.Join(root, "boot/grub/grub.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	// 10_linux writes no entry for a root on a loop device (it cannot
	// boot from a file); the generators ran and GRUB checked the result.
	for _, want := range []string{"### BEGIN /etc/grub.d/00_header ###", "serial --unit=0 --speed=115200",
		"### BEGIN /etc/grub.d/10_linux ###", "### END /etc/grub.d/40_custom ###"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
}
