package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestCleanQEMUNode runs automated cleaning on real parts: the conductor
// with --automated-clean, a QEMU node booting the real deploy ramdisk, and
// the real agent erasing the disk's metadata (erase_devices_metadata)
// when the node is provided and again after an undeploy.
//
// Disks: one sparse 5 GiB raw file (virtio), seeded with the test image's
// partition table before the first cleaning.
func TestCleanQEMUNode(t *testing.T) {
	a := needArtefacts(t)
	img, err := os.ReadFile(a.image)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	c := startConductor(t, a, filepath.Dir(a.image),
		"--clean-callback-timeout", "10m", "--automated-clean")

	// The qemu driver's files directory (--qemu-files-dir): the only
	// place driver_info may name a disk.
	disk := filepath.Join(c.stateDir, "qemu", "files", "node-disk.raw")
	const diskSize = 5 << 30
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	// A disk that already holds a partition table (GPT, primary and
	// backup at the end of the disk), as a recycled machine would.
	if _, err := f.Write(img); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(diskSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("sgdisk", "-e", disk).CombinedOutput(); err != nil {
		t.Logf("sgdisk -e (backup GPT to the end of the disk) unavailable: %v: %s", err, out)
	}
	if !gptAt(t, disk, 1) {
		t.Fatal("the seeded disk has no GPT header")
	}
	backupSeeded := gptAt(t, disk, diskSize/512-1)

	c.rivet(t, 30*time.Second, "node", "create", "--name", "e2e", "--driver", "qemu",
		"--driver-info", "qemu_disk="+disk, "--driver-info", "qemu_memory_mb=768")
	c.rivet(t, 30*time.Second, "port", "create", nodeMAC, "--node", "e2e")
	c.rivet(t, time.Minute, "node", "manage", "e2e", "--wait")
	uuid, _ := c.node(t, "e2e")["uuid"].(string)
	console := filepath.Join(c.stateDir, "qemu", uuid, "console.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("node console (%s):\n%s", console, b)
		}
	})

	// provide: manageable -> cleaning -> clean wait -> ... -> available.
	start := time.Now()
	c.rivet(t, 6*time.Minute, "node", "provide", "e2e", "--wait", "--timeout", "5m")
	t.Logf("provide with automated cleaning: %.1f s", time.Since(start).Seconds())
	n := c.node(t, "e2e")
	checkCleaned(t, n)
	if gptAt(t, disk, 1) {
		t.Error("cleaning left the primary GPT header in place")
	}
	if backupSeeded && gptAt(t, disk, diskSize/512-1) {
		t.Error("cleaning left the backup GPT header in place")
	}
	if !logHas(t, filepath.Join(c.stateDir, "conductor.log"), `clean steps planned.*steps=\[deploy\.erase_devices_metadata\]`) {
		t.Error("the conductor did not plan erase_devices_metadata")
	}

	// Deploy the test image, then undeploy: the agent erases it again.
	c.rivet(t, 10*time.Minute, "node", "deploy", "e2e",
		"--image", c.url+"/images/"+filepath.Base(a.image),
		"--checksum", hex.EncodeToString(sum[:]), "--os-hash-algo", "sha256",
		"--wait", "--timeout", "9m")
	if !gptAt(t, disk, 1) {
		t.Fatal("the deployed disk has no GPT header")
	}
	start = time.Now()
	c.rivet(t, 6*time.Minute, "node", "undeploy", "e2e", "--wait", "--timeout", "5m")
	t.Logf("undeploy with automated cleaning: %.1f s", time.Since(start).Seconds())
	n = c.node(t, "e2e")
	checkCleaned(t, n)
	if ii, _ := n["instance_info"].(map[string]any); len(ii) != 0 {
		t.Errorf("instance_info after undeploy = %v", ii)
	}
	if gptAt(t, disk, 1) {
		t.Error("cleaning after undeploy left the deployed GPT header in place")
	}
}

// checkCleaned asserts a node that finished automated cleaning.
func checkCleaned(t *testing.T, n map[string]any) {
	t.Helper()
	if n["provision_state"] != "available" || n["last_error"] != nil || n["power_state"] != "power off" || n["maintenance"] == true {
		t.Fatalf("after cleaning: state %v, last_error %v, power %v, maintenance %v",
			n["provision_state"], n["last_error"], n["power_state"], n["maintenance"])
	}
	dii, _ := n["driver_internal_info"].(map[string]any)
	for _, k := range []string{"clean_steps", "clean_step_index", "agent_url", "agent_secret_token"} {
		if _, ok := dii[k]; ok {
			t.Errorf("driver_internal_info keeps %s after cleaning", k)
		}
	}
}

// gptAt reports whether the 512-byte sector lba of path holds a GPT header.
func gptAt(t *testing.T, path string, lba int64) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 8)
	if _, err := f.ReadAt(b, lba*512); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return bytes.Equal(b, []byte("EFI PART"))
}

// logHas reports whether a log file has a line matching pattern.
func logHas(t *testing.T, path, pattern string) bool {
	t.Helper()
	out, err := exec.Command("grep", "-E", "-q", pattern, path).CombinedOutput()
	if err != nil && len(out) > 0 {
		t.Logf("grep %s: %v: %s", path, err, out)
	}
	return err == nil
}
