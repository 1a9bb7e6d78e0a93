package sqlite

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/initramfs"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// Console lines of testdata/powerloss: a write reported done (its
// number), and the 20th or a later one, or the guest's failure.
var (
	ackedLine        = regexp.MustCompile(`RIVET-POWERLOSS acked=(\d+)`)
	twentiethOrError = regexp.MustCompile(`RIVET-POWERLOSS (acked=([2-9][0-9]|[0-9]{3,})\b|error)`)
)

// TestAcknowledgedWritesSurvivePowerLoss boots a VM (QEMU, the ramdisk
// kernel) whose uinit (testdata/powerloss) writes to a store on an ext4
// disk, one write after another, printing each write's number once the
// store reports it done; the test kills QEMU, which loses what the guest
// kept in memory as a power cut does, after the 20th, then mounts the
// disk image and opens the store: every write reported done is there
// (the committer's commits fsync the WAL: synchronous=FULL). The control
// writes through SQLite alone with synchronous=NORMAL (no fsync at
// commit) and must lose writes it reported: otherwise the kill loses
// nothing here and the store's result would prove nothing.
func TestAcknowledgedWritesSurvivePowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	kernel := vmtest.Kernel(t)
	vmtest.QEMU(t)
	mkfs := vmtest.Tool(t, "mkfs.ext4")
	if os.Geteuid() != 0 {
		vmtest.Unavailable(t, "mounting the VM's disk image needs root")
	}
	root := vmtest.RepoRoot(t)
	// One ramdisk for both runs: the kernel command line names the mode.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute) // a Go build, then two TCG boots
	defer cancel()
	rd, err := initramfs.Build(ctx, initramfs.Options{
		AgentPackage: filepath.Join(root, "conductor", "store", "sqlite", "testdata", "powerloss"),
		ModulesDir:   vmtest.ModulesDir(t),
		LoadModules:  []string{"virtio_pci", "virtio_blk"},
		Commands:     []string{},
		Output:       filepath.Join(t.TempDir(), "initramfs.cpio.zst"),
		ModuleDir:    root,
	})
	if err != nil {
		t.Fatalf("build the ramdisk: %v", err)
	}
	for _, mode := range []string{"store", "control"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			disk := filepath.Join(dir, "disk.raw")
			if err := os.WriteFile(disk, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(disk, 256<<20); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.CommandContext(ctx, mkfs, "-q", "-F", disk).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.ext4: %v: %s", err, out)
			}
			vm := vmtest.Start(ctx, t,
				"-m", "512", "-smp", "1",
				"-kernel", kernel, "-initrd", rd.Path, "-append", "console=ttyS0 rivet.powerloss="+mode,
				"-drive", "file="+disk+",if=virtio,format=raw",
			)
			if _, _, err := vm.WaitFor(ctx, twentiethOrError); err != nil {
				t.Fatal(err)
			}
			vm.Kill()
			acked := 0
			for _, l := range vm.Lines() {
				if strings.Contains(l, "RIVET-POWERLOSS error") {
					t.Fatalf("the guest failed: %s", l)
				}
				if m := ackedLine.FindStringSubmatch(l); m != nil {
					n, _ := strconv.Atoi(m[1])
					acked = max(acked, n)
				}
			}
			mnt := filepath.Join(dir, "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.CommandContext(ctx, "mount", "-o", "loop", disk, mnt).CombinedOutput(); err != nil {
				t.Fatalf("mount the disk image: %v: %s", err, out)
			}
			defer func() {
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Errorf("umount: %v: %s", err, out)
				}
			}()
			kept := 0
			switch mode {
			case "store":
				s, err := Open(ctx, filepath.Join(mnt, "rivet.db"))
				if err != nil {
					t.Fatalf("open the store after the power cut: %v", err)
				}
				defer s.Close()
				n, err := s.GetNode(ctx, "powerloss")
				if err != nil {
					t.Fatalf("the node written to is gone: %v", err)
				}
				f, _ := n.Extra["n"].(float64)
				kept = int(f)
				t.Logf("reported done: %d writes; on the disk: the %dth", acked, kept)
				if kept < acked {
					t.Errorf("the power cut lost writes the store had reported done: %d kept, %d reported", kept, acked)
				}
			case "control":
				db, err := sql.Open("sqlite", filepath.Join(mnt, "control.db"))
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				var got sql.NullInt64
				if err := db.QueryRowContext(ctx, `SELECT MAX(n) FROM t`).Scan(&got); err != nil && !strings.Contains(err.Error(), "no such table") {
					t.Fatalf("read the control's table: %v", err)
				}
				kept = int(got.Int64)
				t.Logf("reported done: %d writes; on the disk: %d", acked, kept)
				if kept >= acked {
					t.Errorf("the control lost nothing (%d of %d kept): killing the VM does not lose unsynced writes here, and the store's result proves nothing", kept, acked)
				}
			}
		})
	}
}
