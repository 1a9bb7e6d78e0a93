package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	dgpt "github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/rivetmetal/rivet/hardware/ondisk"
	"github.com/rivetmetal/rivet/internal/loopdev"
)

// ironicImageSignature is the MBR disk signature of the test image, which
// Ironic records as root_uuid_or_disk_id.
const ironicImageSignature = 0x52495654

// TestIronic is the compatibility test: Debian bookworm's real Ironic 21.4
// (ironic-api + ironic-conductor, standalone: noauth, JSON-RPC, SQLite,
// manual-management hardware with fake power, direct deploy) drives
// rivet-agent through a whole-disk deploy to "active" and an automated
// clean (erase_devices_metadata) back to "available". One Ironic serves
// every subtest.
func TestIronic(t *testing.T) {
	needIronic(t)
	files := &fileServer{fs: map[string][]byte{}}
	srv := httptest.NewServer(files)
	t.Cleanup(srv.Close)
	files.url = srv.URL
	// Ironic downloads and caches the deploy kernel and ramdisk for its
	// boot interface; nothing boots them here (fake power).
	files.put("/deploy.kernel", []byte("not a kernel: fake power never boots it\n"))
	files.put("/deploy.ramdisk", []byte("not a ramdisk\n"))
	img := ironicTestImage(t)
	files.put("/images/disk.raw", img)
	sum := sha256.Sum256(img)
	ir := startIronic(t, files)
	bin := goBuild(t, t.TempDir(), "./cmd/rivet-agent")

	t.Run("HostLoopDevice", func(t *testing.T) {
		loop := loopdev.New(t, 5<<30)
		const mac = "52:54:00:a1:b2:c3"
		id := ir.enroll(t, "rivet-host", mac, nil, nil)
		ir.patch(t, id,
			map[string]any{"op": "add", "path": "/instance_info/image_source", "value": files.url + "/images/disk.raw"},
			map[string]any{"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
			map[string]any{"op": "add", "path": "/instance_info/image_os_hash_value", "value": hex.EncodeToString(sum[:])},
		)
		start := time.Now()
		ir.provision(t, id, "active", nil)
		ir.waitState(t, id, "wait call-back", 2*time.Minute, nil)
		agent := startAgentProcess(t, bin,
			"--ipa-api-url="+ir.url, "--ipa-lookup-macs="+mac, "--ipa-block-devices="+loop.Path,
			"--ipa-listen-host=127.0.0.1", fmt.Sprintf("--ipa-listen-port=%d", freePort(t)),
			"--ipa-advertise-host=127.0.0.1", "--ipa-disk-wait-attempts=1")
		n := ir.waitState(t, id, "active", 5*time.Minute, func() { agentAlive(t, agent) })
		deployTime := time.Since(start)
		dii, _ := n["driver_internal_info"].(map[string]any)
		if want := fmt.Sprintf("0x%08x", ironicImageSignature); dii["root_uuid_or_disk_id"] != want {
			t.Errorf("root_uuid_or_disk_id %v, want %s", dii["root_uuid_or_disk_id"], want)
		}
		if n["last_error"] != nil {
			t.Errorf("last_error %v", n["last_error"])
		}
		checkWholeDiskImage(t, loop.Path, 5<<30, img)
		log := agent.output()
		for _, want := range []string{"auto-TLS: serving the API over HTTPS", "command succeeded\" command=deploy.execute_deploy_step",
			"command succeeded\" command=image.install_bootloader", "command succeeded\" command=log.collect_system_logs"} {
			if !strings.Contains(log, want) {
				t.Errorf("agent log lacks %q", want)
			}
		}
		checkDeployLogs(t, ir, id)

		// Undeploy with automated cleaning: erase_devices_metadata (99)
		// runs; erase_devices is set to 0 in the config.
		ir.patch(t, id, map[string]any{"op": "replace", "path": "/automated_clean", "value": true})
		start = time.Now()
		ir.provision(t, id, "deleted", nil)
		ir.waitState(t, id, "available", 5*time.Minute, func() { agentAlive(t, agent) })
		cleanTime := time.Since(start)
		f, _ := os.Open(loop.Path)
		_, gerr := ondisk.ReadGPT(f, 5<<30, 512)
		head := make([]byte, 1<<20)
		f.ReadAt(head, 0)
		f.Close()
		if gerr == nil || !bytes.Equal(head, make([]byte, len(head))) {
			t.Errorf("after cleaning the disk still has a partition table (%v) or a non-zero first MiB", gerr)
		}
		if !strings.Contains(agent.output(), "looking the node up again for a new agent token") {
			t.Error("the agent did not look the node up again after Ironic wiped its token")
		}
		t.Logf("real Ironic + host agent: deploy → active %.1f s, undeploy + clean → available %.1f s", deployTime.Seconds(), cleanTime.Seconds())
	})
	t.Run("QEMUNode", func(t *testing.T) { testIronicQEMU(t, ir, img, hex.EncodeToString(sum[:])) })
}

// checkWholeDiskImage checks that the disk holds the image: byte for byte,
// except the protective MBR's partition entry, the GPT headers and the old
// backup table, which the agent rewrites to move the backup GPT to the end
// of the larger disk.
func checkWholeDiskImage(t *testing.T, path string, size int64, img []byte) {
	t.Helper()
	got := make([]byte, len(img))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, got); err != nil {
		t.Fatal(err)
	}
	// The protective MBR's partition entry (446–510) and the image's
	// backup GPT (its last 33 sectors) legitimately change: the writer
	// moves the backup GPT to the end of the larger disk.
	tail := len(img) - 33*512
	for _, r := range [][2]int{{0, 446}, {510, 512}, {1024, tail}} {
		if i := firstDiff(got[r[0]:r[1]], img[r[0]:r[1]]); i >= 0 {
			t.Fatalf("%s does not hold the image: first difference at byte %d", path, r[0]+i)
		}
	}
	want, err := ondisk.ReadGPT(bytes.NewReader(img), int64(len(img)), 512)
	if err != nil {
		t.Fatalf("GPT of the image: %v", err)
	}
	tab, err := ondisk.ReadGPT(f, size, 512)
	if err != nil || tab.BackupLBA != uint64(size/512-1) || tab.DiskGUID != want.DiskGUID ||
		!slices.Equal(tab.Partitions, want.Partitions) {
		t.Fatalf("GPT on %s after the deploy: %+v %v; want the image's partitions with the backup header at the disk's end", path, tab, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// agentAlive fails the test if the agent process died.
func agentAlive(t *testing.T, p *agentProc) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("rivet-agent exited: %v", err)
	default:
	}
}

// enroll creates a manual-management node with a port for mac, and
// brings it to "available" without cleaning. driverInfo and properties
// are added to the defaults.
func (ir *ironic) enroll(t *testing.T, name, mac string, driverInfo, properties map[string]any) string {
	t.Helper()
	di := map[string]any{"deploy_kernel": ir.files.url + "/deploy.kernel", "deploy_ramdisk": ir.files.url + "/deploy.ramdisk"}
	for k, v := range driverInfo {
		di[k] = v
	}
	props := map[string]any{"cpu_arch": "x86_64", "memory_mb": 4096, "local_gb": 10, "capabilities": "boot_mode:uefi"}
	for k, v := range properties {
		props[k] = v
	}
	var n map[string]any
	ir.must(t, "POST", "/v1/nodes", map[string]any{
		"name": name, "driver": "manual-management", "driver_info": di,
		"deploy_interface": "direct", "boot_interface": "pxe", "power_interface": "fake",
		"management_interface": "noop", "network_interface": "noop",
		"automated_clean": false,
		"properties":      props,
	}, &n)
	id, _ := n["uuid"].(string)
	ir.must(t, "POST", "/v1/ports", map[string]any{"address": mac, "node_uuid": id}, nil)
	ir.provision(t, id, "manage", nil)
	ir.waitState(t, id, "manageable", time.Minute, nil)
	ir.provision(t, id, "provide", nil)
	ir.waitState(t, id, "available", time.Minute, nil)
	t.Cleanup(func() {
		if t.Failed() {
			n := ir.node(t, id)
			t.Logf("node %s at the end: provision_state %v, last_error %v", id, n["provision_state"], n["last_error"])
		}
	})
	return id
}

// checkDeployLogs opens the log archive Ironic stored from
// log.collect_system_logs ([agent]deploy_logs_collect = always) and looks
// for the agent's own log in it.
func checkDeployLogs(t *testing.T, ir *ironic, id string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(ir.stateDir, "deploy-logs", id+"*"))
	if len(matches) == 0 {
		t.Errorf("Ironic stored no deploy logs for %s", id)
		return
	}
	f, err := os.Open(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("deploy logs %s: %v", matches[0], err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if !contains(names, "rivet-agent.log") || !contains(names, "commands.json") {
		t.Errorf("deploy logs %s hold %v", filepath.Base(matches[0]), names)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ironicTestImage builds a small whole-disk UEFI image: GPT, a FAT32 ESP
// with a fallback loader (a stand-in: nothing boots it here), and a known
// MBR disk signature.
func ironicTestImage(t *testing.T) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	const size = 40 << 20
	d, err := diskfs.Create(p, size, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&dgpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*dgpt.Partition{
		{Index: 1, Start: 2048, End: size/512 - 2048, Type: dgpt.EFISystemPartition, Name: "EFI System Partition"},
	}}); err != nil {
		t.Fatal(err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "ESP"})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Mkdir("/EFI/BOOT"); err != nil {
		t.Fatal(err)
	}
	lf, err := fs.OpenFile("/EFI/BOOT/BOOTX64.EFI", os.O_CREATE|os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	lf.Write([]byte("MZ rivet ironic test loader"))
	lf.Close()
	d.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[440:], ironicImageSignature)
	return b
}
