package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

const nodeMAC = "52:54:00:12:34:56"

// TestDeployQEMUNode is the whole seed flow on real parts: enroll a QEMU
// node, deploy the test image through the real deploy ramdisk, see the node
// go active and boot its own disk, then undeploy it.
func TestDeployQEMUNode(t *testing.T) {
	a := needArtefacts(t)
	img, err := os.ReadFile(a.image)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	c := startConductor(t, a, filepath.Dir(a.image))

	// The qemu driver's files directory (--qemu-files-dir): the only
	// place driver_info may name a disk.
	disk := filepath.Join(c.stateDir, "qemu", "files", "node-disk.raw")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	// Larger than the image, and at least 4 GiB so that the agent picks it
	// with no root device hints.
	if err := f.Truncate(5 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()

	c.rivet(t, 30*time.Second, "node", "create", "--name", "e2e", "--driver", "qemu",
		"--driver-info", "qemu_disk="+disk, "--driver-info", "qemu_memory_mb=768")
	c.rivet(t, 30*time.Second, "port", "create", nodeMAC, "--node", "e2e")
	c.rivet(t, time.Minute, "node", "manage", "e2e", "--wait")
	c.rivet(t, time.Minute, "node", "provide", "e2e", "--wait")
	uuid, _ := c.node(t, "e2e")["uuid"].(string)
	console := filepath.Join(c.stateDir, "qemu", uuid, "console.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("node console (%s):\n%s", console, b)
		}
	})

	start := time.Now()
	out := c.rivet(t, 10*time.Minute, "node", "deploy", "e2e",
		"--image", c.url+"/images/"+filepath.Base(a.image),
		"--checksum", hex.EncodeToString(sum[:]), "--os-hash-algo", "sha256",
		"--wait", "--timeout", "9m")
	deployTime := time.Since(start)
	t.Logf("rivet node deploy --wait:\n%s", out)
	n := c.node(t, "e2e")
	if n["provision_state"] != "active" || n["last_error"] != nil {
		t.Fatalf("after deploy: provision_state %v, last_error %v", n["provision_state"], n["last_error"])
	}
	dii, _ := n["driver_internal_info"].(map[string]any)
	wantID := fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(img[440:444]))
	if dii["root_uuid_or_disk_id"] != wantID {
		t.Errorf("root_uuid_or_disk_id = %v, want the image's disk signature %s", dii["root_uuid_or_disk_id"], wantID)
	}

	// The agent logged its peak RSS on the VM console when the write ended.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rss, err := vmtest.WaitForFileLine(ctx, console, 0, regexp.MustCompile(`image deployed.*agent_peak_rss_mib=(\d+)`))
	if err != nil {
		t.Fatalf("no 'image deployed' line from the agent on %s: %v", console, err)
	}
	// Then the node powered on from its disk: OVMF → GRUB → the image's own
	// kernel prints the marker.
	marker, err := vmtest.WaitForFileLine(ctx, console, 0, testimage.MarkerPattern)
	if err != nil {
		t.Fatalf("the deployed disk did not boot: %v (console %s)", err, console)
	}
	bootTime := time.Since(start)
	mib, _ := strconv.Atoi(rss[1])
	t.Logf("deploy to active: %.1f s; to the deployed OS's marker: %.1f s; agent peak RSS %d MiB; marker %q",
		deployTime.Seconds(), bootTime.Seconds(), mib, marker[0])

	// The virtual disk holds the image (with its backup GPT moved to the
	// end of the larger disk).
	checkWholeDiskImage(t, disk, 5<<30, img)

	c.rivet(t, 2*time.Minute, "node", "undeploy", "e2e", "--wait")
	n = c.node(t, "e2e")
	if n["provision_state"] != "available" || n["power_state"] != "power off" {
		t.Fatalf("after undeploy: %v / %v", n["provision_state"], n["power_state"])
	}
}
