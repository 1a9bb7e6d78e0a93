package manager

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/erase"
	"github.com/rivetmetal/rivet/wire"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fake is a manager whose every capability is set by the test.
type fake struct {
	id    Identity
	level Level
	steps map[Kind][]Step
	// stepsErr is returned by Steps.
	stepsErr error
	// eraseDevice and eraseMetadata, when set, make the manager an eraser.
	eraseDevice   func(hardware.BlockDevice) erase.Result
	eraseMetadata func(hardware.BlockDevice) erase.Result
	contribute    func(*wire.Inventory) error
	calls         *[]string
	mu            *sync.Mutex
}

func newFake(class string, level Level) *fake {
	return &fake{id: Identity{Class: class, Name: strings.ToLower(class), Version: "1.0"}, level: level, steps: map[Kind][]Step{},
		calls: &[]string{}, mu: &sync.Mutex{}}
}

func (f *fake) record(s string) {
	f.mu.Lock()
	*f.calls = append(*f.calls, f.id.Class+" "+s)
	f.mu.Unlock()
}

func (f *fake) Identity() Identity                { return f.id }
func (f *fake) Support(ctx context.Context) Level { return f.level }
func (f *fake) withCalls(calls *[]string, mu *sync.Mutex) *fake {
	f.calls, f.mu = calls, mu
	return f
}

// stepper, eraser and contributor wrap a fake so that it has exactly the
// capability the test wants.
type stepper struct{ *fake }

func (s stepper) Steps(ctx context.Context, kind Kind, node NodeInfo) ([]Step, error) {
	s.record("steps " + string(kind))
	return s.steps[kind], s.stepsErr
}

type eraser struct{ *fake }

func (e eraser) EraseDevice(ctx context.Context, d hardware.BlockDevice, req EraseRequest) erase.Result {
	e.record("erase " + d.Path)
	return e.eraseDevice(d)
}

func (e eraser) EraseMetadata(ctx context.Context, d hardware.BlockDevice, req EraseRequest) erase.Result {
	e.record("metadata " + d.Path)
	return e.eraseMetadata(d)
}

type contributor struct{ *fake }

func (c contributor) ContributeInventory(ctx context.Context, inv *wire.Inventory) error {
	c.record("inventory")
	return c.contribute(inv)
}

func mustSelect(t *testing.T, ms ...Manager) *Set {
	t.Helper()
	s, err := Select(context.Background(), quiet(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func classes(s *Set) []string {
	var out []string
	for _, d := range s.Details() {
		out = append(out, d.Class)
	}
	return out
}

func TestSelectOrdersBySupport(t *testing.T) {
	s := mustSelect(t, newFake("Generic", Generic), newFake("Absent", None), newFake("Vendor", Mainline),
		newFake("Site", ServiceProvider), newFake("Other", Generic))
	if got := classes(s); !reflect.DeepEqual(got, []string{"Site", "Vendor", "Generic", "Other"}) {
		t.Fatalf("order %v", got)
	}
	want := wire.HardwareManagerVersion{"site": "1.0", "vendor": "1.0", "generic": "1.0", "other": "1.0"}
	if v := s.Versions(); !reflect.DeepEqual(v, want) {
		t.Errorf("versions %v", v)
	}
	if ins := s.Inspection(); len(ins) != 4 || ins[0] != (wire.InspectionManager{Name: "site", Version: "1.0"}) {
		t.Errorf("inspection managers %v", ins)
	}
	if s.Details()[0].Level != ServiceProvider || s.Details()[0].Level.String() != "SERVICE_PROVIDER" {
		t.Errorf("details %+v", s.Details())
	}
}

func TestSelectRefusals(t *testing.T) {
	if _, err := Select(context.Background(), quiet(), newFake("Absent", None)); !errors.Is(err, ErrNoManager) {
		t.Errorf("no manager: %v", err)
	}
	if _, err := Select(context.Background(), quiet(), newFake("Twin", Generic), newFake("Twin", Mainline)); err == nil {
		t.Error("two managers of one class accepted")
	}
	noVersion := newFake("Bare", Generic)
	noVersion.id.Version = ""
	if _, err := Select(context.Background(), quiet(), noVersion); err == nil {
		t.Error("a manager without a version accepted")
	}
	// A manager that does not support the machine may be incomplete.
	absent := newFake("Absent", None)
	absent.id = Identity{}
	if _, err := Select(context.Background(), quiet(), newFake("Generic", Generic), absent); err != nil {
		t.Errorf("an absent manager's identity checked: %v", err)
	}
}

func step(name string, prio int) Step {
	return Step{Name: name, Interface: "deploy", Priority: prio, Prepare: func(StepCall) (StepFunc, error) {
		return func(context.Context, Progress) (any, error) { return name, nil }, nil
	}}
}

// TestStepsDeduplicated checks IPA's rule: one step per name, the most
// supported manager's, then the higher priority, then the class that sorts
// first; each manager keeps its own order.
func TestStepsDeduplicated(t *testing.T) {
	generic := newFake("GenericHardwareManager", Generic)
	generic.steps[Clean] = []Step{step("erase_devices", 10), step("erase_devices_metadata", 99), step("erase_pstore", 0)}
	vendor := newFake("AcmeHardwareManager", Mainline)
	vendor.steps[Clean] = []Step{step("upgrade_firmware", 0), step("erase_devices", 5)}
	// Same level as the generic manager: priority, then class decide.
	peerHigh := newFake("ZedHardwareManager", Generic)
	peerHigh.steps[Clean] = []Step{step("erase_devices_metadata", 100)}
	peerTie := newFake("AardvarkHardwareManager", Generic)
	peerTie.steps[Clean] = []Step{step("erase_pstore", 0)}
	s := mustSelect(t, stepper{generic}, stepper{vendor}, stepper{peerHigh}, stepper{peerTie})

	got, err := s.Steps(context.Background(), Clean, NodeInfo{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string][]string{}
	for class, steps := range got {
		for _, st := range steps {
			names[class] = append(names[class], st.Step)
		}
	}
	want := map[string][]string{
		"AcmeHardwareManager":     {"upgrade_firmware", "erase_devices"},
		"ZedHardwareManager":      {"erase_devices_metadata"},
		"AardvarkHardwareManager": {"erase_pstore"},
	}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("steps %v, want %v", names, want)
	}
	if st := got["AcmeHardwareManager"][1]; st.Priority != 5 || st.Interface != "deploy" {
		t.Errorf("vendor erase_devices %+v", st)
	}
	// No manager offers deploy steps; one that errors fails the call.
	if got, err := s.Steps(context.Background(), Deploy, NodeInfo{}); err != nil || len(got) != 0 {
		t.Errorf("deploy steps %v %v", got, err)
	}
	vendor.stepsErr = errors.New("firmware inventory unreadable")
	if _, err := s.Steps(context.Background(), Clean, NodeInfo{}); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Errorf("a failing manager: %v", err)
	}
	vendor.stepsErr = ErrNotHandled
	if got, _ := s.Steps(context.Background(), Clean, NodeInfo{}); got["GenericHardwareManager"][0].Step != "erase_devices" {
		t.Errorf("a manager with no steps for the node still shadows: %v", got)
	}
	if _, err := mustSelect(t, newFake("NoSteps", Generic)).Steps(context.Background(), Clean, NodeInfo{}); !errors.Is(err, ErrNoManager) {
		t.Errorf("no step provider: %v", err)
	}
}

func TestStepWire(t *testing.T) {
	w := Step{Name: "clean_uefi_nvram", Interface: "deploy", Abortable: true, ArgsInfo: map[string]any{"match_patterns": map[string]any{}}}.Wire()
	if w.Step != "clean_uefi_nvram" || w.Abortable == nil || !*w.Abortable || w.ArgsInfo == nil {
		t.Errorf("%+v", w)
	}
	if w := (Step{Name: "write_image", Interface: "deploy"}).Wire(); w.Abortable != nil {
		t.Errorf("abortable sent for a deploy step: %+v", w)
	}
}

// TestPrepareStepWalksManagers checks that a step goes to the most
// supported manager offering it, and on to the next on ErrNotHandled, at
// preparation and while running.
func TestPrepareStepWalksManagers(t *testing.T) {
	ctx := context.Background()
	var order []string
	mk := func(class string, level Level, prepErr, runErr error) *fake {
		f := newFake(class, level)
		f.steps[Clean] = []Step{{Name: "erase_devices", Interface: "deploy", Prepare: func(c StepCall) (StepFunc, error) {
			order = append(order, class+" prepare")
			if prepErr != nil {
				return nil, prepErr
			}
			return func(context.Context, Progress) (any, error) {
				order = append(order, class+" run")
				if runErr != nil {
					return nil, runErr
				}
				return class + " erased " + c.Args["disk"].(string), nil
			}, nil
		}}}
		return f
	}
	call := StepCall{Kind: Clean, Args: map[string]any{"disk": "sda"}}

	// The site manager declines at preparation, the vendor's one while
	// running, the generic one does the work.
	s := mustSelect(t, stepper{mk("Generic", Generic, nil, nil)}, stepper{mk("Vendor", Mainline, nil, ErrNotHandled)},
		stepper{mk("Site", ServiceProvider, ErrNotHandled, nil)})
	fn, err := s.PrepareStep(ctx, "erase_devices", "deploy", call)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(order, []string{"Site prepare", "Vendor prepare"}) {
		t.Fatalf("before running: %v", order)
	}
	res, err := fn(ctx, nil)
	if err != nil || res != "Generic erased sda" {
		t.Fatalf("result %v %v", res, err)
	}
	if !reflect.DeepEqual(order, []string{"Site prepare", "Vendor prepare", "Vendor run", "Generic prepare", "Generic run"}) {
		t.Fatalf("order %v", order)
	}

	// A real failure stops the walk, at preparation and while running.
	bad := errors.New("bad args")
	s = mustSelect(t, stepper{mk("Generic", Generic, nil, nil)}, stepper{mk("Vendor", Mainline, bad, nil)})
	if _, err := s.PrepareStep(ctx, "erase_devices", "deploy", call); !errors.Is(err, bad) {
		t.Errorf("prepare error %v", err)
	}
	broke := errors.New("disk on fire")
	s = mustSelect(t, stepper{mk("Generic", Generic, nil, nil)}, stepper{mk("Vendor", Mainline, nil, broke)})
	fn, _ = s.PrepareStep(ctx, "erase_devices", "deploy", call)
	if _, err := fn(ctx, nil); !errors.Is(err, broke) {
		t.Errorf("run error %v", err)
	}

	// Nobody handles it, or nobody offers it (another interface is
	// another step).
	s = mustSelect(t, stepper{mk("Vendor", Mainline, nil, ErrNotHandled)})
	fn, _ = s.PrepareStep(ctx, "erase_devices", "deploy", call)
	if _, err := fn(ctx, nil); !errors.Is(err, ErrNoManager) {
		t.Errorf("all declined while running: %v", err)
	}
	s = mustSelect(t, stepper{mk("Vendor", Mainline, ErrNotHandled, nil)})
	if _, err := s.PrepareStep(ctx, "erase_devices", "deploy", call); !errors.Is(err, ErrNoManager) {
		t.Errorf("all declined preparing: %v", err)
	}
	if _, err := s.PrepareStep(ctx, "erase_devices", "raid", call); !errors.Is(err, ErrNoManager) {
		t.Errorf("other interface: %v", err)
	}
	if _, err := s.PrepareStep(ctx, "erase_devices", "deploy", StepCall{Kind: Deploy}); !errors.Is(err, ErrNoManager) {
		t.Errorf("other kind: %v", err)
	}
}

func TestEraseDispatchPerDevice(t *testing.T) {
	ctx := context.Background()
	var calls []string
	var mu sync.Mutex
	magic := hardware.BlockDevice{Path: "/dev/sda", Model: "ACME MagicStore"}
	plain := hardware.BlockDevice{Path: "/dev/sdb", Model: "Plain SSD"}
	vendor := newFake("Vendor", Mainline).withCalls(&calls, &mu)
	vendor.eraseDevice = func(d hardware.BlockDevice) erase.Result {
		if d.Model != "ACME MagicStore" {
			return erase.Result{Err: ErrNotHandled}
		}
		return erase.Result{Method: "acme-sanitize"}
	}
	vendor.eraseMetadata = func(d hardware.BlockDevice) erase.Result { return erase.Result{Err: ErrNotHandled} }
	generic := newFake("Generic", Generic).withCalls(&calls, &mu)
	generic.eraseDevice = func(hardware.BlockDevice) erase.Result { return erase.Result{Method: erase.MethodOverwrite} }
	generic.eraseMetadata = func(hardware.BlockDevice) erase.Result { return erase.Result{Method: erase.MethodMetadata} }
	s := mustSelect(t, eraser{generic}, eraser{vendor}, newFake("Bystander", ServiceProvider))

	if r := s.EraseDevice(ctx, magic, EraseRequest{}); r.Method != "acme-sanitize" || r.Err != nil {
		t.Errorf("magic disk: %+v", r)
	}
	if r := s.EraseDevice(ctx, plain, EraseRequest{}); r.Method != erase.MethodOverwrite {
		t.Errorf("plain disk: %+v", r)
	}
	if r := s.EraseMetadata(ctx, magic, EraseRequest{}); r.Method != erase.MethodMetadata {
		t.Errorf("metadata: %+v", r)
	}
	want := []string{"Vendor erase /dev/sda", "Vendor erase /dev/sdb", "Generic erase /dev/sdb", "Vendor metadata /dev/sda", "Generic metadata /dev/sda"}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls %v", calls)
	}
	// A failure is the disk's result; nobody handling it is an error.
	generic.eraseDevice = func(hardware.BlockDevice) erase.Result { return erase.Result{Err: errors.New("EIO")} }
	if r := s.EraseDevice(ctx, plain, EraseRequest{}); r.Err == nil || r.Err.Error() != "EIO" {
		t.Errorf("failure: %+v", r)
	}
	s = mustSelect(t, eraser{vendor})
	if r := s.EraseDevice(ctx, plain, EraseRequest{}); !errors.Is(r.Err, ErrNoManager) || !strings.Contains(r.Err.Error(), "/dev/sdb") {
		t.Errorf("nobody: %+v", r)
	}
}

func TestInventoryContributions(t *testing.T) {
	ctx := context.Background()
	var calls []string
	var mu sync.Mutex
	generic := newFake("Generic", Generic).withCalls(&calls, &mu)
	generic.contribute = func(inv *wire.Inventory) error {
		inv.Disks = append(inv.Disks, wire.Disk{Name: "/dev/sda"})
		inv.Hostname = "node-17"
		return nil
	}
	vendor := newFake("Vendor", Mainline).withCalls(&calls, &mu)
	vendor.contribute = func(inv *wire.Inventory) error {
		// The vendor's controller hides a disk the generic reader lists
		// as a bare device; it names it.
		inv.Disks[0].Model = "ACME RAID volume"
		m := "3c:fd:fe:00:00:01"
		inv.BMCAddress, inv.BMCMAC = "192.0.2.200", &m
		return nil
	}
	broken := newFake("Broken", ServiceProvider).withCalls(&calls, &mu)
	broken.contribute = func(*wire.Inventory) error { return errors.New("tool missing") }
	idle := newFake("Idle", ServiceProvider).withCalls(&calls, &mu)
	idle.contribute = func(*wire.Inventory) error { return ErrNotHandled }

	s := mustSelect(t, contributor{broken}, contributor{generic}, contributor{vendor}, contributor{idle})
	inv, err := s.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(calls, []string{"Generic inventory", "Vendor inventory", "Broken inventory", "Idle inventory"}) {
		t.Errorf("order %v", calls)
	}
	if inv.Disks[0].Model != "ACME RAID volume" || inv.Hostname != "node-17" || inv.BMCAddress != "192.0.2.200" || inv.BMCv6Address != wire.NoBMCv6Address {
		t.Errorf("inventory %+v", inv)
	}
	if _, err := mustSelect(t, contributor{broken}).Inventory(ctx); err == nil || !strings.Contains(err.Error(), "tool missing") {
		t.Errorf("only a broken contributor: %v", err)
	}
	if _, err := mustSelect(t, newFake("Mute", Generic)).Inventory(ctx); !errors.Is(err, ErrNoManager) {
		t.Errorf("no contributor: %v", err)
	}
}
