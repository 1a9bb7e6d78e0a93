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

	"github.com/klauspost/compress/zstd"
	"github.com/rivetmetal/rivet/internal/testimage"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

const nodeMAC = "52:54:00:12:34:56"

// TestDeployQEMUNode is the whole seed flow on real parts: enroll a QEMU
// node, deploy the test image through the real deploy ramdisk, see the node
// go active and boot its own disk, then undeploy it. The image is served
// zstd-compressed (the raw image is what the other QEMU deploys serve), so
// the agent decodes it as it writes and the conductor records how the
// agent's decode stage spent the write.
func TestDeployQEMUNode(t *testing.T) {
	a := needArtefacts(t)
	img, err := os.ReadFile(a.image)
	if err != nil {
		t.Fatal(err)
	}
	imageDir := t.TempDir()
	served := filepath.Join(imageDir, filepath.Base(a.image)+".zst")
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := zw.EncodeAll(img, nil) // one frame, as `zstd` writes
	zw.Close()
	if err := os.WriteFile(served, zst, 0o644); err != nil {
		t.Fatal(err)
	}
	// The checksum is of the image as served, as Glance's is.
	sum := sha256.Sum256(zst)
	c := startConductor(t, a, imageDir)

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
		"--image", c.url+"/images/"+filepath.Base(served),
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
	checkDecodeTimings(t, dii)
	timings := c.rivet(t, 30*time.Second, "node", "timings", "e2e")
	t.Logf("rivet node timings:\n%s", timings)
	for _, row := range []string{"agent_decode", "agent_decode_input_wait", "agent_decode_output_wait", "agent_decode_cpu"} {
		if !regexp.MustCompile(`(?m)^\s*↳ ` + row + `\s`).MatchString(timings) {
			t.Errorf("rivet node timings lacks the row ↳ %s", row)
		}
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

// checkDecodeTimings checks the deploy timings the conductor kept from a
// real agent's write of a compressed image: the decoder's waits for the
// download and for the disks, within the agent's decode phase, and its
// CPU (the ramdisk's agent runs as root, so its decoder has a thread of
// its own to measure).
func checkDecodeTimings(t *testing.T, dii map[string]any) {
	t.Helper()
	tm, _ := dii["deploy_timings"].(map[string]any)
	get := func(k string) (float64, bool) {
		v, ok := tm[k].(float64)
		return v, ok
	}
	decode, _ := get("agent_decode")
	in, inOK := get("agent_decode_input_wait")
	out, outOK := get("agent_decode_output_wait")
	cpu, cpuOK := get("agent_decode_cpu")
	// The conductor keeps milliseconds: each figure may be rounded up.
	if !inOK || !outOK || !cpuOK || decode <= 0 || in < 0 || out < 0 || in+out > decode+0.002 || cpu <= 0 {
		t.Fatalf("deploy_timings = %v: want the agent's decode phase with its waits (within it) and its CPU", tm)
	}
	t.Logf("agent decode: %.2f s, waited %.3f s for input and %.3f s for the disk, %.2f CPU s", decode, in, out, cpu)
}
