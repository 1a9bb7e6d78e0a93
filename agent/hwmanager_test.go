package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/erase"
	"github.com/rivetmetal/rivet/hardware/manager"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/wire"
)

// acmeManager is a vendor manager as a vendor would write one: it knows
// one disk (its "MagicStore"), which it erases with its own method, adds
// the BMC to the inventory, and offers a firmware clean step.
type acmeManager struct {
	disk  string
	level manager.Level
	mu    sync.Mutex
	// flashed records the firmware URLs upgrade_firmware was run with.
	flashed []string
}

func (m *acmeManager) Identity() manager.Identity {
	return manager.Identity{Class: "AcmeHardwareManager", Name: "acme_hardware_manager", Version: "2.0"}
}

func (m *acmeManager) Support(context.Context) manager.Level { return m.level }

func (m *acmeManager) Steps(_ context.Context, kind manager.Kind, _ manager.NodeInfo) ([]manager.Step, error) {
	if kind != manager.Clean {
		return nil, manager.ErrNotHandled
	}
	return []manager.Step{
		{Name: "upgrade_firmware", Interface: "deploy", Priority: 0, Abortable: false, RebootRequested: true,
			ArgsInfo: map[string]any{"firmware_url": map[string]any{"description": "where the firmware is", "required": true}},
			Prepare:  m.upgradeFirmware},
		// A step it offers but cannot do on this machine.
		{Name: "reset_raid_controller", Interface: "deploy", Priority: 0, Prepare: func(manager.StepCall) (manager.StepFunc, error) {
			return func(context.Context, manager.Progress) (any, error) { return nil, manager.ErrNotHandled }, nil
		}},
	}, nil
}

func (m *acmeManager) upgradeFirmware(call manager.StepCall) (manager.StepFunc, error) {
	url, _ := call.Args["firmware_url"].(string)
	if url == "" {
		return nil, fmt.Errorf("upgrade_firmware needs firmware_url: %w", manager.ErrInvalidArgs)
	}
	return func(ctx context.Context, p manager.Progress) (any, error) {
		m.mu.Lock()
		m.flashed = append(m.flashed, url)
		m.mu.Unlock()
		return "firmware upgraded from " + url, nil
	}, nil
}

// EraseDevice "sanitizes" its own disk (fills it with 0x5A); every other
// disk is not its business.
func (m *acmeManager) EraseDevice(ctx context.Context, d hardware.BlockDevice, req manager.EraseRequest) erase.Result {
	if d.Path != m.disk {
		return erase.Result{Err: manager.ErrNotHandled}
	}
	f, err := os.OpenFile(d.Path, os.O_WRONLY|os.O_EXCL, 0)
	if err != nil {
		return erase.Result{Err: err}
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte{0x5A}, int(d.Size))); err != nil {
		return erase.Result{Err: err}
	}
	req.Progress(erase.Progress{Device: d.Path, Method: "acme-sanitize", Done: d.Size, Total: d.Size})
	return erase.Result{Method: "acme-sanitize", Err: f.Sync()}
}

func (m *acmeManager) ContributeInventory(_ context.Context, inv *wire.Inventory) error {
	mac := "3c:fd:fe:00:00:01"
	inv.BMCAddress, inv.BMCMAC = "192.0.2.200", &mac
	return nil
}

// TestVendorHardwareManager runs an agent with a vendor manager next to
// the generic one, on two loop devices, through the API Ironic uses.
func TestVendorHardwareManager(t *testing.T) {
	a, b := loopdev.New(t, 8<<20), loopdev.New(t, 8<<20)
	acme := &acmeManager{disk: a.Path, level: manager.Mainline}
	_, base := startAgentWith(t, standaloneConfig(a.Path, b.Path), Options{Power: &fakePower{}, Managers: []manager.Manager{acme}})
	c := client{t: t, base: base}
	both := map[string]string{"generic_hardware_manager": "1.2", "acme_hardware_manager": "2.0"}

	r := c.run("clean.get_clean_steps", map[string]any{"node": cleanNode(nil), "ports": []any{}}, true)
	var cs wire.CleanSteps
	if err := r.DecodeResult(&cs); err != nil {
		t.Fatal(err)
	}
	if len(cs.CleanSteps["GenericHardwareManager"]) != 5 || len(cs.CleanSteps["AcmeHardwareManager"]) != 2 {
		t.Fatalf("clean steps %+v", cs.CleanSteps)
	}
	if fw := cs.CleanSteps["AcmeHardwareManager"][0]; fw.Step != "upgrade_firmware" || !fw.RebootRequested || fw.Abortable != nil || fw.ArgsInfo["firmware_url"] == nil {
		t.Errorf("vendor step %+v", fw)
	}
	if fmt.Sprint(cs.HardwareManagerVersion) != fmt.Sprint(both) {
		t.Errorf("hardware_manager_version %v", cs.HardwareManagerVersion)
	}
	// The vendor has no deploy steps: only the generic ones are listed.
	r = c.run("deploy.get_deploy_steps", map[string]any{"node": cleanNode(nil), "ports": []any{}}, true)
	var ds wire.DeploySteps
	if err := r.DecodeResult(&ds); err != nil || len(ds.DeploySteps) != 1 || len(ds.DeploySteps["GenericHardwareManager"]) != 3 {
		t.Fatalf("deploy steps %+v %v", ds, err)
	}

	// The vendor's step, with its argument, then without it (a 400).
	res := executeClean(c, map[string]any{"step": "upgrade_firmware", "interface": "deploy", "priority": 0,
		"args": map[string]any{"firmware_url": "http://127.0.0.1:1/fw.bin"}}, cleanNode(nil), both)
	var fr struct {
		CleanResult wire.StringResult `json:"clean_result"`
	}
	if res.CommandStatus != wire.StatusSucceeded || res.DecodeResult(&fr) != nil || fr.CleanResult.Result != "firmware upgraded from http://127.0.0.1:1/fw.bin" {
		t.Fatalf("upgrade_firmware: %+v %+v", res, res.CommandError)
	}
	st, body := c.post("clean.execute_clean_step", map[string]any{"step": map[string]any{"step": "upgrade_firmware", "interface": "deploy"},
		"node": cleanNode(nil), "ports": []any{}, "clean_version": both}, false)
	if st != http.StatusBadRequest || !strings.Contains(string(body), "firmware_url") {
		t.Fatalf("missing argument: HTTP %d %s", st, body)
	}
	// The generic manager's version alone is another agent's.
	res = executeClean(c, map[string]any{"step": "erase_pstore", "interface": "deploy"}, cleanNode(nil), ourVersion)
	if res.CommandStatus != wire.StatusVersionMismatch {
		t.Fatalf("only the generic version: %+v", res)
	}
	// Offered, but nobody handles it on this machine.
	res = executeClean(c, map[string]any{"step": "reset_raid_controller", "interface": "deploy"}, cleanNode(nil), both)
	if res.CommandStatus != wire.StatusFailed || res.CommandError.Type != "HardwareManagerMethodNotFound" {
		t.Fatalf("declined step: %+v %+v", res, res.CommandError)
	}

	// erase_devices: each disk goes to the manager that handles it.
	for _, l := range []*loopdev.Device{a, b} {
		os.WriteFile(l.Path, bytes.Repeat([]byte{0xAB}, 8<<20), 0)
	}
	res = executeClean(c, map[string]any{"step": "erase_devices", "interface": "deploy", "priority": 10},
		cleanNode(map[string]any{"agent_erase_devices_iterations": 1, "agent_erase_devices_zeroize": true}), both)
	var er struct {
		CleanResult map[string]wire.EraseResult `json:"clean_result"`
	}
	if res.CommandStatus != wire.StatusSucceeded || res.DecodeResult(&er) != nil {
		t.Fatalf("erase_devices: %+v %+v", res, res.CommandError)
	}
	if er.CleanResult[a.Path].Method != "acme-sanitize" || er.CleanResult[b.Path].Method != erase.MethodOverwrite {
		t.Fatalf("erase methods %+v", er.CleanResult)
	}
	if got, _ := os.ReadFile(a.Path); !bytes.Equal(got, bytes.Repeat([]byte{0x5A}, len(got))) {
		t.Error("the vendor's disk was not erased by the vendor")
	}
	if got, _ := os.ReadFile(b.Path); !bytes.Equal(got, make([]byte, len(got))) {
		t.Error("the other disk was not overwritten with zeros by the generic manager")
	}
	// No vendor metadata eraser: the generic one does both disks.
	res = executeClean(c, map[string]any{"step": "erase_devices_metadata", "interface": "deploy", "priority": 99}, cleanNode(nil), both)
	if res.CommandStatus != wire.StatusSucceeded || res.DecodeResult(&er) != nil ||
		er.CleanResult[a.Path].Method != erase.MethodMetadata || er.CleanResult[b.Path].Method != erase.MethodMetadata {
		t.Fatalf("erase_devices_metadata: %+v %+v", res.CommandError, er)
	}
	if head := readHead(t, a.Path, 4096); !bytes.Equal(head, make([]byte, len(head))) {
		t.Error("metadata of the vendor's disk not erased")
	}

	// The inventory has both managers' parts.
	r = c.run("poll.get_hardware_info", map[string]any{}, true)
	var inv wire.Inventory
	if err := r.DecodeResult(&inv); err != nil || inv.BMCAddress != "192.0.2.200" || inv.CPU.Count != runtime.NumCPU() || len(inv.Disks) != 2 {
		t.Fatalf("inventory %+v %v", inv, err)
	}
	if len(acme.flashed) != 1 {
		t.Errorf("firmware flashed %v", acme.flashed)
	}
}

func readHead(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnsupportingManagerIsLeftOut checks that a manager whose Support is
// None takes no part: its steps and version are not reported.
func TestUnsupportingManagerIsLeftOut(t *testing.T) {
	_, base := startAgentWith(t, standaloneConfig(), Options{Power: &fakePower{}, Managers: []manager.Manager{&acmeManager{level: manager.None}}})
	c := client{t: t, base: base}
	r := c.run("clean.get_clean_steps", map[string]any{"node": cleanNode(nil), "ports": []any{}}, true)
	var cs wire.CleanSteps
	if err := r.DecodeResult(&cs); err != nil || len(cs.CleanSteps) != 1 || fmt.Sprint(cs.HardwareManagerVersion) != fmt.Sprint(ourVersion) {
		t.Fatalf("%+v %v", cs, err)
	}
}

// TestInspectionNamesManagersAndRootDisk posts the inspection data to a
// callback on loopback: the inventory with the vendor's part, the root
// disk picked without hints, and every manager with its version.
func TestInspectionNamesManagersAndRootDisk(t *testing.T) {
	small, big := loopdev.New(t, 8<<20), loopdev.New(t, 5<<30)
	var got wire.InspectionData
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write([]byte(`{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"}`))
	}))
	defer srv.Close()
	cfg := standaloneConfig(small.Path, big.Path)
	cfg.InspectionCallbackURL = srv.URL + "/v1/continue_inspection"
	cfg.InspectionCollectors = []string{"default"}
	a, err := New(cfg, Options{Logger: testLogger(t), Power: &fakePower{}, Managers: []manager.Manager{&acmeManager{level: manager.ServiceProvider}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.selectManagers(t.Context()); err != nil {
		t.Fatal(err)
	}
	inv, err := a.collectInventory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if uuid := a.inspect(t.Context(), srv.Client(), inv); uuid != "1be26c0b-03f2-4d2e-ae87-c02d7f33c123" {
		t.Fatalf("inspection answered %q", uuid)
	}
	want := []wire.InspectionManager{{Name: "acme_hardware_manager", Version: "2.0"}, {Name: "generic_hardware_manager", Version: "1.2"}}
	if fmt.Sprint(got.Configuration.Managers) != fmt.Sprint(want) {
		t.Errorf("managers %v", got.Configuration.Managers)
	}
	var root wire.Disk
	if err := json.Unmarshal(got.RootDisk, &root); err != nil || root.Name != big.Path || root.Size != 5<<30 {
		t.Errorf("root disk %s %v", got.RootDisk, err)
	}
	var sent wire.Inventory
	if err := json.Unmarshal(got.Inventory, &sent); err != nil || sent.BMCAddress != "192.0.2.200" || len(sent.Disks) != 2 {
		t.Errorf("inventory %s %v", got.Inventory, err)
	}
}

// greedyEraser claims every disk it is handed.
type greedyEraser struct {
	mu     sync.Mutex
	handed []string
}

func (g *greedyEraser) Identity() manager.Identity {
	return manager.Identity{Class: "GreedyHardwareManager", Name: "greedy", Version: "1.0"}
}
func (g *greedyEraser) Support(context.Context) manager.Level { return manager.ServiceProvider }
func (g *greedyEraser) EraseDevice(_ context.Context, d hardware.BlockDevice, _ manager.EraseRequest) erase.Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handed = append(g.handed, d.Path)
	return erase.Result{Method: "greedy"}
}

// TestManagersNeverSeeProtectedDisks makes one disk read-only (the
// kernel's ro flag, which the agent reads from sysfs): no manager is
// handed it, however much it would like to erase it.
func TestManagersNeverSeeProtectedDisks(t *testing.T) {
	ro, rw := loopdev.New(t, 8<<20), loopdev.New(t, 8<<20)
	if out, err := exec.Command("blockdev", "--setro", ro.Path).CombinedOutput(); err != nil {
		t.Skipf("blockdev --setro: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("blockdev", "--setrw", ro.Path).Run() })
	g := &greedyEraser{}
	_, base := startAgentWith(t, standaloneConfig(ro.Path, rw.Path), Options{Power: &fakePower{}, Managers: []manager.Manager{g}})
	c := client{t: t, base: base}
	res := executeClean(c, map[string]any{"step": "erase_devices", "interface": "deploy"}, cleanNode(nil),
		map[string]string{"generic_hardware_manager": "1.2", "greedy": "1.0"})
	var er struct {
		CleanResult map[string]wire.EraseResult `json:"clean_result"`
	}
	if res.CommandStatus != wire.StatusSucceeded || res.DecodeResult(&er) != nil {
		t.Fatalf("erase_devices: %+v %+v", res, res.CommandError)
	}
	if er.CleanResult[ro.Path].Skipped != "read-only device" || er.CleanResult[rw.Path].Method != "greedy" {
		t.Fatalf("results %+v", er.CleanResult)
	}
	if fmt.Sprint(g.handed) != fmt.Sprint([]string{rw.Path}) {
		t.Fatalf("the manager was handed %v", g.handed)
	}
}

// TestGenericStepsHaveFunctions checks that every step the generic
// manager lists finds its function through the name map.
func TestGenericStepsHaveFunctions(t *testing.T) {
	g := genericManager{&Agent{}}
	for _, kind := range []manager.Kind{manager.Deploy, manager.Clean, manager.Service} {
		steps, err := g.Steps(t.Context(), kind, manager.NodeInfo{})
		if err != nil || len(steps) == 0 {
			t.Fatalf("%s: %v %v", kind, steps, err)
		}
		for _, st := range steps {
			if st.Prepare == nil {
				t.Errorf("%s step %s has no function", kind, st.Name)
			}
		}
	}
	if len(g.stepFuncs()) != 6 {
		t.Errorf("step functions %d, want one per generic step name", len(g.stepFuncs()))
	}
}
