package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/power"
)

// TestCommand: the argv seam for callers that run the VM themselves.
func TestCommand(t *testing.T) {
	d := fakeDriver(t, "")
	ctx := context.Background()
	n := testNode(t, "c0ffee00-7f0e-4c1e-9a2c-1d1f0f6f7a20", map[string]any{InfoNICModel: "vmxnet3", InfoDiskBus: "ahci"})
	kernel := filepath.Join(t.TempDir(), "k")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	if err := d.PrepareRamdisk(ctx, n, power.Ramdisk{Kernel: kernel, Initramfs: kernel, Params: []string{"ipa-api-url=http://10.0.2.100:6385"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBootDevice(ctx, n, power.BootPXE, false); err != nil {
		t.Fatal(err)
	}
	argv, err := d.Command(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if argv[0] != selfExe(t) {
		t.Errorf("argv[0] = %q, want the configured QEMU", argv[0])
	}
	if !slices.Contains(argv, "-kernel") || !slices.Contains(argv, "vmxnet3,netdev=net0,mac="+testMAC+",romfile=") ||
		!slices.Contains(argv, "ich9-ahci,id=disk0-ctl") {
		t.Errorf("argv %q lacks the kernel boot, the vmxnet3 NIC or the AHCI controller", argv)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.StateDir, n.UUID, "OVMF_VARS.fd")); err != nil {
		t.Errorf("OVMF variables not prepared: %v", err)
	}
	// The one-time pxe boot was used: the next command boots the disk.
	argv, err = d.Command(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(argv, "-kernel") {
		t.Error("one-time pxe boot used twice")
	}
	if st := powerState(t, d, n); st != power.Off {
		t.Errorf("Command started something: power %s", st)
	}
	n.DriverInfo[InfoDiskBus] = "floppy"
	if _, err := d.Command(ctx, n); !errors.Is(err, power.ErrInvalidDriverInfo) {
		t.Errorf("bad bus: err = %v", err)
	}
}

// TestBridgeSettings: on qemu_bridge, URLs reach the node unchanged, no
// forward or agent port is set up, and the ifup script puts the tap on the
// bridge.
func TestBridgeSettings(t *testing.T) {
	d := fakeDriver(t, "")
	ctx := context.Background()
	n := testNode(t, "c0ffee00-7f0e-4c1e-9a2c-1d1f0f6f7a21", map[string]any{InfoBridge: "br-rack0", InfoBoot: BootNetwork})
	u, err := d.NodeURL(n, "http://192.0.2.10:6385/v1")
	if err != nil || u != "http://192.0.2.10:6385/v1" {
		t.Errorf("NodeURL = %q, %v; want it unchanged", u, err)
	}
	if err := d.SetBootDevice(ctx, n, power.BootPXE, true); err != nil {
		t.Fatal(err)
	}
	// Network boot needs no prepared ramdisk.
	argv, err := d.Command(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	netdev, _ := argAfter(argv, "-netdev", "")
	if !strings.HasPrefix(netdev, "tap,id=net0,ifname="+tapName(n.UUID)+",script=") {
		t.Errorf("-netdev %q", netdev)
	}
	ifup := filepath.Join(d.cfg.StateDir, n.UUID, "ifup")
	b, err := os.ReadFile(ifup)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), ` link set dev "$1" master br-rack0 up`) {
		t.Errorf("ifup script:\n%s", b)
	}
	if fi, err := os.Stat(ifup); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("ifup not executable: %v", err)
	}
	st, err := loadState(d.pathsFor(n.UUID, settings{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.AgentPort != 0 || len(st.Forwards) != 0 {
		t.Errorf("bridge node got user-networking state %+v", st)
	}
}
