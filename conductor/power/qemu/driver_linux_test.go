package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
)

// These tests run the driver's process handling against the fake QEMU of
// main_test.go (no emulator, no CPU cost): the test binary is Config.Binary.

func fakeDriver(t *testing.T, mode string) *Driver {
	t.Helper()
	t.Setenv(helperEnv, "fake-qemu")
	t.Setenv(fakeEnv, mode)
	d := newTestDriver(t, Config{Binary: selfExe(t), OVMFCode: "/dev/null", OVMFVars: "/dev/null"})
	d.stopGrace = 2 * time.Second
	return d
}

func powerState(t *testing.T, d *Driver, n power.Node) power.State {
	t.Helper()
	st, err := d.PowerState(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func readPid(t *testing.T, d *Driver, n power.Node) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.cfg.StateDir, n.UUID, "qemu.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// gone waits until pid no longer exists (reaped, not a zombie).
func gone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pid %d still exists (running or an unreaped zombie)", pid)
}

func TestPowerCycle(t *testing.T) {
	d := fakeDriver(t, "")
	n := testNode(t, "0b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	ctx := t.Context()
	if st := powerState(t, d, n); st != power.Off {
		t.Fatalf("new node: %s", st)
	}
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	if st := powerState(t, d, n); st != power.On {
		t.Fatalf("after on: %s", st)
	}
	pid := readPid(t, d, n)
	if !isVMProcess(pid, n.UUID) {
		t.Errorf("pid %d is not recognised as the node's VM", pid)
	}
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	if again := readPid(t, d, n); again != pid {
		t.Errorf("power on of a running node started pid %d (was %d)", again, pid)
	}
	// A new session: a signal to the conductor's process group misses it.
	if sid, _ := getsid(pid); sid != pid {
		t.Errorf("qemu session %d, want its own (%d)", sid, pid)
	}
	console, _ := os.ReadFile(filepath.Join(d.cfg.StateDir, n.UUID, "console.log"))
	if !strings.Contains(string(console), "=== rivet qemu driver: power on") || !strings.Contains(string(console), "fake guest booted") {
		t.Errorf("console log:\n%s", console)
	}

	if err := d.SetPowerState(ctx, n, power.Reboot); err != nil {
		t.Fatal(err)
	}
	rebooted := readPid(t, d, n)
	if rebooted == pid {
		t.Error("reboot kept the same process")
	}
	gone(t, pid)
	if err := d.SetPowerState(ctx, n, power.Off); err != nil {
		t.Fatal(err)
	}
	gone(t, rebooted)
	if st := powerState(t, d, n); st != power.Off {
		t.Errorf("after off: %s", st)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.StateDir, n.UUID, "qemu.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left after power off: %v", err)
	}
	if err := d.SetPowerState(ctx, n, power.Off); err != nil {
		t.Errorf("power off of an off node: %v", err)
	}
	if err := d.SetPowerState(ctx, n, power.SoftOff); !errors.Is(err, power.ErrUnsupported) {
		t.Errorf("soft power off: %v, want ErrUnsupported", err)
	}
}

func TestGuestPowerOff(t *testing.T) {
	d := fakeDriver(t, "poweroff")
	n := testNode(t, "1c2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	if err := d.SetPowerState(t.Context(), n, power.On); err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, d, n)
	gone(t, pid)
	if st := powerState(t, d, n); st != power.Off {
		t.Errorf("after the guest powered off: %s", st)
	}
}

func TestReattach(t *testing.T) {
	d1 := fakeDriver(t, "")
	n := testNode(t, "2d2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	if err := d1.SetPowerState(t.Context(), n, power.On); err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, d1, n)
	// A conductor restart: a new Driver on the same state directory.
	d2 := newTestDriver(t, Config{StateDir: d1.cfg.StateDir, Binary: selfExe(t), OVMFCode: "/dev/null", OVMFVars: "/dev/null"})
	if st := powerState(t, d2, n); st != power.On {
		t.Fatalf("new driver sees %s", st)
	}
	if err := d2.SetPowerState(t.Context(), n, power.On); err != nil {
		t.Fatal(err)
	}
	if readPid(t, d2, n) != pid {
		t.Error("power on of a re-attached running VM started another")
	}
	if err := d2.SetPowerState(t.Context(), n, power.Off); err != nil {
		t.Fatal(err)
	}
	gone(t, pid)
	if st := powerState(t, d1, n); st != power.Off {
		t.Errorf("old driver sees %s", st)
	}
}

func TestPidFileOfAnotherProcess(t *testing.T) {
	d := fakeDriver(t, "")
	n := testNode(t, "3e2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	dir := filepath.Join(d.cfg.StateDir, n.UUID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Our own pid: alive, but not this node's QEMU.
	if err := os.WriteFile(filepath.Join(dir, "qemu.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if st := powerState(t, d, n); st != power.Off {
		t.Errorf("foreign pid: %s", st)
	}
	if err := d.SetPowerState(t.Context(), n, power.Off); err != nil {
		t.Fatal(err)
	}
	// Still here: the driver did not signal us.
}

func TestStartFailure(t *testing.T) {
	d := fakeDriver(t, "fail")
	n := testNode(t, "4f2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	err := d.SetPowerState(t.Context(), n, power.On)
	if !errors.Is(err, errNotReady) || !strings.Contains(err.Error(), "could not set up host forwarding rule") || !strings.Contains(err.Error(), n.UUID) {
		t.Fatalf("err = %v, want errNotReady with QEMU's message and the node", err)
	}
	if st := powerState(t, d, n); st != power.Off {
		t.Errorf("after a failed start: %s", st)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.StateDir, n.UUID, "qemu.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left after a failed start: %v", err)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	d := fakeDriver(t, "ignore-term")
	d.stopGrace = 300 * time.Millisecond
	n := testNode(t, "5a2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	if err := d.SetPowerState(t.Context(), n, power.On); err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, d, n)
	start := time.Now()
	if err := d.SetPowerState(t.Context(), n, power.Off); err != nil {
		t.Fatal(err)
	}
	gone(t, pid)
	if took := time.Since(start); took < d.stopGrace {
		t.Errorf("stopped after %v, before the grace period: SIGTERM was not ignored?", took)
	}
}

func TestStartPreconditions(t *testing.T) {
	d := fakeDriver(t, "")
	ctx := t.Context()
	n := testNode(t, "6b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	n.MACs = nil
	if err := d.SetPowerState(ctx, n, power.On); !errors.Is(err, power.ErrInvalidDriverInfo) {
		t.Errorf("no MAC: %v", err)
	}
	n = testNode(t, "6b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	n.DriverInfo[InfoDisk] = "no-such-disk.raw"
	if err := d.SetPowerState(ctx, n, power.On); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing disk: %v", err)
	}
	n = testNode(t, "6b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil)
	if err := d.SetBootDevice(ctx, n, power.BootPXE, true); err != nil {
		t.Fatal(err)
	}
	if err := d.SetPowerState(ctx, n, power.On); err == nil || !strings.Contains(err.Error(), "no deploy ramdisk") {
		t.Errorf("pxe without a ramdisk: %v", err)
	}
	noOVMF := newTestDriver(t, Config{Binary: selfExe(t), OVMFCode: "", OVMFVars: ""})
	noOVMF.cfg.OVMFCode, noOVMF.cfg.OVMFVars = "", ""
	if err := noOVMF.SetPowerState(ctx, testNode(t, "7c2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", nil), power.On); err == nil || !strings.Contains(err.Error(), "OVMF") {
		t.Errorf("uefi without OVMF: %v", err)
	}
}

// fakeArgs returns the arguments the fake QEMU of a node was started with.
func fakeArgs(t *testing.T, d *Driver, n power.Node) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.cfg.StateDir, n.UUID, "argv.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}

func TestBootDevices(t *testing.T) {
	d := fakeDriver(t, "")
	ctx := t.Context()
	n := testNode(t, "8d2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", map[string]any{InfoBootMode: BootBIOS, InfoAgentPort: 45678})
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	os.WriteFile(initrd, []byte("initrd"), 0o644)
	if err := d.PrepareRamdisk(ctx, n, power.Ramdisk{Kernel: kernel, Initramfs: initrd, Params: []string{"ipa-api-url=http://10.0.2.100:6385", "BOOTIF=" + testMAC}}); err != nil {
		t.Fatal(err)
	}
	if err := d.PrepareRamdisk(ctx, n, power.Ramdisk{Kernel: kernel, Initramfs: initrd, Params: []string{"a b"}}); err == nil {
		t.Error("parameter with a space accepted")
	}
	// Once pxe, then the persistent default (disk).
	if err := d.SetBootDevice(ctx, n, power.BootPXE, false); err != nil {
		t.Fatal(err)
	}
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	args := fakeArgs(t, d, n)
	k, _ := argAfter(args, "-kernel", "")
	if b, err := os.ReadFile(k); err != nil || string(b) != "kernel" || !strings.HasPrefix(k, d.cfg.StateDir) {
		t.Errorf("-kernel %s: %q, %v (want a copy in the state dir)", k, b, err)
	}
	if got, _ := argAfter(args, "-append", ""); got != "ipa-api-url=http://10.0.2.100:6385 BOOTIF="+testMAC+" console=ttyS0 ipa-advertise-host=127.0.0.1 ipa-advertise-port=45678" {
		t.Errorf("-append %q", got)
	}
	if got, _ := argAfter(args, "-netdev", ""); !strings.Contains(got, "hostfwd=tcp:127.0.0.1:45678-:9999") {
		t.Errorf("-netdev %q lacks the fixed agent port", got)
	}
	if err := d.SetPowerState(ctx, n, power.Reboot); err != nil {
		t.Fatal(err)
	}
	if args := fakeArgs(t, d, n); contains(args, "-kernel") {
		t.Error("one-time pxe boot used twice")
	}
	// Persistent pxe survives reboots and a new driver.
	if err := d.SetBootDevice(ctx, n, power.BootPXE, true); err != nil {
		t.Fatal(err)
	}
	if err := d.SetPowerState(ctx, n, power.Reboot); err != nil {
		t.Fatal(err)
	}
	if args := fakeArgs(t, d, n); !contains(args, "-kernel") {
		t.Error("persistent pxe not used")
	}
	if err := d.SetPowerState(ctx, n, power.Off); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBootDevice(ctx, n, "cdrom", true); !errors.Is(err, power.ErrUnsupported) {
		t.Errorf("cdrom: %v", err)
	}
}

func TestAgentPortAllocation(t *testing.T) {
	d := fakeDriver(t, "")
	ctx := t.Context()
	n := testNode(t, "9e2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10", map[string]any{InfoBootMode: BootBIOS})
	port := func() string {
		netdev, _ := argAfter(fakeArgs(t, d, n), "-netdev", "")
		_, rest, _ := strings.Cut(netdev, "hostfwd=tcp:127.0.0.1:")
		p, _, _ := strings.Cut(rest, "-")
		return p
	}
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	first := port()
	if err := d.SetPowerState(ctx, n, power.Reboot); err != nil {
		t.Fatal(err)
	}
	if again := port(); again != first || first == "" {
		t.Errorf("agent port %s then %s: want one port kept per node", first, again)
	}
	if err := d.SetPowerState(ctx, n, power.Off); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
