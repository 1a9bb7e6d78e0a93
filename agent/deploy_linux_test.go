package agent

import (
	"os/exec"
	"testing"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/wire"
	"golang.org/x/sys/unix"
)

func TestMountedDiskIsRefused(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	disk := loopdev.New(t, 5<<30)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", disk.Path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	mnt := t.TempDir()
	if err := unix.Mount(disk.Path, mnt, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, 0)
	img, sum := diskImage(t, 1<<20, 3)
	images := imageServer(t, img)
	_, base := startAgent(t, standaloneConfig(disk.Path), &fakePower{})
	res := executeStep(client{t: t, base: base}, writeImageStep(images.URL+"/disk.raw", sum), nodeWithHints(nil))
	if res.CommandStatus != wire.StatusFailed || res.CommandError.Type != "DeviceNotFound" {
		t.Fatalf("result = %+v", res.CommandError)
	}
	mustContain(t, "details", res.CommandError.Details, "mounted at "+mnt)
}
