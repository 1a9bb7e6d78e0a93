package kmod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSys is a sysfs tree: devices under sys/devices with their modalias,
// linked from sys/bus/<bus>/devices/<name> as the kernel does.
type fakeSys struct {
	t    *testing.T
	root string
}

func newFakeSys(t *testing.T) *fakeSys { return &fakeSys{t: t, root: t.TempDir()} }

// add creates a device at devpath (under /sys) on bus with a modalias
// ("" for none) and returns its uevent.
func (s *fakeSys) add(bus, devpath, modalias string) Event {
	s.t.Helper()
	dir := filepath.Join(s.root, "sys", devpath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	if modalias != "" {
		if err := os.WriteFile(filepath.Join(dir, "modalias"), []byte(modalias+"\n"), 0o444); err != nil {
			s.t.Fatal(err)
		}
	}
	busDir := filepath.Join(s.root, "sys", "bus", bus, "devices")
	if err := os.MkdirAll(busDir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	rel, _ := filepath.Rel(busDir, dir)
	if err := os.Symlink(rel, filepath.Join(busDir, filepath.Base(devpath))); err != nil {
		s.t.Fatal(err)
	}
	return Event{Action: "add", DevPath: devpath, Subsystem: bus, Modalias: modalias}
}

// bind links a device to a driver.
func (s *fakeSys) bind(devpath, driver string) {
	s.t.Helper()
	if err := os.Symlink("../../../bus/x/drivers/"+driver, filepath.Join(s.root, "sys", devpath, "driver")); err != nil && !errors.Is(err, os.ErrExist) {
		s.t.Fatal(err)
	}
}

// chanSource is an EventSource fed by the test.
type chanSource chan any

func (c chanSource) Next(ctx context.Context) (Event, error) {
	select {
	case v := <-c:
		if err, ok := v.(error); ok {
			return Event{}, err
		}
		return v.(Event), nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

func TestColdplugAndHotplug(t *testing.T) {
	sys := newFakeSys(t)
	const (
		virtioNIC = "/devices/pci0000:00/0000:00:03.0"
		raid      = "/devices/pci0000:00/0000:00:04.0"
		intelNIC  = "/devices/pci0000:00/0000:00:05.0"
		hostBr    = "/devices/pci0000:00/0000:00:00.0"
		cpu       = "/devices/system/cpu/cpu0"
	)
	sys.add("pci", virtioNIC, "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")
	sys.add("pci", raid, "pci:v00001000d00000079sv00001000sd00009261bc01sc04i00")
	sys.add("pci", intelNIC, "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00")
	sys.add("pci", hostBr, "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00")
	sys.add("cpu", cpu, "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001")
	sys.add("pci", "/devices/pci0000:00/0000:00:06.0", "") // no modalias file

	events := make(chanSource, 16)
	var (
		mu   sync.Mutex
		seen []string
	)
	ix, err := LoadIndex(writeIndex(t, testIndex))
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{ix: ix, fail: map[string]error{"e1000e": errors.New("init_module: Invalid argument")}}
	l := NewLoader(ix, LoaderOptions{Present: []string{}, Logger: quietLog()})
	// The fake kernel binds drivers the way the real one does, and loading
	// virtio_pci creates the virtio device (announced by a uevent), as
	// loading megaraid_sas makes its disk appear.
	l.initModule = func(path, params string) error {
		if err := k.init(path, params); err != nil {
			return err
		}
		name := ModuleName(path)
		mu.Lock()
		seen = append(seen, name)
		mu.Unlock()
		switch name {
		case "virtio_pci":
			sys.bind(virtioNIC, "virtio-pci")
			events <- sys.add("virtio", virtioNIC+"/virtio0", "virtio:d00000001v00001AF4")
		case "virtio_net":
			sys.bind(virtioNIC+"/virtio0", "virtio_net")
		case "megaraid_sas":
			sys.bind(raid, "megaraid_sas")
			events <- sys.add("scsi", raid+"/host0/target0:2:0/0:2:0:0", "scsi:t-0x00")
		case "sd_mod":
			sys.bind(raid+"/host0/target0:2:0/0:2:0:0", "sd")
		}
		return nil
	}
	p := NewPlugger(ix, l, PluggerOptions{SysRoot: sys.root, Workers: 2, Logger: quietLog()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Coldplug(ctx); err != nil {
		t.Fatal(err)
	}
	r := p.Report()
	if r.Devices != 5 {
		t.Errorf("coldplug saw %d devices with a modalias, want 5", r.Devices)
	}
	followed := make(chan error, 1)
	go func() { followed <- p.Follow(ctx, events) }()
	// Wait until the hotplugged devices have their drivers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := slices.Contains(seen, "virtio_net") && slices.Contains(seen, "sd_mod")
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hotplug did not load virtio_net and sd_mod; loaded %v", k.Loaded())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Events that load nothing: a removal, a device without modalias.
	events <- Event{Action: "remove", DevPath: raid, Modalias: "pci:v00001000d00000079sv*"}
	events <- Event{Action: "add", DevPath: "/devices/virtual/net/lo"}
	// Both were taken (so the removal was handled) before Follow stops.
	for deadline := time.Now().Add(10 * time.Second); len(events) > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Follow did not take the last events")
		}
	}
	cancel()
	if err := <-followed; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v, want context.Canceled", err)
	}

	got := k.Loaded()
	sort.Strings(got)
	if want := []string{"crc32c_generic", "failover", "megaraid_sas", "net_failover", "ptp", "scsi_mod", "sd_mod", "virtio", "virtio_net", "virtio_pci", "virtio_ring"}; !reflect.DeepEqual(got, want) {
		t.Errorf("kernel got %v, want %v", got, want)
	}
	r = p.Report()
	if len(r.Failed) != 1 || r.Failed[0].Module != "e1000e" || !strings.Contains(r.Failed[0].Error, "Invalid argument") {
		t.Errorf("Failed = %+v, want e1000e", r.Failed)
	}
	var noDriver []string
	for _, d := range r.NoDriver {
		noDriver = append(noDriver, d.DevPath+"="+strings.Join(d.Modules, ","))
	}
	// The host bridge has no module; e1000e failed; the CPU is not on a
	// reported bus.
	if want := []string{hostBr + "=", intelNIC + "=e1000e"}; !reflect.DeepEqual(noDriver, want) {
		t.Errorf("NoDriver = %v, want %v", noDriver, want)
	}
	// Five at coldplug, the virtio and SCSI devices hotplugged, the RAID
	// controller removed.
	if r.Devices != 6 {
		t.Errorf("Devices = %d, want 6", r.Devices)
	}
}

func TestFollowOverflowRescans(t *testing.T) {
	sys := newFakeSys(t)
	ix, err := LoadIndex(writeIndex(t, testIndex))
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{ix: ix}
	l := NewLoader(ix, LoaderOptions{Present: []string{}, Logger: quietLog()})
	l.initModule = k.init
	p := NewPlugger(ix, l, PluggerOptions{SysRoot: sys.root, Logger: quietLog()})
	sys.add("pci", "/devices/pci0000:00/0000:00:03.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")
	if err := p.Coldplug(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A SCSI disk appears, but its event is lost: the overflow makes the
	// plugger walk sysfs again.
	sys.add("scsi", "/devices/pci0000:00/0000:00:04.0/host0/target0:0:0/0:0:0:0", "scsi:t-0x00")
	events := make(chanSource, 2)
	events <- ErrOverflow
	boom := errors.New("socket closed")
	events <- boom
	if err := p.Follow(context.Background(), events); !errors.Is(err, boom) {
		t.Errorf("Follow = %v, want the source's error", err)
	}
	if !slices.Contains(k.Loaded(), "sd_mod") {
		t.Errorf("after the rescan the kernel has %v, want sd_mod", k.Loaded())
	}
}

func TestColdplugNoSysfs(t *testing.T) {
	ix, err := LoadIndex(writeIndex(t, testIndex))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlugger(ix, NewLoader(ix, LoaderOptions{Present: []string{}}), PluggerOptions{SysRoot: t.TempDir()})
	if err := p.Coldplug(context.Background()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

func TestSettle(t *testing.T) {
	ix, err := LoadIndex(writeIndex(t, testIndex))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	l := NewLoader(ix, LoaderOptions{Present: []string{}, Logger: quietLog()})
	l.initModule = func(string, string) error { <-release; return nil }
	p := NewPlugger(ix, l, PluggerOptions{SysRoot: t.TempDir(), Logger: quietLog()})
	ctx := context.Background()
	if !p.Settle(ctx, 5*time.Millisecond, time.Minute) {
		t.Error("nothing happening: not settled")
	}
	p.Handle(ctx, Event{Action: "add", DevPath: "/devices/x", Subsystem: "scsi", Modalias: "scsi:t-0x00"})
	// The load blocks: Settle gives up at its limit.
	if p.Settle(ctx, 5*time.Millisecond, 50*time.Millisecond) {
		t.Error("settled while a load was in progress")
	}
	close(release)
	if !p.Settle(ctx, 5*time.Millisecond, time.Minute) {
		t.Error("not settled after the load finished")
	}
	p.Wait()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p.Handle(ctx, Event{Action: "add", DevPath: "/devices/y", Subsystem: "scsi", Modalias: "scsi:t-0x0E"})
	if p.Settle(cctx, time.Hour, 2*time.Hour) {
		t.Error("settled with a cancelled context")
	}
	p.Wait()
}

func TestHandleRemove(t *testing.T) {
	ix, err := LoadIndex(writeIndex(t, testIndex))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlugger(ix, NewLoader(ix, LoaderOptions{Present: []string{}, Logger: quietLog()}),
		PluggerOptions{SysRoot: t.TempDir(), Logger: quietLog()})
	ctx := context.Background()
	dev := "/devices/pci0000:00/0000:00:07.0"
	p.Handle(ctx, Event{Action: "add", DevPath: dev, Subsystem: "pci", Modalias: "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80"})
	if r := p.Report(); r.Devices != 1 || len(r.NoDriver) != 1 {
		t.Errorf("after add: %+v", r)
	}
	p.Handle(ctx, Event{Action: "remove", DevPath: dev})
	if r := p.Report(); r.Devices != 0 || len(r.NoDriver) != 0 {
		t.Errorf("after remove: %+v", r)
	}
	p.Wait()
}
