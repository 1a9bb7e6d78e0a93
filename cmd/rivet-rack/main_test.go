package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"github.com/rivetmetal/rivet/internal/virtualrack"
)

func TestMain(m *testing.M) {
	ipmisim.RunHelper()
	os.Exit(m.Run())
}

func TestNodeSpecs(t *testing.T) {
	specs := nodeSpecs(3)
	want := []virtualrack.NodeSpec{
		{Name: "node1", Firmware: virtualrack.UEFI, NICModel: "e1000e", DiskBus: qemu.DiskNVMe},
		{Name: "node2", Firmware: virtualrack.BIOS, NICModel: "e1000e", DiskBus: qemu.DiskMegaSAS},
		{Name: "node3", Firmware: virtualrack.UEFI, NICModel: "e1000e", DiskBus: qemu.DiskNVMe},
	}
	for i := range want {
		if specs[i] != want[i] {
			t.Errorf("node %d: %+v, want %+v", i, specs[i], want[i])
		}
	}
}

func TestFlagsRefused(t *testing.T) {
	for _, args := range [][]string{{"-n", "0"}, {"-n", "65"}, {"extra"}, {"-nope"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// TestRunPrintsAGuideAndCleansUp runs the command with two nodes (whose
// machines never power on: no VM boots here) until interrupted: the guide
// names the relayed API and credentials that work, the BMCs and the
// deploy commands; at the end the rack's directory is gone.
func TestRunPrintsAGuideAndCleansUp(t *testing.T) {
	if os.Geteuid() != 0 {
		vmtest.Unavailable(t, "the virtual rack needs root (network namespaces, bridges)")
	}
	if ok, why := ipmisim.Available(); !ok {
		vmtest.Unavailable(t, "%s", why)
	}
	conductor := filepath.Join(vmtest.RepoRoot(t), "build/bin/rivet-conductor")
	if _, err := os.Stat(conductor); err != nil {
		vmtest.Unavailable(t, "%s missing: run make build", conductor)
	}
	tmp := t.TempDir()
	images := filepath.Join(tmp, "images")
	os.Mkdir(images, 0o755)
	for _, f := range []string{"vmlinuz", "initramfs", "images/disk.raw", "images/partition.raw"} {
		os.WriteFile(filepath.Join(tmp, f), []byte("not booted here"), 0o644)
	}
	dir := filepath.Join("/tmp", "rivet-rack-cmd-"+filepath.Base(tmp))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-n", "2", "-listen", "127.0.0.1:0", "-dir", dir, "-conductor", conductor,
			"-deploy-kernel", filepath.Join(tmp, "vmlinuz"), "-deploy-ramdisk", filepath.Join(tmp, "initramfs"),
			"-image-dir", images}, pw, io.Discard)
		pw.Close()
		done <- err
	}()
	var guide strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		guide.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "Ctrl-C stops the rack") {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	g := guide.String()
	m := regexp.MustCompile(`export RIVET_URL=(\S+) RIVET_USERNAME=(\S+) RIVET_PASSWORD=(\S+)`).FindStringSubmatch(g)
	if m == nil {
		cancel()
		t.Fatalf("no credentials in the guide (run: %v):\n%s", <-done, g)
	}
	for _, want := range []string{"node1  uefi", "node2  bios", "megasas", "10.250.1.10:623", "ip netns exec rivet-rack-",
		"rivet node deploy node1 --image http://10.250.0.1:6385/images/disk.raw --checksum ",
		"image_source=http://10.250.0.1:6385/images/partition.raw", "image_type=partition", "export OS_AUTH_TYPE=http_basic OS_ENDPOINT="} {
		if !strings.Contains(g, want) {
			t.Errorf("guide lacks %q:\n%s", want, g)
		}
	}
	hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
	defer hcancel()
	req, _ := http.NewRequestWithContext(hctx, http.MethodGet, m[1]+"/v1/nodes", nil)
	req.SetBasicAuth(m[2], m[3])
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.89")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"node2"`) {
		t.Errorf("GET /v1/nodes with the guide's credentials: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after the interrupt")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", dir, err)
	}
}
