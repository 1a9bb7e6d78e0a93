package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/rivetmetal/rivet/imagewriter"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/wire"
	"golang.org/x/sys/unix"
)

func strp(s string) *string { return &s }

func TestImageValidateImageInfo(t *testing.T) {
	base := func() wire.ImageInfo {
		return wire.ImageInfo{ID: "img", URLs: []string{"http://127.0.0.1/img"}, OSHashAlgo: "sha256", OSHashVal: strings.Repeat("a", 64)}
	}
	cases := []struct {
		name string
		edit func(*wire.ImageInfo)
		cd   *string
		err  string
	}{
		{"whole disk raw", func(i *wire.ImageInfo) { i.DiskFormat = strp("raw") }, nil, ""},
		{"qcow2", func(i *wire.ImageInfo) { i.DiskFormat = strp("qcow2") }, nil, ""},
		{"partition image", func(i *wire.ImageInfo) {
			i.ImageType, i.RootMB, i.SwapMB, i.DeployBootMode = "partition", 1024, 64, "uefi"
		}, nil, ""},
		{"checksum file URL", func(i *wire.ImageInfo) { i.OSHashAlgo, i.OSHashVal, i.Checksum = "", "", "http://127.0.0.1/SHA256SUMS" }, nil, ""},
		{"configdrive", func(i *wire.ImageInfo) {}, strp(base64.StdEncoding.EncodeToString([]byte("iso"))), ""},
		{"configdrive URL", func(i *wire.ImageInfo) { i.Configdrive = strp("http://127.0.0.1/cd") }, nil, ""},
		{"vmdk", func(i *wire.ImageInfo) { i.DiskFormat = strp("vmdk") }, nil, `disk_format "vmdk" is not supported`},
		{"bad image_type", func(i *wire.ImageInfo) { i.ImageType = "lvm" }, nil, "image_type"},
		{"preserve_ephemeral", func(i *wire.ImageInfo) { i.ImageType, i.PreserveEphemeral = "partition", true }, nil, "preserve_ephemeral"},
		{"xfs ephemeral", func(i *wire.ImageInfo) {
			i.ImageType, i.EphemeralMB, i.EphemeralFormat = "partition", 10, strp("xfs")
		}, nil, "ephemeral_format"},
		{"bad boot mode", func(i *wire.ImageInfo) { i.ImageType, i.DeployBootMode = "partition", "ppc" }, nil, "boot mode"},
		{"no checksum", func(i *wire.ImageInfo) { i.OSHashAlgo, i.OSHashVal = "", "" }, nil, "no checksum"},
		{"md5 legacy checksum", func(i *wire.ImageInfo) { i.OSHashAlgo, i.OSHashVal, i.Checksum = "", "", strings.Repeat("b", 32) }, nil, "MD5 checksums are refused"},
		{"md5 os_hash_algo", func(i *wire.ImageInfo) { i.OSHashAlgo, i.OSHashVal = "MD5", strings.Repeat("b", 32) }, nil, "rivet-allow-md5-checksum"},
		{"sha256 os_hash wins over an md5 legacy checksum", func(i *wire.ImageInfo) { i.Checksum = strings.Repeat("b", 32) }, nil, ""},
	}
	for _, c := range cases {
		info := base()
		c.edit(&info)
		if strings.HasPrefix(c.name, "md5") {
			if err := validateImageInfo(&info, c.cd, true); err != nil {
				t.Errorf("%s, MD5 allowed: %v", c.name, err)
			}
		}
		err := validateImageInfo(&info, c.cd, false)
		if c.err == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var ae *Error
		if !errors.As(err, &ae) || ae.Code != 400 || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: err = %v; want a 400 containing %q", c.name, err, c.err)
		}
	}
}

func TestImageErrorClasses(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("x: %w", imagewriter.ErrChecksum), "ImageChecksumError"},
		{fmt.Errorf("x: %w", imagewriter.ErrDownload), "ImageDownloadError"},
		{fmt.Errorf("x: %w", imagewriter.ErrTruncated), "ImageDownloadError"},
		{fmt.Errorf("x: %w", imagewriter.ErrFormat), "InvalidImage"},
		{fmt.Errorf("x: %w", imagewriter.ErrConfigdrive), "InstanceDeployFailure"},
		{fmt.Errorf("x: %w", imagewriter.ErrTooLarge), "ImageWriteError"},
		{fmt.Errorf("x: %w", imagewriter.ErrTarget), "ImageWriteError"},
	} {
		var ae *Error
		if err := imageError("img", "/dev/x", c.err); !errors.As(err, &ae) || ae.Type != c.want {
			t.Errorf("imageError(%v) = %v, want %s", c.err, err, c.want)
		}
	}
}

func TestImageBootMode(t *testing.T) {
	a := &Agent{cfg: Config{SysRoot: t.TempDir()}}
	if got := a.bootMode(wire.ImageInfo{DeployBootMode: "UEFI"}); got != "uefi" {
		t.Errorf("deploy_boot_mode: %s", got)
	}
	a.nodes.setNode(map[string]any{"properties": map[string]any{"capabilities": "cpu_vt:true,boot_mode:uefi"}})
	if got := a.bootMode(wire.ImageInfo{}); got != "uefi" {
		t.Errorf("capabilities: %s", got)
	}
	a.nodes.setNode(map[string]any{"instance_info": map[string]any{"deploy_boot_mode": "bios"}})
	if got := a.bootMode(wire.ImageInfo{}); got != "bios" {
		t.Errorf("instance_info: %s", got)
	}
	a.nodes.setNode(map[string]any{"uuid": "x"})
	os.MkdirAll(filepath.Join(a.cfg.SysRoot, "sys/firmware/efi"), 0o755)
	if got := a.bootMode(wire.ImageInfo{}); got != "uefi" {
		t.Errorf("ramdisk booted UEFI: %s", got)
	}
}

// imageConfigdrive is Ironic's config drive parameter: base64 of a gzipped
// ISO 9660 image labelled config-2.
func imageConfigdrive(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "cd.iso")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "ws"), 0o755)
	fs, err := iso9660.Create(file.New(f, false), 0, 0, 2048, filepath.Join(dir, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	fs.Mkdir("/openstack/latest")
	w, _ := fs.OpenFile("/openstack/latest/meta_data.json", os.O_CREATE|os.O_RDWR)
	w.Write([]byte(`{"hostname": "agent-test"}`))
	w.Close()
	if err := fs.Finalize(iso9660.FinalizeOptions{VolumeIdentifier: "config-2", RockRidge: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	iso, _ := os.ReadFile(p)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(iso)
	zw.Close()
	return base64.StdEncoding.EncodeToString(gz.Bytes())
}

// TestImagePartitionImageThroughAPI deploys a partition image the way
// Ironic asks for one (write_image with image_type partition, a checksum
// file URL and a config drive), then checks get_partition_uuids against
// the disk and mounts the deployed root.
func TestImagePartitionImageThroughAPI(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatal("RIVET_REQUIRE_E2E=1 but mkfs.ext4 (e2fsprogs) is not installed")
		}
		t.Skip("mkfs.ext4 (e2fsprogs) is not installed")
	}
	disk := loopdev.New(t, 1<<30)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("deployed\n"), 0o644)
	rootImg := filepath.Join(dir, "root.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", tree, rootImg, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	root, _ := os.ReadFile(rootImg)
	sum := sha256.Sum256(root)
	mux := http.NewServeMux()
	mux.HandleFunc("/images/root.img", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "root.img", time.Time{}, bytes.NewReader(root))
	})
	mux.HandleFunc("/images/SHA256SUMS", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s  root.img\n", hex.EncodeToString(sum[:]))
	})
	images := httptest.NewServer(mux)
	defer images.Close()

	_, base := startAgent(t, standaloneConfig(disk.Path), &fakePower{})
	c := client{t: t, base: base}
	step := map[string]any{
		"interface": "deploy", "step": "write_image", "priority": 80,
		"args": map[string]any{"image_info": map[string]any{
			"id": "root.img", "urls": []string{images.URL + "/images/root.img"}, "disk_format": "raw", "container_format": "bare",
			"checksum": images.URL + "/images/SHA256SUMS", "node_uuid": nodeUUID, "image_type": "partition",
			"root_mb": 128, "swap_mb": 16, "ephemeral_mb": 0, "deploy_boot_mode": "uefi", "boot_option": "local",
		}, "configdrive": imageConfigdrive(t)},
	}
	res := executeStep(c, step, nodeWithHints(map[string]any{"name": disk.Path}))
	if res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("write_image: %+v", res.CommandError)
	}
	var dr wire.DeployStepResult
	res.DecodeResult(&dr)
	var ir wire.ImageResult
	json.Unmarshal(dr.DeployResult, &ir)

	// The agent's /metrics shows the write, also once later commands ran.
	pu := c.run("standby.get_partition_uuids", map[string]any{}, true)
	st, body := c.do("GET", "/metrics", nil)
	for _, want := range []string{"rivet_agent_image_write_bytes_read " + strconv.FormatFloat(float64(len(root)), 'g', -1, 64) + "\n",
		"rivet_agent_image_write_bytes_total " + strconv.FormatFloat(float64(len(root)), 'g', -1, 64) + "\n",
		`rivet_agent_image_write_phase{phase="done"} 1`} {
		if st != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics: %d, lacks %q", st, want)
		}
	}
	var u wire.PartitionUUIDs
	if err := pu.DecodeResult(&u); err != nil {
		t.Fatal(err)
	}
	blkid, err := exec.Command("blkid", "-s", "UUID", "-o", "value", rootImg).Output()
	if err == nil && strings.TrimSpace(string(blkid)) != u.RootUUID {
		t.Fatalf("root uuid = %q, blkid says %q", u.RootUUID, blkid)
	}
	if u.RootUUID == "" || u.EFISystemPartUUID == "" {
		t.Fatalf("partition uuids = %+v", u)
	}
	want := fmt.Sprintf("prepare_image: image (root.img) written to device %s root_uuid=%s efi_system_partition_uuid=%s", disk.Path, u.RootUUID, u.EFISystemPartUUID)
	if ir.Result != want {
		t.Fatalf("result = %q\nwant     %q", ir.Result, want)
	}
	wantParts := map[string]string{"efi system partition": disk.Path + "p1", "swap": disk.Path + "p2", "configdrive": disk.Path + "p3", "root": disk.Path + "p4"}
	for role, dev := range wantParts {
		if u.Partitions[role] != dev {
			t.Fatalf("partitions = %v, want %v", u.Partitions, wantParts)
		}
	}
	mnt := t.TempDir()
	if err := unix.Mount(u.Partitions["root"], mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount the deployed root: %v", err)
	}
	host, _ := os.ReadFile(filepath.Join(mnt, "etc/hostname"))
	unix.Unmount(mnt, 0)
	if string(host) != "deployed\n" {
		t.Fatalf("deployed /etc/hostname = %q", host)
	}
	head := make([]byte, 64<<10)
	f, _ := os.Open(u.Partitions["configdrive"])
	f.ReadAt(head, 0)
	f.Close()
	if string(head[32769:32774]) != "CD001" || !strings.HasPrefix(string(head[32808:32816]), "config-2") {
		t.Fatal("the configdrive partition does not hold the config-2 ISO")
	}
	if p := ir.Progress; p == nil || p.Timings["download"] <= 0 || p.Timings["flush"] <= 0 || p.Phase != "done" {
		t.Fatalf("final progress = %+v", ir.Progress)
	}
}

// TestWriteImageReportsItsDecodeStage: a zstd image written through the
// API to a loop device reports, in its final progress, how the write's
// decoder spent it: its waits for the download and for the disk, and
// (where the agent may raise its decoder's priority, which gives the
// decoder a thread of its own to measure) its CPU. A raw image reports
// none (TestDirectDeployLikeIronic).
func TestWriteImageReportsItsDecodeStage(t *testing.T) {
	disk := loopdev.New(t, 64<<20)
	raw, _ := diskImage(t, 24<<20, 0x5eed0042)
	for off := 256 << 10; off+128<<10 <= len(raw); off += 256 << 10 {
		copy(raw[off:off+128<<10], raw[:128<<10]) // matches for the decoder to copy
	}
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := zw.EncodeAll(raw, nil)
	zw.Close()
	sum := sha256.Sum256(zst)
	images := imageServer(t, zst)
	_, base := startAgent(t, standaloneConfig(disk.Path), &fakePower{})
	c := client{t: t, base: base}
	res := executeStep(c, writeImageStep(images.URL+"/disk.raw", hex.EncodeToString(sum[:])), nodeWithHints(map[string]any{"name": disk.Path}))
	if res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("write_image: %+v", res.CommandError)
	}
	var dr wire.DeployStepResult
	var ir wire.ImageResult
	if err := res.DecodeResult(&dr); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(dr.DeployResult, &ir); err != nil || ir.Progress == nil {
		t.Fatalf("deploy result %s: %v", dr.DeployResult, err)
	}
	tm := ir.Progress.Timings
	in, inOK := tm[wire.TimingDecodeInputWait]
	out, outOK := tm[wire.TimingDecodeOutputWait]
	decode := tm[imagewriter.PhaseDecode]
	if !inOK || !outOK || in < 0 || out < 0 || decode <= 0 || in+out > decode {
		t.Fatalf("timings = %v: want the decoder's waits, within its %v s phase", tm, decode)
	}
	cpu, cpuOK := tm[wire.TimingDecodeCPU]
	if os.Geteuid() == 0 && (!cpuOK || cpu <= 0) {
		t.Fatalf("timings = %v: as root the decoder runs on a thread of its own and its CPU is measured", tm)
	}
	if got := readDisk(t, disk.Path, len(raw)); !bytes.Equal(got, raw) {
		t.Fatal("the disk does not hold the decoded image")
	}
	// The agent's own /metrics serves the same figures.
	st, body := c.do("GET", "/metrics", nil)
	for _, k := range []string{imagewriter.PhaseDecode, wire.TimingDecodeInputWait, wire.TimingDecodeOutputWait, wire.TimingDecodeCPU} {
		v, ok := tm[k]
		if !ok {
			continue // no CPU figure when not root
		}
		want := `rivet_agent_image_write_timing_seconds{timing="` + k + `"} ` + strconv.FormatFloat(v, 'g', -1, 64) + "\n"
		if st != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics: %d, lacks %q", st, want)
		}
	}
}

// The timing names the conductor, the CLI and the dashboard know
// (wire.AgentTimings) are every phase the writer times, and the decode
// stage's own, so none of them goes unlisted or without a metric.
func TestAgentTimingsNameTheWritersPhases(t *testing.T) {
	for _, p := range []string{imagewriter.PhasePrepare, imagewriter.PhaseConnect, imagewriter.PhaseDownload, imagewriter.PhaseDecode,
		imagewriter.PhaseWrite, imagewriter.PhaseFlush, imagewriter.PhaseConvert, imagewriter.PhaseVerify, imagewriter.PhaseConfigdrive,
		imagewriter.PhaseFinalize, wire.TimingDecodeInputWait, wire.TimingDecodeOutputWait, wire.TimingDecodeCPU} {
		if !slices.Contains(wire.AgentTimings, p) {
			t.Errorf("wire.AgentTimings lacks %q", p)
		}
	}
	if slices.Contains(wire.AgentTimings, imagewriter.PhaseDone) {
		t.Errorf("wire.AgentTimings holds %q, which is not timed", imagewriter.PhaseDone)
	}
}
