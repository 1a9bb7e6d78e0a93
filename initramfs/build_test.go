package initramfs

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"github.com/u-root/mkuimage/cpio"
)

var (
	ramdiskOnce sync.Once
	ramdiskDir  string
	ramdisk     Result
	ramdiskErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if ramdiskDir != "" {
		os.RemoveAll(ramdiskDir)
	}
	os.Exit(code)
}

// testRamdisk builds, once per test binary, a deploy ramdisk around
// testdata/testuinit with the kernel modules from make kernel.
func testRamdisk(t *testing.T) Result {
	t.Helper()
	root := vmtest.RepoRoot(t)
	modules := vmtest.ModulesDir(t)
	ramdiskOnce.Do(func() {
		ramdiskDir, ramdiskErr = os.MkdirTemp("", "rivet-initramfs-test-")
		if ramdiskErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a Go build; slow on a busy machine
		defer cancel()
		start := time.Now()
		ramdisk, ramdiskErr = Build(ctx, Options{
			AgentPackage: filepath.Join(root, "initramfs", "testdata", "testuinit"),
			ModulesDir:   modules,
			// vfat and its code pages are left to the kernel's on-demand
			// loading through /sbin/modprobe (TestBootInQEMU).
			LoadModules: []string{"virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "efivarfs"},
			Output:      filepath.Join(ramdiskDir, "initramfs.cpio.zst"),
			ModuleDir:   root,
		})
		t.Logf("built %s in %v: %d bytes (cpio %d)", ramdisk.Path, time.Since(start).Round(time.Millisecond), ramdisk.Size, ramdisk.CPIOSize)
	})
	if ramdiskErr != nil {
		t.Fatalf("build test ramdisk: %v", ramdiskErr)
	}
	return ramdisk
}

func TestBuild(t *testing.T) {
	res := testRamdisk(t)
	if res.Compression != Zstd {
		t.Errorf("compression = %q, want zstd", res.Compression)
	}
	if fi, err := os.Stat(res.Path); err != nil || fi.Size() != res.Size {
		t.Fatalf("stat %s: %v (result says %d bytes)", res.Path, err, res.Size)
	}
	if res.Size > 8<<20 {
		t.Errorf("ramdisk is %d bytes; the deploy ramdisk should stay a few MB", res.Size)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(decompress(t, res.Path, Zstd))))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]cpio.Record{}
	for _, r := range recs {
		if _, dup := files[r.Name]; dup {
			t.Errorf("%s twice in the archive", r.Name)
		}
		files[r.Name] = r
	}
	content := func(name string) string {
		r, ok := files[name]
		if !ok {
			t.Errorf("%s missing", name)
			return ""
		}
		b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		return string(b)
	}
	for name, target := range map[string]string{
		"init":          "bbin/init",
		"bin/uinit":     "testuinit",
		"bin/sh":        "../bbin/gosh",
		"bin/defaultsh": "../bbin/gosh",
		"bbin/init":     "bb",
		"bbin/ip":       "bb",
		"bbin/shutdown": "bb",
		"bbin/modprobe": "bb",
		"sbin/modprobe": "../bbin/modprobe",
	} {
		if r, ok := files[name]; !ok || r.Mode&cpio.S_IFMT != cpio.S_IFLNK {
			t.Errorf("%s: not a symlink", name)
			continue
		}
		if got := content(name); got != target {
			t.Errorf("%s -> %q, want %q", name, got, target)
		}
	}
	for _, name := range []string{"bbin/bb", "bin/testuinit"} {
		if got := content(name); !strings.HasPrefix(got, "\x7fELF") {
			t.Errorf("%s is not an ELF binary", name)
		}
	}
	if got := content("etc/resolv.conf"); got != "" {
		t.Errorf("resolv.conf = %q, want empty", got)
	}
	if got := content(modulesLoadConf); !strings.Contains(got, "\nvirtio_net\n") {
		t.Errorf("%s = %q", modulesLoadConf, got)
	}
	kver, err := os.ReadFile(filepath.Join(vmtest.RepoRoot(t), "build", "kernel", "version"))
	if err != nil {
		t.Fatal(err)
	}
	kdir := "lib/modules/" + strings.TrimSpace(string(kver))
	if !strings.Contains(content(kdir+"/modules.dep"), "virtio_net.ko:") {
		t.Errorf("%s/modules.dep has no virtio_net", kdir)
	}
	content(kdir + "/kernel/drivers/net/virtio_net.ko")
}

func TestBuildErrors(t *testing.T) {
	ctx := t.Context()
	if _, err := Build(ctx, Options{}); err == nil {
		t.Error("no output: no error")
	}
	out := filepath.Join(t.TempDir(), "initrd")
	_, err := Build(ctx, Options{
		AgentPackage: "github.com/rivetmetal/rivet/no/such/agent",
		Commands:     []string{},
		Output:       out,
		ModuleDir:    vmtest.RepoRoot(t),
	})
	if err == nil {
		t.Fatal("unknown agent package: no error")
	}
	if !strings.Contains(err.Error(), out) {
		t.Errorf("error %q does not name the output", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
		t.Errorf("files left after a failed build: %v", left)
	}
}
