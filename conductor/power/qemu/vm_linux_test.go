package qemu

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/initramfs"
	"github.com/rivetmetal/rivet/internal/testimage"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// These tests boot real VMs (QEMU TCG) through the driver. Each VM has the
// node's virtio NIC (MAC 52:54:00:12:34:56, user networking with
// restrict=on), one virtio disk and virtio-rng. QEMU runs under
// timeout(1) so that a VM outlives a killed test binary by at most 5 min.

// vmDriver returns a driver that runs QEMU under timeout(1) and the test
// binary as the guestfwd relay.
func vmDriver(t *testing.T) *Driver {
	t.Helper()
	qemuBin := vmtest.QEMU(t)
	timeoutBin := vmtest.Tool(t, "timeout")
	wrapper := filepath.Join(t.TempDir(), "qemu-with-timeout")
	script := fmt.Sprintf("#!/bin/sh\nexec %s -k 5 300 %s \"$@\"\n", timeoutBin, qemuBin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(helperEnv, "relay") // QEMU passes it on to the relays it forks
	return newTestDriver(t, Config{Binary: wrapper})
}

var (
	guestRamdiskOnce sync.Once
	guestRamdisk     string
	guestRamdiskErr  error
)

// buildGuestRamdisk builds, once per test binary, an initramfs with u-root
// init, the kernel modules and testdata/guest as uinit.
func buildGuestRamdisk(t *testing.T) string {
	t.Helper()
	root := vmtest.RepoRoot(t)
	modules := vmtest.ModulesDir(t)
	guestRamdiskOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rivet-qemu-test-")
		if err != nil {
			guestRamdiskErr = err
			return
		}
		guestRamdiskDir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a Go build; slow on a busy machine
		defer cancel()
		res, err := initramfs.Build(ctx, initramfs.Options{
			AgentPackage: filepath.Join(root, "conductor", "power", "qemu", "testdata", "guest"),
			Commands:     []string{},
			ModulesDir:   modules,
			Output:       filepath.Join(dir, "initramfs.cpio.zst"),
			ModuleDir:    root,
		})
		guestRamdisk, guestRamdiskErr = res.Path, err
	})
	if guestRamdiskErr != nil {
		t.Fatalf("build guest ramdisk: %v", guestRamdiskErr)
	}
	return guestRamdisk
}

// TestVMRamdiskBoot: a "pxe" boot of a prepared ramdisk. The guest GETs the
// conductor URL that NodeURL rewrote, twice (two relay connections), from
// an httptest server on 127.0.0.1; the test then calls the guest's port
// 9999 through the hostfwd port the guest learned from ipa-advertise-port;
// finally the driver powers the VM off.
func TestVMRamdiskBoot(t *testing.T) {
	for _, mode := range []string{BootUEFI, BootBIOS} {
		t.Run(mode, func(t *testing.T) { testVMRamdiskBoot(t, mode) })
	}
}

func testVMRamdiskBoot(t *testing.T, mode string) {
	kernel := vmtest.Kernel(t)
	d := vmDriver(t)
	rd := buildGuestRamdisk(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var hits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.RequestURI())
		mu.Unlock()
		fmt.Fprintf(w, "hello-from-conductor-%s", r.URL.Query().Get("n"))
	}))
	defer srv.Close()

	n := testNode(t, "c0ffee00-7f0e-4c1e-9a2c-1d1f0f6f7a1"+map[string]string{BootUEFI: "0", BootBIOS: "1"}[mode],
		map[string]any{InfoBootMode: mode, InfoMemoryMB: 512})
	if err := os.Truncate(n.DriverInfo[InfoDisk].(string), 64<<20); err != nil {
		t.Fatal(err)
	}
	apiURL, err := d.NodeURL(n, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(apiURL, "http://10.0.2.100:") {
		t.Fatalf("NodeURL(%s) = %s", srv.URL, apiURL)
	}
	if err := d.PrepareRamdisk(ctx, n, power.Ramdisk{Kernel: kernel, Initramfs: rd, Params: []string{"ipa-api-url=" + apiURL}}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBootDevice(ctx, n, power.BootPXE, false); err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(d.cfg.StateDir, n.UUID, "console.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("console log:\n%s", b)
		}
		_ = d.SetPowerState(context.Background(), n, power.Off)
	})
	start := time.Now()
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	t.Logf("power on returned after %v", time.Since(start).Round(time.Millisecond))

	m, err := vmtest.WaitForFileLine(ctx, console, 0, regexp.MustCompile(`RIVET-QEMU-GUEST ready mac=(\S+) advertise=(\S+):(\d+)`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: guest ready %v after power on", mode, time.Since(start).Round(10*time.Millisecond))
	if m[1] != testMAC || m[2] != "127.0.0.1" {
		t.Errorf("guest mac=%s advertise host=%s", m[1], m[2])
	}
	b, _ := os.ReadFile(console)
	for i := 1; i <= 2; i++ {
		want := fmt.Sprintf("RIVET-QEMU-GUEST get n=%d status=200 body=hello-from-conductor-%d", i, i)
		if !strings.Contains(string(b), want) {
			t.Errorf("console lacks %q", want)
		}
	}
	mu.Lock()
	if len(hits) != 2 || !strings.Contains(hits[0], "mac="+testMAC) {
		t.Errorf("conductor saw %q, want two GETs with the guest's MAC", hits)
	}
	mu.Unlock()

	// The conductor → agent direction, at the advertised address.
	agentURL := "http://" + m[2] + ":" + m[3] + "/"
	resp, err := http.Get(agentURL)
	if err != nil {
		t.Fatalf("GET %s: %v", agentURL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "guest-ok mac="+testMAC {
		t.Errorf("GET %s = %q", agentURL, body)
	}

	if st, err := d.PowerState(ctx, n); err != nil || st != power.On {
		t.Fatalf("power state %s, %v", st, err)
	}
	pid := readPid(t, d, n)
	if err := d.SetPowerState(ctx, n, power.Off); err != nil {
		t.Fatal(err)
	}
	gone(t, pid)
	if st, err := d.PowerState(ctx, n); err != nil || st != power.Off {
		t.Errorf("after power off: %s, %v", st, err)
	}
	if _, err := http.Get(agentURL); err == nil {
		t.Error("agent port still answers after power off")
	}
}

// TestVMDiskBoot: the test image written at the start of a 4 GiB sparse
// disk, boot device "disk", OVMF. The image prints its marker and powers
// off, which the driver reports as "power off".
func TestVMDiskBoot(t *testing.T) {
	kernel := vmtest.Kernel(t)
	vmtest.Tool(t, "grub-mkstandalone")
	d := vmDriver(t)
	if d.cfg.OVMFCode == "" {
		vmtest.Unavailable(t, "OVMF not installed (run make deps)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	img, err := testimage.Build(ctx, testimage.Options{Kernel: kernel, Output: filepath.Join(t.TempDir(), "image.raw"),
		ID: "qemu-driver-test", ModuleDir: vmtest.RepoRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	n := testNode(t, "d15c0000-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	disk := n.DriverInfo[InfoDisk].(string)
	data, err := os.ReadFile(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 4<<30); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := d.SetBootDevice(ctx, n, power.BootDisk, true); err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(d.cfg.StateDir, n.UUID, "console.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("console log:\n%s", b)
		}
		_ = d.SetPowerState(context.Background(), n, power.Off)
	})
	start := time.Now()
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, d, n)
	m, err := vmtest.WaitForFileLine(ctx, console, 0, testimage.MarkerPattern)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != img.ID || m[2] != "uefi" {
		t.Errorf("marker id=%s firmware=%s", m[1], m[2])
	}
	t.Logf("disk boot: marker %v after power on", time.Since(start).Round(10*time.Millisecond))
	gone(t, pid)
	if st, err := d.PowerState(ctx, n); err != nil || st != power.Off {
		t.Errorf("after the guest powered off: %s, %v", st, err)
	}
}
