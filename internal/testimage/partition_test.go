package testimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/hardware/ondisk"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// buildPartition builds a partition image around a fake kernel.
func buildPartition(t *testing.T) (PartitionResult, string) {
	t.Helper()
	if _, err := os.Stat("/usr/lib/grub/i386-pc/boot.img"); err != nil {
		vmtest.Unavailable(t, "grub-pc-bin not installed (scripts/install-deps.sh rack): %v", err)
	}
	vmtest.Tool(t, "mke2fs")
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, bytes.Repeat([]byte("not a kernel "), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "part.raw")
	res, err := BuildPartition(t.Context(), PartitionOptions{Kernel: kernel, Output: out, ID: "unit-part", ModuleDir: vmtest.RepoRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	return res, out
}

// TestBuildPartition checks the image from its bytes and with debugfs: an
// ext4 filesystem with the id's UUID, the kernel and initramfs in /boot,
// GRUB for BIOS with its tools and only the image's own generators.
func TestBuildPartition(t *testing.T) {
	res, out := buildPartition(t)
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(img)) != DefaultPartitionSize || res.Size != DefaultPartitionSize || res.ID != "unit-part" ||
		res.KernelVersion != DefaultKernelVersion || res.FSUUID != PartitionFSUUID("unit-part") {
		t.Errorf("result %+v, file %d bytes", res, len(img))
	}
	if sum := sha256.Sum256(img); hex.EncodeToString(sum[:]) != res.SHA256 {
		t.Error("SHA256 does not match the file")
	}
	if fs, ok := ondisk.Probe(bytes.NewReader(img), 0); !ok || fs.Type != "ext4" || fs.UUID != res.FSUUID {
		t.Errorf("filesystem %+v, want ext4 %s", fs, res.FSUUID)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	debugfs := vmtest.Tool(t, "debugfs")
	run := func(req string) string {
		b, err := exec.Command(debugfs, "-R", req, out).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, b)
		}
		return string(b)
	}
	for _, p := range []string{"/boot/vmlinuz-" + DefaultKernelVersion, "/boot/initrd.img-" + DefaultKernelVersion,
		"/usr/sbin/grub-install", "/usr/sbin/grub-mkconfig", "/usr/sbin/grub-probe", "/usr/lib/grub/i386-pc/boot.img",
		"/usr/lib/grub/i386-pc/normal.mod", "/usr/share/grub/grub-mkconfig_lib", "/etc/grub.d/10_linux",
		"/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/fstab", "/tmp", "/dev", "/proc", "/sys", "/run"} {
		if o := run("stat " + p); strings.Contains(o, "File not found") {
			t.Errorf("%s missing:\n%s", p, o)
		}
	}
	if o := run("ls /etc/grub.d"); strings.Contains(o, "30_os-prober") || strings.Contains(o, "20_ipxe") {
		t.Errorf("host generators copied into the image: %s", o)
	}
	if o := run("cat /etc/default/grub"); !strings.Contains(o, `GRUB_CMDLINE_LINUX="console=ttyS0 panic=-1"`) {
		t.Errorf("/etc/default/grub:\n%s", o)
	}
	if o := run("cat /etc/fstab"); !strings.Contains(o, "UUID="+res.FSUUID+"\t/\text4") {
		t.Errorf("/etc/fstab:\n%s", o)
	}
}

func TestPartitionOptionsRefused(t *testing.T) {
	for name, o := range map[string]PartitionOptions{
		"no kernel":  {Output: "x"},
		"no output":  {Kernel: "k"},
		"bad id":     {Kernel: "k", Output: "x", ID: "a/b"},
		"version":    {Kernel: "k", Output: "x", KernelVersion: "rivet"},
		"small":      {Kernel: "k", Output: "x", Size: 32 << 20},
		"large":      {Kernel: "k", Output: "x", Size: 1 << 30},
		"not MiB":    {Kernel: "k", Output: "x", Size: 96<<20 + 1},
		"no kernel2": {Kernel: "/nonexistent/vmlinuz", Output: filepath.Join(t.TempDir(), "x")},
	} {
		if _, err := BuildPartition(t.Context(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
