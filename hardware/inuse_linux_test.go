package hardware

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"golang.org/x/sys/unix"
)

func TestInUseFromProc(t *testing.T) {
	fs := standardSys(t)
	devs, err := Lister{Root: fs.root}.List()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]BlockDevice{}
	for _, d := range devs {
		byName[d.Name] = d
	}
	for _, d := range devs {
		if err := InUse(fs.root, d); err != nil {
			t.Fatalf("%s reported in use on an idle system: %v", d.Name, err)
		}
	}
	fs.write("proc/self/mountinfo", "22 27 0:21 / /proc rw - proc proc rw\n"+
		`30 1 8:2 / /mnt/my\040data rw,relatime - ext4 /dev/sda2 rw`+"\n")
	err = InUse(fs.root, byName["sda"])
	if !errors.Is(err, ErrDeviceInUse) || !strings.Contains(err.Error(), "/dev/sda2 mounted at /mnt/my data") {
		t.Fatalf("mounted partition: %v", err)
	}
	if err := InUse(fs.root, byName["nvme0n1"]); err != nil {
		t.Fatalf("nvme: %v", err)
	}
	fs.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1\tpartition\t100\t0\t-2\n")
	if err := InUse(fs.root, byName["nvme0n1"]); !errors.Is(err, ErrDeviceInUse) || !strings.Contains(err.Error(), "swap") {
		t.Fatalf("swap: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(fs.root, "sys/class/block/vda/holders/dm-0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := InUse(fs.root, byName["vda"]); !errors.Is(err, ErrDeviceInUse) || !strings.Contains(err.Error(), "held by dm-0") {
		t.Fatalf("holder: %v", err)
	}
}

// TestInUseRealRootDisk checks, on this machine, that the disk holding "/"
// is reported in use: the safety net that keeps the agent off a host disk.
func TestInUseRealRootDisk(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	maj, mnr := int(unix.Major(st.Dev)), int(unix.Minor(st.Dev))
	devs, err := Lister{}.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		holds := d.Major == maj && d.Minor == mnr
		for _, p := range d.Partitions {
			holds = holds || (p.Major == maj && p.Minor == mnr)
		}
		if !holds {
			continue
		}
		if err := InUse("", d); !errors.Is(err, ErrDeviceInUse) {
			t.Fatalf("root disk %s not reported in use: %v", d.Path, err)
		}
		return
	}
	t.Skipf("/ (%d:%d) is not on a listed disk (overlay or container root)", maj, mnr)
}

func TestInUseRealMountedLoop(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	loop := loopdev.New(t, 64<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", loop.Path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v: %s", err, out)
	}
	dev, err := Lister{Allow: []string{loop.Path}}.Get(loop.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := InUse("", dev); err != nil {
		t.Fatalf("unmounted loop in use: %v", err)
	}
	mnt := t.TempDir()
	if err := unix.Mount(loop.Path, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount: %v", err)
	}
	defer unix.Unmount(mnt, 0)
	if err := InUse("", dev); !errors.Is(err, ErrDeviceInUse) || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("mounted loop: %v", err)
	}
}
