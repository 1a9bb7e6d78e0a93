package hardware

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeSys builds a sysfs/procfs tree under a temp dir. Each device is laid
// out like the kernel does: /sys/devices/<busdir>/block/<name> with a
// /sys/class/block/<name> symlink to it.
type fakeSys struct {
	t    *testing.T
	root string
}

func newFakeSys(t *testing.T) *fakeSys {
	root := t.TempDir()
	for _, d := range []string{"sys/class/block", "proc/self"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fs := &fakeSys{t: t, root: root}
	fs.write("proc/self/mountinfo", "22 27 0:21 / /proc rw,relatime - proc proc rw\n")
	fs.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n")
	return fs
}

func (f *fakeSys) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// disk adds a whole disk. attrs are paths relative to the device's sysfs
// dir ("device/model", "queue/rotational", ...).
func (f *fakeSys) disk(busdir, name, devnum string, sectors int64, attrs map[string]string) string {
	f.t.Helper()
	rel := filepath.Join("sys/devices", busdir, "block", name)
	f.write(filepath.Join(rel, "size"), itoa(sectors))
	f.write(filepath.Join(rel, "dev"), devnum)
	f.write(filepath.Join(rel, "ro"), "0")
	f.write(filepath.Join(rel, "removable"), "0")
	f.write(filepath.Join(rel, "queue/rotational"), "0")
	f.write(filepath.Join(rel, "queue/logical_block_size"), "512")
	f.write(filepath.Join(rel, "queue/physical_block_size"), "4096")
	if err := os.MkdirAll(filepath.Join(f.root, rel, "holders"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	for k, v := range attrs {
		f.write(filepath.Join(rel, k), v)
	}
	target, _ := filepath.Rel(filepath.Join(f.root, "sys/class/block"), filepath.Join(f.root, rel))
	if err := os.Symlink(target, filepath.Join(f.root, "sys/class/block", name)); err != nil {
		f.t.Fatal(err)
	}
	return rel
}

// partition adds a partition under a disk made by disk().
func (f *fakeSys) partition(diskRel, name, devnum string, number int, startSectors, sectors int64) {
	f.t.Helper()
	rel := filepath.Join(diskRel, name)
	f.write(filepath.Join(rel, "partition"), itoa(int64(number)))
	f.write(filepath.Join(rel, "start"), itoa(startSectors))
	f.write(filepath.Join(rel, "size"), itoa(sectors))
	f.write(filepath.Join(rel, "dev"), devnum)
	if err := os.MkdirAll(filepath.Join(f.root, rel, "holders"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	target, _ := filepath.Rel(filepath.Join(f.root, "sys/class/block"), filepath.Join(f.root, rel))
	if err := os.Symlink(target, filepath.Join(f.root, "sys/class/block", name)); err != nil {
		f.t.Fatal(err)
	}
}

func itoa(n int64) string {
	return fmtInt(n)
}
