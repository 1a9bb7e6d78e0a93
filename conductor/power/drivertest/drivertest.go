// Package drivertest is the conformance suite every power driver passes
// (fake-hardware, redfish, ipmi): driver_info validation, power on, off,
// reboot and the soft variants, boot devices (once or persistent, UEFI or
// BIOS), reading them back, and failing — not hanging — on an unreachable
// BMC or a cancelled context. Each driver's test supplies a Harness around
// a simulated machine whose state the suite reads independently of the
// driver, so every assertion is about what the machine really did.
package drivertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
)

// Machine is the simulated machine's own view of its state, read without
// going through the driver.
type Machine struct {
	On         bool
	BootDevice power.BootDevice
	Persistent bool
	BootMode   power.BootMode
}

// Harness is one driver under test and the machine it controls.
type Harness struct {
	// Driver is the driver under test.
	Driver power.Driver
	// Node is a valid node that controls the simulated machine.
	Node power.Node
	// Machine reads the simulated machine's state.
	Machine func() Machine
	// SetMachinePower powers the simulated machine on or off behind the
	// driver's back (the OS shutting down, a button press).
	SetMachinePower func(on bool)
	// InvalidDriverInfo lists driver_info maps Validate must refuse with
	// power.ErrInvalidDriverInfo.
	InvalidDriverInfo []map[string]any
	// Unreachable, when its DriverInfo is set, is a node whose BMC does not
	// answer; every operation must fail within UnreachableTimeout.
	Unreachable        power.Node
	UnreachableTimeout time.Duration
	// NoBootMode is set for drivers that do not control the boot mode.
	NoBootMode bool
}

// Run runs the suite. newHarness builds a fresh harness (a new simulated
// machine, powered off) for each subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("Validate", func(t *testing.T) {
		h := newHarness(t)
		if err := h.Driver.Validate(h.Node); err != nil {
			t.Fatalf("Validate(valid node) = %v", err)
		}
		for _, di := range h.InvalidDriverInfo {
			n := h.Node
			n.DriverInfo = di
			if err := h.Driver.Validate(n); !errors.Is(err, power.ErrInvalidDriverInfo) {
				t.Errorf("Validate(%v) = %v, want ErrInvalidDriverInfo", redact(di), err)
			}
		}
	})

	t.Run("PowerOnOff", func(t *testing.T) {
		h := newHarness(t)
		ctx := testContext(t)
		setAndCheck(t, h, ctx, power.On, true)
		setAndCheck(t, h, ctx, power.Off, false)
		// Setting the state it is already in is not an error.
		setAndCheck(t, h, ctx, power.Off, false)
	})

	t.Run("PowerStateFollowsMachine", func(t *testing.T) {
		h := newHarness(t)
		ctx := testContext(t)
		h.SetMachinePower(true)
		if st, err := h.Driver.PowerState(ctx, h.Node); err != nil || st != power.On {
			t.Fatalf("PowerState after the machine powered on = %q, %v", st, err)
		}
		h.SetMachinePower(false)
		if st, err := h.Driver.PowerState(ctx, h.Node); err != nil || st != power.Off {
			t.Fatalf("PowerState after the machine powered off = %q, %v", st, err)
		}
	})

	t.Run("Reboot", func(t *testing.T) {
		h := newHarness(t)
		ctx := testContext(t)
		// From off, a reboot powers on; from on, it ends on.
		setAndCheck(t, h, ctx, power.Reboot, true)
		setAndCheck(t, h, ctx, power.Reboot, true)
	})

	t.Run("SoftPower", func(t *testing.T) {
		h := newHarness(t)
		ctx := testContext(t)
		setAndCheck(t, h, ctx, power.On, true)
		err := h.Driver.SetPowerState(ctx, h.Node, power.SoftOff)
		if errors.Is(err, power.ErrUnsupported) {
			t.Skip("driver has no soft power off")
		}
		if err != nil {
			t.Fatalf("SetPowerState(soft power off) = %v", err)
		}
		waitMachine(t, h, false)
		setAndCheck(t, h, ctx, power.SoftReboot, true)
	})

	t.Run("UnknownPowerState", func(t *testing.T) {
		h := newHarness(t)
		if err := h.Driver.SetPowerState(testContext(t), h.Node, "levitate"); !errors.Is(err, power.ErrUnsupported) {
			t.Fatalf("SetPowerState(levitate) = %v, want ErrUnsupported", err)
		}
	})

	t.Run("BootDevice", func(t *testing.T) {
		h := newHarness(t)
		ctx := testContext(t)
		cases := []struct {
			dev        power.BootDevice
			persistent bool
			mode       power.BootMode
		}{
			{power.BootPXE, false, ""},
			{power.BootDisk, true, ""},
			{power.BootPXE, true, power.BootModeBIOS},
			{power.BootDisk, false, power.BootModeUEFI},
		}
		for _, c := range cases {
			n := h.Node
			n.BootMode = c.mode
			if err := h.Driver.SetBootDevice(ctx, n, c.dev, c.persistent); err != nil {
				t.Fatalf("SetBootDevice(%s, persistent=%v, mode %q) = %v", c.dev, c.persistent, c.mode, err)
			}
			m := h.Machine()
			if m.BootDevice != c.dev || m.Persistent != c.persistent {
				t.Errorf("after SetBootDevice(%s, %v) the machine has %s, persistent=%v", c.dev, c.persistent, m.BootDevice, m.Persistent)
			}
			wantMode := c.mode
			if wantMode == "" {
				wantMode = power.BootModeUEFI
			}
			if !h.NoBootMode && m.BootMode != wantMode {
				t.Errorf("after SetBootDevice with mode %q the machine boots %q, want %q", c.mode, m.BootMode, wantMode)
			}
			if r, ok := h.Driver.(power.BootDeviceReader); ok {
				dev, persistent, err := r.GetBootDevice(ctx, n)
				if err != nil || dev != c.dev || persistent != c.persistent {
					t.Errorf("GetBootDevice = %s, %v, %v; want %s, %v", dev, persistent, err, c.dev, c.persistent)
				}
			}
		}
		if l, ok := h.Driver.(power.BootDeviceLister); ok {
			devs := l.SupportedBootDevices(h.Node)
			if !contains(devs, power.BootPXE) || !contains(devs, power.BootDisk) {
				t.Errorf("SupportedBootDevices = %v, want pxe and disk among them", devs)
			}
		}
		if err := h.Driver.SetBootDevice(ctx, h.Node, "punchcard", false); !errors.Is(err, power.ErrUnsupported) {
			t.Errorf("SetBootDevice(punchcard) = %v, want ErrUnsupported", err)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := h.Driver.SetPowerState(ctx, h.Node, power.On); err == nil && h.Machine().On {
			t.Fatal("SetPowerState with a cancelled context powered the machine on")
		}
	})

	t.Run("Unreachable", func(t *testing.T) {
		h := newHarness(t)
		if h.Unreachable.DriverInfo == nil {
			t.Skip("driver has no BMC to be unreachable")
		}
		timeout := h.UnreachableTimeout
		if timeout == 0 {
			timeout = 10 * time.Second
		}
		start := time.Now()
		ctx := testContext(t)
		if _, err := h.Driver.PowerState(ctx, h.Unreachable); err == nil {
			t.Fatal("PowerState of an unreachable BMC succeeded")
		}
		if err := h.Driver.SetPowerState(ctx, h.Unreachable, power.On); err == nil {
			t.Fatal("SetPowerState of an unreachable BMC succeeded")
		}
		if d := time.Since(start); d > timeout {
			t.Fatalf("failing against an unreachable BMC took %s, want < %s", d, timeout)
		}
	})
}

// setAndCheck sets a power state and checks both the machine and the
// driver's reading.
func setAndCheck(t *testing.T, h Harness, ctx context.Context, target power.State, wantOn bool) {
	t.Helper()
	if err := h.Driver.SetPowerState(ctx, h.Node, target); err != nil {
		t.Fatalf("SetPowerState(%s) = %v", target, err)
	}
	waitMachine(t, h, wantOn)
	want := power.Off
	if wantOn {
		want = power.On
	}
	if st, err := h.Driver.PowerState(ctx, h.Node); err != nil || st != want {
		t.Fatalf("PowerState after %s = %q, %v; want %q", target, st, err, want)
	}
}

// waitMachine waits (briefly: simulated machines act at once or nearly)
// for the machine to be on or off.
func waitMachine(t *testing.T, h Harness, on bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Machine().On != on {
		if time.Now().After(deadline) {
			t.Fatalf("machine on=%v, want %v", h.Machine().On, on)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func contains(devs []power.BootDevice, d power.BootDevice) bool {
	for _, x := range devs {
		if x == d {
			return true
		}
	}
	return false
}

// redact hides credentials in test output.
func redact(di map[string]any) map[string]any {
	out := make(map[string]any, len(di))
	for k, v := range di {
		if len(k) >= 8 && k[len(k)-8:] == "password" {
			v = "******"
		}
		out[k] = v
	}
	return out
}
