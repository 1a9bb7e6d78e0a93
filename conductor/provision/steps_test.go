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
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

func names(steps []map[string]any) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = stepIface(s) + "." + stepName(s)
	}
	return out
}

func TestDeployPlanSlotsInBandStepsByPriority(t *testing.T) {
	e := &Engine{log: discardLogger()}
	n := &store.Node{UUID: "u", DriverInternalInfo: map[string]any{"agent_cached_deploy_steps": map[string]any{
		"deploy": []any{
			map[string]any{"step": "write_image", "interface": "deploy", "priority": 90.0},           // shadowed
			map[string]any{"step": "inject_files", "interface": "deploy", "priority": 50.0},          // slotted in
			map[string]any{"step": "erase_devices_metadata", "interface": "deploy", "priority": 0.0}, // not run
			map[string]any{"step": "too_early", "interface": "deploy", "priority": 150.0},            // before the ramdisk: ignored
		},
		"raid": []any{map[string]any{"step": "apply_configuration", "interface": "raid", "priority": 50.0,
			"args": map[string]any{"raid_config": map[string]any{}}}},
	}}}
	got := e.deploySteps(n)
	want := []string{"deploy.deploy", "deploy.write_image", "deploy.prepare_instance_boot", "deploy.inject_files",
		"raid.apply_configuration", "deploy.tear_down_agent", "deploy.switch_to_tenant_network", "deploy.boot_instance"}
	if !slices.Equal(names(got), want) {
		t.Fatalf("deploy plan = %v, want %v", names(got), want)
	}
	if !agentDriven(got[3]) || oobStepNamed(got[3]) != nil || agentDriven(got[2]) || !agentDriven(got[1]) {
		t.Error("in-band / out-of-band marking wrong")
	}
	if got[4]["args"] == nil {
		t.Error("in-band step args lost")
	}
}

func TestAutomatedCleanPlan(t *testing.T) {
	st, e := newPlanEngine(t, Config{CleanStepPriorities: map[string]int{"deploy.erase_devices": 5, "deploy.burnin_cpu": 99}})
	n := seedCleaning(t, st, false, map[string]any{
		"deploy": []any{
			map[string]any{"step": "erase_devices", "interface": "deploy", "priority": 10.0, "abortable": true},
			map[string]any{"step": "erase_devices_metadata", "interface": "deploy", "priority": 99.0, "abortable": true},
			map[string]any{"step": "burnin_cpu", "interface": "deploy", "priority": 0.0},
			map[string]any{"step": "erase_pstore", "interface": "deploy", "priority": 0.0},
		},
		"management": []any{map[string]any{"step": "reset_bmc", "interface": "management", "priority": 99.0}},
	})
	n, err := e.planCleaning(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	// Priority first (overrides applied), then the interface (management
	// before deploy at equal priority); priority 0 never runs.
	want := []string{"management.reset_bmc", "deploy.erase_devices_metadata", "deploy.burnin_cpu", "deploy.erase_devices"}
	plan := stepList(n.DriverInternalInfo["clean_steps"])
	if !slices.Equal(names(plan), want) {
		t.Fatalf("plan = %v, want %v", names(plan), want)
	}
	if stepPriority(plan[3]) != 5 || n.DriverInternalInfo["clean_step_index"] != 0 {
		t.Errorf("override not applied or no current step: %v", n.DriverInternalInfo)
	}
}

func TestManualCleanPlan(t *testing.T) {
	st, e := newPlanEngine(t, Config{})
	agentSteps := map[string]any{"deploy": []any{
		map[string]any{"step": "erase_devices", "interface": "deploy", "priority": 10.0, "abortable": true},
		map[string]any{"step": "erase_devices_metadata", "interface": "deploy", "priority": 99.0, "abortable": true},
	}}
	n := seedCleaning(t, st, true, agentSteps)
	err := st.WithNodeLock(context.Background(), n.UUID, func(tx store.Tx) error {
		tx.Node().SetInternal(keyUserSteps, []any{
			map[string]any{"interface": "deploy", "step": "erase_devices", "args": map[string]any{"zeroize": false}},
			map[string]any{"interface": "deploy", "step": "erase_devices_metadata"},
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, _ = st.GetNode(context.Background(), n.UUID)
	n, err = e.planCleaning(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	plan := stepList(n.DriverInternalInfo["clean_steps"])
	if !slices.Equal(names(plan), []string{"deploy.erase_devices", "deploy.erase_devices_metadata"}) {
		t.Fatalf("manual plan = %v (the operator's order)", names(plan))
	}
	if plan[0]["priority"] != 10 || plan[0]["abortable"] != true || plan[0]["args"].(map[string]any)["zeroize"] != false {
		t.Errorf("manual step = %v", plan[0])
	}
	// Manual cleaning heads for manageable all along.
	if n.TargetProvisionState != statemachine.Manageable {
		t.Errorf("target = %q", n.TargetProvisionState)
	}
}

// newPlanEngine is an engine without background work, for planning tests.
func newPlanEngine(t *testing.T, cfg Config) (store.Store, *Engine) {
	t.Helper()
	fk, _ := fake.New(fake.Config{})
	e, st := newTestEngine(t, fk, cfg)
	return st, e
}

// seedCleaning makes a node that is cleaning with the agent's steps
// cached; manual cleaning heads for manageable.
func seedCleaning(t *testing.T, st store.Store, manual bool, agentSteps map[string]any) *store.Node {
	t.Helper()
	ctx := context.Background()
	n := &store.Node{Name: "c1", Driver: fake.Name}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
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
		n.SetInternal("agent_cached_clean_steps", agentSteps)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, _ = st.GetNode(ctx, n.UUID)
	return n
}

func TestAgentStepStatus(t *testing.T) {
	step := map[string]any{"step": "erase_devices_metadata", "interface": "deploy"}
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
		got, _ := agentStep(&wire.CommandList{Commands: tc.cmds}, "execute_clean_step", "clean_step", step, tc.started)
		if got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPyRepr(t *testing.T) {
	got := pyRepr(map[string]any{"interface": "deploy", "step": "erase_devices", "priority": 10.0, "abortable": true,
		"reboot_requested": false, "args": map[string]any{"k": []any{"v", nil}}})
	want := "{'step': 'erase_devices', 'priority': 10, 'interface': 'deploy', 'args': {'k': ['v', None]}, 'reboot_requested': False, 'abortable': True}"
	if got != want {
		t.Errorf("pyRepr =\n%s\nwant\n%s", got, want)
	}
	if pyRepr(map[string]any{}) != "{}" {
		t.Error("empty step")
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
	if err := e.Provision(ctx, "n1", Request{Target: "manage"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, n.UUID, statemachine.Manageable)
	if err := e.Provision(ctx, "n1", Request{Target: "inspect"}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, st, n.UUID, statemachine.InspectWait)
	if got.TargetProvisionState != statemachine.Manageable || got.PowerState != string(power.On) {
		t.Fatalf("inspect wait: target %q power %q", got.TargetProvisionState, got.PowerState)
	}
	drv.mu.Lock()
	rd := drv.prepared[len(drv.prepared)-1]
	drv.mu.Unlock()
	if !slices.Contains(rd.Params, "ipa-inspection-callback-url=http://10.0.2.100:6385/v1/continue_inspection") {
		t.Fatalf("ramdisk params = %v", rd.Params)
	}

	// The agent posts an inventory without interfaces, then the real one.
	if _, err := e.ContinueInspection(ctx, "", map[string]any{"inventory": map[string]any{}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("inventory without interfaces: %v", err)
	}
	var data map[string]any
	json.Unmarshal([]byte(`{"inventory": {
		"interfaces": [{"name": "eth0", "mac_address": "52:54:00:00:00:01"}],
		"cpu": {"count": 4, "architecture": "x86_64"},
		"memory": {"total": 8300000000, "physical_mb": 8192},
		"disks": [{"name": "/dev/vda", "size": 21474836480}, {"name": "/dev/vdb", "size": 1073741824}]},
		"logs": "aGVsbG8="}`), &data)
	if _, err := e.ContinueInspection(ctx, "", data); err != nil {
		t.Fatal(err)
	}
	got = waitState(t, st, n.UUID, statemachine.Manageable)
	for k, want := range map[string]string{"cpus": "4", "cpu_arch": "x86_64", "memory_mb": "8192", "local_gb": "19"} {
		if v := fmt.Sprint(got.Properties[k]); v != want {
			t.Errorf("properties[%s] = %s, want %s", k, v, want)
		}
	}
	if inv, _ := got.DriverInternalInfo[keyInventory].(map[string]any); inv == nil || inv["cpu"] == nil {
		t.Errorf("inventory not stored: %v", got.DriverInternalInfo)
	}
	if got.PowerState != string(power.Off) {
		t.Errorf("power after inspection = %q", got.PowerState)
	}
	// A second post finds no node being inspected.
	if _, err := e.ContinueInspection(ctx, "", data); !errors.Is(err, errdefs.ErrNotFound) {
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
	e.Provision(ctx, "n1", Request{Target: "manage"})
	waitState(t, st, n.UUID, statemachine.Manageable)
	if err := e.Provision(ctx, "n1", Request{Target: "inspect"}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, st, n.UUID, statemachine.InspectFail)
	if got.LastError != "Timeout reached while inspecting the node" {
		t.Errorf("last_error = %q", got.LastError)
	}
	// inspect again, abort it.
	if err := e.Provision(ctx, "n1", Request{Target: "inspect"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, n.UUID, statemachine.InspectWait)
	if err := e.Provision(ctx, "n1", Request{Target: "abort"}); err != nil {
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
	if err := e.ChangePowerState(ctx, "n1", power.On, 0); err != nil {
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
	if err := e.ChangePowerState(ctx, "n1", "sideways", 0); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad target: %v", err)
	}
	if err := e.SetNodeBootDevice(ctx, "n1", power.BootDisk, true); err != nil {
		t.Fatal(err)
	}
	if dev, persistent, err := e.NodeBootDevice(ctx, "n1"); err != nil || dev != power.BootDisk || !persistent {
		t.Errorf("boot device = %q %v %v", dev, persistent, err)
	}
	if devs, err := e.NodeSupportedBootDevices(ctx, "n1"); err != nil || !slices.Contains(devs, power.BootPXE) {
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
	if err := e.ChangePowerState(ctx, "n1", power.Off, 0); !errors.Is(err, errdefs.ErrConflict) {
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
	res, err := e.ValidateNode(ctx, "n1")
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
	for _, tc := range []struct {
		req  Request
		want error
	}{
		{Request{Target: "fly"}, errdefs.ErrInvalidArgument},
		{Request{Target: "clean"}, errdefs.ErrInvalidArgument},
		{Request{Target: "provide"}, errdefs.ErrInvalidArgument}, // from enroll
		{Request{Target: "abort"}, errdefs.ErrInvalidArgument},
		{Request{Target: "manage", Configdrive: "x"}, errdefs.ErrInvalidArgument},
	} {
		if err := e.Provision(ctx, "n1", tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.req, err, tc.want)
		}
	}
	if err := e.ManualClean(ctx, "n1", []wire.Step{{Interface: "deploy", Step: "x"}}, true); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("disable_ramdisk: %v", err)
	}
	if err := e.ManualClean(ctx, "n1", []wire.Step{{Interface: "cpu", Step: "x"}}, false); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad interface: %v", err)
	}
	if err := e.ManualClean(ctx, "n1", []wire.Step{{Interface: "deploy", Step: "x"}}, false); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("manual clean from enroll: %v", err)
	}
}
