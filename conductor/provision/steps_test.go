package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/plan"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

func steps(t *testing.T, js string) []wire.PlannedStep {
	t.Helper()
	var out []wire.PlannedStep
	if err := json.Unmarshal([]byte(js), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeployPlanSlotsInBandStepsByPriority(t *testing.T) {
	e, _ := newTestEngine(t, mustFake(t), Config{})
	d := e.provisioning.deploy
	info := &internalinfo.Info{}
	info.Deploy.Cached = map[string][]wire.PlannedStep{
		"deploy": steps(t, `[
			{"step": "write_image", "interface": "deploy", "priority": 90, "requires_ramdisk": true},
			{"step": "inject_files", "interface": "deploy", "priority": 50, "requires_ramdisk": true},
			{"step": "erase_devices_metadata", "interface": "deploy", "priority": 0, "requires_ramdisk": true},
			{"step": "too_early", "interface": "deploy", "priority": 150, "requires_ramdisk": true}]`),
		"raid": steps(t, `[{"step": "apply_configuration", "interface": "raid", "priority": 50, "requires_ramdisk": true,
			"args": {"raid_config": {}}}]`),
	}
	got, err := d.planSteps(&store.Node{UUID: "u"}, info)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"deploy.deploy", "deploy.write_image", "deploy.prepare_instance_boot", "deploy.inject_files",
		"raid.apply_configuration", "deploy.tear_down_agent", "deploy.switch_to_tenant_network", "deploy.boot_instance"}
	if !slices.Equal(plan.Names(got), want) {
		t.Fatalf("deploy plan = %v, want %v", plan.Names(got), want)
	}
	if !d.k.agentDriven(got[3]) || d.k.ownStep(got[3]) != nil || d.k.agentDriven(got[2]) || !d.k.agentDriven(got[1]) || d.k.ownStep(got[1]) == nil {
		t.Error("in-band / out-of-band marking wrong")
	}
	if len(got[4].Args) == 0 {
		t.Error("in-band step args lost")
	}
	// Ironic's own deploy steps are stored as Ironic stores them.
	b, _ := json.Marshal(got[0])
	if string(b) != `{"step":"deploy","priority":100,"interface":"deploy","argsinfo":null}` {
		t.Errorf("own step stored as %s", b)
	}
}

func mustFake(t *testing.T) *fake.Driver {
	t.Helper()
	fk, err := fake.New(fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return fk
}

func TestAutomatedCleanPlan(t *testing.T) {
	e, st := newTestEngine(t, mustFake(t), Config{CleanStepPriorities: map[string]int{"deploy.erase_devices": 5, "deploy.burnin_cpu": 99}})
	n, info := seedCleaning(t, st, false, map[string][]wire.PlannedStep{
		"deploy": steps(t, `[
			{"step": "erase_devices", "interface": "deploy", "priority": 10, "abortable": true},
			{"step": "erase_devices_metadata", "interface": "deploy", "priority": 99, "abortable": true},
			{"step": "burnin_cpu", "interface": "deploy", "priority": 0},
			{"step": "erase_pstore", "interface": "deploy", "priority": 0}]`),
		"management": steps(t, `[{"step": "reset_bmc", "interface": "management", "priority": 99}]`),
	})
	_, info, err := e.runner.makePlan(context.Background(), e.provisioning.clean.k, n, info)
	if err != nil {
		t.Fatal(err)
	}
	// Priority first (overrides applied), then the interface (management
	// before deploy at equal priority); priority 0 never runs.
	want := []string{"management.reset_bmc", "deploy.erase_devices_metadata", "deploy.burnin_cpu", "deploy.erase_devices"}
	if got := plan.Names(info.Clean.Plan); !slices.Equal(got, want) {
		t.Fatalf("plan = %v, want %v", got, want)
	}
	if info.Clean.Plan[3].PriorityValue() != 5 || info.Clean.IndexValue() != 0 {
		t.Errorf("override not applied or no current step: %+v", info.Clean)
	}
}

func TestManualCleanPlan(t *testing.T) {
	e, st := newTestEngine(t, mustFake(t), Config{})
	n, info := seedCleaning(t, st, true, map[string][]wire.PlannedStep{"deploy": steps(t, `[
		{"step": "erase_devices", "interface": "deploy", "priority": 10, "abortable": true},
		{"step": "erase_devices_metadata", "interface": "deploy", "priority": 99, "abortable": true}]`)})
	info.UserCleanSteps = steps(t, `[{"interface": "deploy", "step": "erase_devices", "args": {"zeroize": false}},
		{"interface": "deploy", "step": "erase_devices_metadata"}]`)
	n, info, err := e.runner.makePlan(context.Background(), e.provisioning.clean.k, n, info)
	if err != nil {
		t.Fatal(err)
	}
	p := info.Clean.Plan
	if !slices.Equal(plan.Names(p), []string{"deploy.erase_devices", "deploy.erase_devices_metadata"}) {
		t.Fatalf("manual plan = %v (the operator's order)", plan.Names(p))
	}
	if p[0].PriorityValue() != 10 || !p[0].IsAbortable() || string(p[0].Args) != `{"zeroize": false}` {
		t.Errorf("manual step = %+v", p[0])
	}
	// Manual cleaning heads for manageable all along.
	if n.TargetProvisionState != statemachine.Manageable {
		t.Errorf("target = %q", n.TargetProvisionState)
	}
	// A step the agent does not have is refused with Ironic's message.
	info.UserCleanSteps = steps(t, `[{"interface": "deploy", "step": "erase_everything"}]`)
	_, _, err = e.runner.makePlan(context.Background(), e.provisioning.clean.k, n, info)
	if le, ok := err.(lastError); !ok || !strings.Contains(string(le), "does not support this clean step: {'step': 'erase_everything', 'interface': 'deploy'}") {
		t.Errorf("unsupported step: %v", err)
	}
}

// seedCleaning makes a node that is cleaning with the agent's steps
// cached; manual cleaning heads for manageable.
func seedCleaning(t *testing.T, st store.Store, manual bool, agentSteps map[string][]wire.PlannedStep) (*store.Node, *internalinfo.Info) {
	t.Helper()
	ctx := context.Background()
	n := &store.Node{Name: "c1", Driver: fake.Name}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	var info *internalinfo.Info
	err := st.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
		n := tx.Node()
		evs := []statemachine.Event{statemachine.EvManage, statemachine.EvDone}
		if manual {
			evs = append(evs, statemachine.EvClean)
		} else {
			evs = append(evs, statemachine.EvProvide)
		}
		for _, ev := range evs {
			if _, err := n.Advance(ev, time.Now()); err != nil {
				return err
			}
		}
		info = &internalinfo.Info{}
		info.Clean.Cached = agentSteps
		return info.Encode(n)
	})
	if err != nil {
		t.Fatal(err)
	}
	n, _ = st.GetNode(ctx, n.UUID)
	return n, info
}

func TestAgentStepStatus(t *testing.T) {
	step := wire.PlannedStep{Step: "erase_devices_metadata", Interface: "deploy"}
	res := func(name string, status wire.CommandStatus, result string) wire.CommandResult {
		r := wire.CommandResult{CommandName: name, CommandStatus: status}
		if result != "" {
			r.CommandResult = json.RawMessage(result)
		}
		return r
	}
	steps := res("get_clean_steps", wire.StatusSucceeded, `{}`)
	done := res("execute_clean_step", wire.StatusSucceeded, `{"clean_result":null,"clean_step":{"step":"erase_devices_metadata","interface":"deploy"}}`)
	other := res("execute_clean_step", wire.StatusSucceeded, `{"clean_result":null,"clean_step":{"step":"erase_devices","interface":"deploy"}}`)
	tests := []struct {
		name    string
		cmds    []wire.CommandResult
		started bool
		want    stepStatus
	}{
		{"fresh", nil, false, stepNotStarted},
		{"only steps", []wire.CommandResult{steps}, true, stepNotStarted}, // rebooted: lost
		{"running", []wire.CommandResult{steps, res("execute_clean_step", wire.StatusRunning, "")}, true, stepRunning},
		{"done", []wire.CommandResult{steps, done}, true, stepDone},
		{"previous step's result, ours not sent", []wire.CommandResult{steps, other}, false, stepNotStarted},
		{"previous step's result, ours accepted", []wire.CommandResult{steps, other}, true, stepRunning},
		{"failed", []wire.CommandResult{steps, res("execute_clean_step", wire.StatusFailed, "")}, true, stepFailed},
		{"mismatch", []wire.CommandResult{steps, res("execute_clean_step", wire.StatusVersionMismatch, "")}, true, stepMismatch},
		{"other command runs", []wire.CommandResult{steps, done, res("collect_system_logs", wire.StatusRunning, "")}, true, stepRunning},
		{"weird", []wire.CommandResult{steps, res("execute_clean_step", "EXPLODED", "")}, true, stepUnknown},
	}
	for _, tc := range tests {
		got, _ := agentStatus(&wire.CommandList{Commands: tc.cmds}, wire.CleanStepKind, step, tc.started)
		if got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestInspection(t *testing.T) {
	fk, _ := fake.New(fake.Config{})
	drv := &vmDriver{Driver: fk}
	e, st := newTestEngine(t, drv, Config{APIURL: "http://127.0.0.1:6385", DeployKernel: "/k", DeployRamdisk: "/r"})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "vm"}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01", PXEEnabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "manage"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, n.UUID, statemachine.Manageable)
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "inspect"}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, st, n.UUID, statemachine.InspectWait)
	if got.TargetProvisionState != statemachine.Manageable || got.PowerState != string(power.On) {
		t.Fatalf("inspect wait: target %q power %q", got.TargetProvisionState, got.PowerState)
	}
	drv.mu.Lock()
	rd := drv.prepared[len(drv.prepared)-1]
	drv.mu.Unlock()
	if !slices.Contains(rd.Params, "ipa-inspection-callback-url=http://10.0.2.100:6385/v1/continue_inspection?node_uuid="+n.UUID) {
		t.Fatalf("ramdisk params = %v", rd.Params)
	}

	// The agent posts an inventory without interfaces, then the real one.
	if _, err := e.Inspection().ContinueInspection(ctx, "", wire.InspectionData{Inventory: json.RawMessage(`{}`)}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("inventory without interfaces: %v", err)
	}
	var data wire.InspectionData
	json.Unmarshal([]byte(`{"inventory": {
		"interfaces": [{"name": "eth0", "mac_address": "52:54:00:00:00:01"}],
		"cpu": {"count": 4, "architecture": "x86_64"},
		"memory": {"total": 8300000000, "physical_mb": 8192},
		"disks": [{"name": "/dev/vda", "size": 21474836480}, {"name": "/dev/vdb", "size": 1073741824}]},
		"logs": "aGVsbG8="}`), &data)
	if _, err := e.Inspection().ContinueInspection(ctx, "", data); err != nil {
		t.Fatal(err)
	}
	got = waitState(t, st, n.UUID, statemachine.Manageable)
	for k, want := range map[string]string{"cpus": "4", "cpu_arch": "x86_64", "memory_mb": "8192", "local_gb": "19"} {
		if v := fmt.Sprint(got.Properties[k]); v != want {
			t.Errorf("properties[%s] = %s, want %s", k, v, want)
		}
	}
	if inv, _ := got.DriverInternalInfo["inspection_inventory"].(map[string]any); inv == nil || inv["cpu"] == nil {
		t.Errorf("inventory not stored: %v", got.DriverInternalInfo)
	}
	if got.PowerState != string(power.Off) {
		t.Errorf("power after inspection = %q", got.PowerState)
	}
	// A second post finds no node being inspected.
	if _, err := e.Inspection().ContinueInspection(ctx, "", data); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("post outside inspection: %v", err)
	}
}

func TestInspectWaitTimeoutAndAbort(t *testing.T) {
	fk, _ := fake.New(fake.Config{})
	drv := &vmDriver{Driver: fk}
	e, st := newTestEngine(t, drv, Config{APIURL: "http://127.0.0.1:6385", DeployKernel: "/k", DeployRamdisk: "/r",
		InspectWaitTimeout: 150 * time.Millisecond})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "vm"}
	st.CreateNode(ctx, n)
	st.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01"})
	e.Provisioning().Provision(ctx, "n1", Request{Target: "manage"})
	waitState(t, st, n.UUID, statemachine.Manageable)
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "inspect"}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, st, n.UUID, statemachine.InspectFail)
	if got.LastError != "Timeout reached while inspecting the node" {
		t.Errorf("last_error = %q", got.LastError)
	}
	// inspect again, abort it.
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "inspect"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, n.UUID, statemachine.InspectWait)
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "abort"}); err != nil {
		t.Fatal(err)
	}
	got = waitState(t, st, n.UUID, statemachine.InspectFail)
	if !strings.Contains(got.LastError, "aborted") {
		t.Errorf("last_error = %q", got.LastError)
	}
}

func TestChangePowerStateAndBootDevice(t *testing.T) {
	fk, _ := fake.New(fake.Config{})
	e, st := newTestEngine(t, fk, Config{})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: fake.Name}
	st.CreateNode(ctx, n)
	if err := e.Power().ChangePowerState(ctx, "n1", power.On, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := st.GetNode(ctx, n.UUID)
		if got.PowerState == string(power.On) && got.TargetPowerState == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("power %q target %q", got.PowerState, got.TargetPowerState)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.Power().ChangePowerState(ctx, "n1", "sideways", 0); err == nil {
		t.Errorf("bad target: %v", err)
	}
	if err := e.Power().SetNodeBootDevice(ctx, "n1", power.BootDisk, true); err != nil {
		t.Fatal(err)
	}
	if dev, persistent, err := e.Power().NodeBootDevice(ctx, "n1"); err != nil || dev != power.BootDisk || !persistent {
		t.Errorf("boot device = %q %v %v", dev, persistent, err)
	}
	if devs, err := e.Power().NodeSupportedBootDevices(ctx, "n1"); err != nil || !slices.Contains(devs, power.BootPXE) {
		t.Errorf("supported = %v %v", devs, err)
	}
	// While an operation owns the node, power and boot device are refused.
	err := st.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
		_, err := tx.Node().Advance(statemachine.EvManage, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Power().ChangePowerState(ctx, "n1", power.Off, 0); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("power change while verifying: %v", err)
	}
}

func TestValidateNode(t *testing.T) {
	fk, _ := fake.New(fake.Config{})
	drv := &vmDriver{Driver: fk}
	e, st := newTestEngine(t, drv, Config{})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "vm"}
	st.CreateNode(ctx, n)
	res, err := e.Provisioning().ValidateNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if r := res["power"]; r.Result == nil || !*r.Result {
		t.Errorf("power = %+v", r)
	}
	if r := res["boot"]; r.Result == nil || *r.Result || !strings.Contains(r.Reason, "deploy_kernel") {
		t.Errorf("boot without a deploy kernel = %+v", r)
	}
	if r := res["deploy"]; r.Result == nil || *r.Result || !strings.Contains(r.Reason, "no ports") {
		t.Errorf("deploy without ports = %+v", r)
	}
	if r := res["raid"]; r.Result != nil || r.Reason != "not supported" {
		t.Errorf("raid = %+v", r)
	}
}

func TestProvisionRefusals(t *testing.T) {
	fk, _ := fake.New(fake.Config{})
	e, st := newTestEngine(t, fk, Config{})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: fake.Name}
	st.CreateNode(ctx, n)
	// What the node's state allows is the engine's to say.
	for _, target := range []string{"provide", "abort", "active"} { // from enroll
		if err := e.Provisioning().Provision(ctx, "n1", Request{Target: target}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want an invalid argument", target, err)
		}
	}
	user := []wire.PlannedStep{{Interface: "deploy", Step: "x"}}
	if err := e.Provisioning().ManualClean(ctx, "n1", user, true); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("disable_ramdisk: %v", err)
	}
	if err := e.Provisioning().ManualClean(ctx, "n1", user, false); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("manual clean from enroll: %v", err)
	}
	// A request's shape is the API's to check; what slips past it is an
	// error, not a transition.
	for _, req := range []Request{{Target: "fly"}, {Target: "clean"}, {Target: "manage", Configdrive: "x"}} {
		if err := e.Provisioning().Provision(ctx, "n1", req); err == nil {
			t.Errorf("%+v accepted", req)
		}
	}
	if err := e.Provisioning().ManualClean(ctx, "n1", nil, false); err == nil {
		t.Error("manual cleaning without steps accepted")
	}
	if got, _ := st.GetNode(ctx, n.UUID); got.ProvisionState != statemachine.Enroll {
		t.Errorf("state after refusals = %q", got.ProvisionState)
	}
}
