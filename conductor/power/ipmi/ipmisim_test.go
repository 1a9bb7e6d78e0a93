package ipmi

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

func TestMain(m *testing.M) {
	ipmisim.RunHelper()
	os.Exit(m.Run())
}

// simNode starts OpenIPMI's ipmi_sim as a node's BMC; its machine is a
// shell that records the boot device it was started with and sleeps.
func simNode(t testing.TB) (*ipmisim.BMC, power.Node, string) {
	t.Helper()
	if ok, why := ipmisim.Available(); !ok {
		vmtest.Unavailable(t, "%s", why)
	}
	dir := t.TempDir()
	boots := filepath.Join(dir, "boots.txt")
	b, err := ipmisim.Start(context.Background(), ipmisim.Config{
		Dir: dir,
		Command: func(boot string) []string {
			return []string{"/bin/sh", "-c", `echo "$1" >> "$2"; exec sleep 600`, "machine", boot, boots}
		},
		StopTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, power.Node{UUID: "7d1e0c9a-3f51-4d8e-a2b4-5c6d7e8f9a0b", DriverInfo: b.DriverInfo()}, boots
}

// timed runs fn and logs how long it took (the figures are reported, not
// asserted: see BenchmarkIPMISimPowerState).
func timed(t *testing.T, what string, fn func() error) {
	t.Helper()
	start := time.Now()
	if err := fn(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%-28s %v", what, time.Since(start).Round(time.Millisecond))
}

func waitSim(t *testing.T, b *ipmisim.BMC, on bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); b.PoweredOn() != on; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("machine on=%v, want %v", b.PoweredOn(), on)
		}
	}
}

func TestIPMISimPowerAndBootDevice(t *testing.T) {
	b, n, boots := simNode(t)
	d := New(Config{})
	ctx := context.Background()
	state := func(want power.State) {
		t.Helper()
		timed(t, "power state", func() error {
			st, err := d.PowerState(ctx, n)
			if err == nil && st != want {
				t.Fatalf("power state = %q, want %q", st, want)
			}
			return err
		})
	}
	timed(t, "validate connection", func() error { return d.ValidateConnection(ctx, n) })
	state(power.Off)
	timed(t, "set boot device pxe", func() error { return d.SetBootDevice(ctx, n, power.BootPXE, false) })
	timed(t, "get boot device", func() error {
		dev, _, err := d.GetBootDevice(ctx, n)
		if err == nil && dev != power.BootPXE {
			t.Fatalf("boot device = %q, want pxe", dev)
		}
		return err
	})
	timed(t, "power on", func() error { return d.SetPowerState(ctx, n, power.On) })
	waitSim(t, b, true)
	state(power.On)
	timed(t, "set boot device disk", func() error { return d.SetBootDevice(ctx, n, power.BootDisk, true) })
	timed(t, "reboot", func() error { return d.SetPowerState(ctx, n, power.Reboot) })
	waitSim(t, b, true)
	timed(t, "power off", func() error { return d.SetPowerState(ctx, n, power.Off) })
	waitSim(t, b, false)
	state(power.Off)
	data, err := os.ReadFile(boots)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "pxe\ndisk\n"; got != want {
		t.Fatalf("the machine booted %q, want %q (the device set before each start)", got, want)
	}
	// Soft power off reaches the machine; a soft reboot brings it back.
	timed(t, "power on", func() error { return d.SetPowerState(ctx, n, power.On) })
	waitSim(t, b, true)
	timed(t, "soft power off", func() error { return d.SetPowerState(ctx, n, power.SoftOff) })
	waitSim(t, b, false)
	d2 := New(Config{PollInterval: 20 * time.Millisecond})
	timed(t, "soft reboot (from off)", func() error { return d2.SetPowerState(ctx, n, power.SoftReboot) })
	waitSim(t, b, true)
}

func TestIPMISimCipherSuiteFromDriverInfo(t *testing.T) {
	_, n, _ := simNode(t)
	d := New(Config{})
	ctx := context.Background()
	n.DriverInfo["ipmi_cipher_suite"] = "3"
	if _, err := d.PowerState(ctx, n); err != nil {
		t.Fatalf("cipher suite 3: %v", err)
	}
	// ipmi_sim has no suite 17 (SHA-256): named in driver_info, it is the
	// only one tried, and the BMC's refusal is the error.
	n.DriverInfo["ipmi_cipher_suite"] = float64(17)
	_, err := d.PowerState(ctx, n)
	if err == nil {
		t.Fatal("cipher suite 17 accepted by a BMC without it")
	}
	addr := n.DriverInfo["ipmi_address"].(string)
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), n.UUID) {
		t.Fatalf("error %q does not name the BMC and the node", err)
	}
}

func TestIPMISimLan15(t *testing.T) {
	b, n, _ := simNode(t)
	n.DriverInfo["ipmi_protocol_version"] = "1.5"
	d := New(Config{})
	ctx := context.Background()
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	waitSim(t, b, true)
	if st, err := d.PowerState(ctx, n); err != nil || st != power.On {
		t.Fatalf("power state = %q, %v", st, err)
	}
}

func TestIPMISimDeadBMCFailsValidation(t *testing.T) {
	b, n, _ := simNode(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	d := New(Config{Timeout: 500 * time.Millisecond})
	err := d.ValidateConnection(context.Background(), n)
	if err == nil {
		t.Fatal("a BMC that does not answer validated")
	}
	if !strings.Contains(err.Error(), b.Addr()) {
		t.Fatalf("error %q does not name the BMC %s", err, b.Addr())
	}
	if err := d.SetPowerState(context.Background(), n, power.On); err == nil || !strings.Contains(err.Error(), b.Addr()) {
		t.Fatalf("power on of a dead BMC = %v, want an error naming %s", err, b.Addr())
	}
}

func TestIPMISimWrongPassword(t *testing.T) {
	b, n, _ := simNode(t)
	n.DriverInfo["ipmi_password"] = "wrong-password"
	err := New(Config{}).ValidateConnection(context.Background(), n)
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	if strings.Contains(err.Error(), "wrong-password") || strings.Contains(err.Error(), b.Password()) {
		t.Fatalf("error leaks a password: %v", err)
	}
}

// BenchmarkIPMISimPowerState measures one power-state read (a whole
// lanplus session: open with the cipher-suite fallback, Get Chassis
// Status, close) against ipmi_sim, which does not answer Get Channel
// Cipher Suites.
func BenchmarkIPMISimPowerState(b *testing.B) {
	_, n, _ := simNode(b)
	d := New(Config{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := d.PowerState(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
}
