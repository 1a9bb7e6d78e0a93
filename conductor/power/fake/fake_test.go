package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/drivertest"
)

func TestPowerAndBootDevicePersist(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "power.json")
	var seen []power.State
	d, err := New(Config{StateFile: file, Hooks: Hooks{OnPowerState: func(_ power.Node, s power.State) error {
		seen = append(seen, s)
		return nil
	}}})
	if err != nil {
		t.Fatal(err)
	}
	n := power.Node{UUID: "u1"}
	if st, _ := d.PowerState(ctx, n); st != power.Off {
		t.Fatalf("initial state %q, want off", st)
	}
	if err := d.SetPowerState(ctx, n, power.Reboot); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBootDevice(ctx, n, power.BootDisk, true); err != nil {
		t.Fatal(err)
	}
	if err := d.SetPowerState(ctx, n, "bogus"); err == nil {
		t.Fatal("bogus power state accepted")
	}
	if len(seen) != 1 || seen[0] != power.Reboot {
		t.Fatalf("hook saw %v", seen)
	}

	d2, err := New(Config{StateFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := d2.PowerState(ctx, n); st != power.On {
		t.Fatalf("reloaded state %q, want on", st)
	}
	if dev, p := d2.BootDevice("u1"); dev != power.BootDisk || !p {
		t.Fatalf("reloaded boot device %q persistent=%v", dev, p)
	}
	if err := d2.Force("u1", power.Off); err != nil {
		t.Fatal(err)
	}
	if st, _ := d2.PowerState(ctx, n); st != power.Off {
		t.Fatalf("after Force: %q", st)
	}
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, func(t *testing.T) drivertest.Harness {
		d, err := New(Config{StateFile: filepath.Join(t.TempDir(), "power.json")})
		if err != nil {
			t.Fatal(err)
		}
		const uuid = "1be26c0b-03f2-4d2e-ae87-c02d1829bcc2"
		return drivertest.Harness{
			Driver: d,
			Node:   power.Node{UUID: uuid},
			Machine: func() drivertest.Machine {
				st, _ := d.PowerState(context.Background(), power.Node{UUID: uuid})
				dev, persistent := d.BootDevice(uuid)
				return drivertest.Machine{On: st == power.On, BootDevice: dev, Persistent: persistent, BootMode: d.BootMode(uuid)}
			},
			SetMachinePower: func(on bool) {
				st := power.Off
				if on {
					st = power.On
				}
				if err := d.Force(uuid, st); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

// Changes made concurrently share state-file writes, and every change is in
// the file once its call has returned: a reload sees them all, and each
// caller, right after its own call, finds its node in the file.
func TestConcurrentChangesAllPersisted(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "power.json")
	d, err := New(Config{StateFile: file})
	if err != nil {
		t.Fatal(err)
	}
	const nodes = 400
	errs := make(chan error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			uuid := fmt.Sprintf("node-%03d", i)
			if err := d.SetPowerState(ctx, power.Node{UUID: uuid}, power.On); err != nil {
				errs <- err
				return
			}
			b, err := os.ReadFile(file)
			if err != nil {
				errs <- err
				return
			}
			var onDisk map[string]nodeState
			if err := json.Unmarshal(b, &onDisk); err != nil {
				errs <- err
				return
			}
			if onDisk[uuid].Power != power.On {
				errs <- fmt.Errorf("%s returned before the file held its change", uuid)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d2, err := New(Config{StateFile: file})
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		uuid := fmt.Sprintf("node-%03d", i)
		if st, _ := d2.PowerState(ctx, power.Node{UUID: uuid}); st != power.On {
			t.Fatalf("reloaded %s: %q, want on", uuid, st)
		}
	}
}

func TestCallLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calls.jsonl")
	d, err := New(Config{CallLog: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := power.Node{UUID: "n1"}
	if err := d.SetBootDevice(ctx, n, power.BootPXE, false); err != nil {
		t.Fatal(err)
	}
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PowerState(ctx, n); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.GetBootDevice(ctx, power.Node{UUID: "n2"}); err != nil {
		t.Fatal(err)
	}
	d.SupportedBootDevices(n) // no call to the machine: not logged
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c Call
		if err := json.Unmarshal([]byte(line), &c); err != nil || c.Time.IsZero() {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, c.Op+" "+c.Node+" "+c.Arg)
	}
	want := []string{"set_boot_device n1 pxe", "set_power_state n1 power on", "power_state n1 ", "get_boot_device n2 "}
	if !slices.Equal(got, want) {
		t.Fatalf("call log %q, want %q", got, want)
	}
}
