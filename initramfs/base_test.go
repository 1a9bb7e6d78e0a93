package initramfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/mkuimage/cpio"
)

// modulesTree writes a fake kernel-modules tree like make kernel's.
func modulesTree(t *testing.T, withDep bool) string {
	t.Helper()
	dir := t.TempDir()
	kdir := filepath.Join(dir, "lib", "modules", "6.1.0-test")
	if err := os.MkdirAll(filepath.Join(kdir, "kernel", "drivers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kdir, "kernel", "drivers", "virtio_blk.ko"), []byte("ko"), 0o644); err != nil {
		t.Fatal(err)
	}
	if withDep {
		if err := os.WriteFile(filepath.Join(kdir, "modules.dep"), []byte("kernel/drivers/virtio_blk.ko:\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readRecord(t *testing.T, a *cpio.Archive, name string) (cpio.Record, string) {
	t.Helper()
	r, ok := a.Get(name)
	if !ok {
		t.Fatalf("%s not in archive; have %v", name, a.Order)
	}
	if r.ReaderAt == nil {
		return r, ""
	}
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return r, string(b)
}

func TestBaseArchive(t *testing.T) {
	dir := modulesTree(t, true)
	a, err := baseArchive(dir, DefaultLoadModules)
	if err != nil {
		t.Fatal(err)
	}
	if _, content := readRecord(t, a, "etc/resolv.conf"); content != "" {
		t.Errorf("resolv.conf = %q, want empty", content)
	}
	_, conf := readRecord(t, a, "lib/modules-load.d/rivet.conf")
	var mods []string
	for _, l := range strings.Split(conf, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			mods = append(mods, l)
		}
	}
	if got, want := strings.Join(mods, " "), "virtio_pci virtio_net virtio_blk virtio_rng efivarfs vfat nls_cp437 nls_ascii"; got != want {
		t.Errorf("modules-load.d lists %q, want %q", got, want)
	}
	if r, content := readRecord(t, a, "lib/modules/6.1.0-test/kernel/drivers/virtio_blk.ko"); content != "ko" || r.Mode&cpio.S_IFMT != cpio.S_IFREG {
		t.Errorf("module record = %v %q", r.Info, content)
	}
	if r, _ := readRecord(t, a, "lib/modules/6.1.0-test"); r.Mode&cpio.S_IFMT != cpio.S_IFDIR {
		t.Errorf("modules dir record = %v", r.Info)
	}
	readRecord(t, a, "dev/console")
	// Every name once: a duplicate would be written twice.
	seen := map[string]bool{}
	for _, n := range a.Order {
		if seen[n] {
			t.Errorf("%s twice in the archive", n)
		}
		seen[n] = true
	}
}

func TestBaseArchiveErrors(t *testing.T) {
	if _, err := baseArchive(modulesTree(t, false), DefaultLoadModules); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("without modules.dep: err = %v, want ErrNotExist", err)
	}
	if _, err := baseArchive("", DefaultLoadModules); err == nil {
		t.Error("modules to load without a modules dir: no error")
	}
	a, err := baseArchive(modulesTree(t, false), []string{})
	if err != nil {
		t.Fatalf("no modules to load: %v", err)
	}
	if _, ok := a.Get(modulesLoadConf); ok {
		t.Error("modules-load.d file written with no modules to load")
	}
}

func TestParseCompression(t *testing.T) {
	for in, want := range map[string]Compression{"": Zstd, "zstd": Zstd, "gzip": Gzip, "xz": XZ, "none": None} {
		got, err := ParseCompression(in)
		if err != nil || got != want {
			t.Errorf("ParseCompression(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseCompression("lz4"); err == nil {
		t.Error("ParseCompression(lz4): no error")
	}
}

func TestCommandName(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/rivetmetal/rivet/cmd/rivet-agent": "rivet-agent",
		"/work/main/initramfs/testdata/testuinit/":    "testuinit",
		"github.com/u-root/u-root/cmds/core/init":     "init",
	} {
		if got := commandName(in); got != want {
			t.Errorf("commandName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFirmwareTree(t *testing.T) {
	modules := modulesTree(t, true)
	fw := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fw, "lib", "firmware", "tigon"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fw, "lib", "firmware", "tigon", "tg3.bin"), []byte("fw"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := baseArchive(modules, HardwareLoadModules)
	if err != nil {
		t.Fatal(err)
	}
	if err := addTree(a, fw); err != nil {
		t.Fatalf("firmware tree beside the modules tree: %v", err)
	}
	if _, content := readRecord(t, a, "lib/firmware/tigon/tg3.bin"); content != "fw" {
		t.Errorf("firmware content %q", content)
	}
	seen := map[string]bool{}
	for _, n := range a.Order {
		if seen[n] {
			t.Errorf("%s twice in the archive", n)
		}
		seen[n] = true
	}
	if err := addTree(a, fw); err == nil {
		t.Error("the same files twice: no error")
	}
}
