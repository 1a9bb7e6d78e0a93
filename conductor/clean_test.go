package conductor_test

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// cleaningHarness is a harness whose conductor runs automated cleaning.
func cleaningHarness(t *testing.T, agentCfg fakeagent.Config) *conductortest.Harness {
	h := conductortest.New(t, agentCfg)
	cfg := h.Config()
	cfg.Provision.DisableAutomatedClean = false
	h.Start(cfg)
	return h
}

// stepNames lists the "interface.step" of steps an agent ran.
func stepNames(steps []map[string]any) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s["interface"].(string) + "." + s["step"].(string)
	}
	return out
}

func TestAutomatedCleaningOnProvideAndUndeploy(t *testing.T) {
	h := cleaningHarness(t, fakeagent.Config{})
	uuid := h.EnrollNode() // provide: cleaning through the agent -> available

	a := h.Agent()
	if a == nil {
		t.Fatal("provide booted no agent")
	}
	if got, want := a.Calls(), []string{"clean.get_clean_steps", "clean.execute_clean_step"}; !slices.Equal(got, want) {
		t.Errorf("agent calls = %v, want %v", got, want)
	}
	steps := a.CleanStepsRun()
	if len(steps) != 1 {
		t.Fatalf("clean steps run = %v", steps)
	}
	// erase_devices_metadata at the agent's priority, marked as Ironic
	// marks in-band steps; erase_devices (10) is off by default.
	s := steps[0]
	if s["step"] != "erase_devices_metadata" || s["interface"] != "deploy" || s["priority"] != float64(99) ||
		s["requires_ramdisk"] != true || s["abortable"] != true {
		t.Errorf("clean step = %v", s)
	}
	n := h.Node("n1")
	dii := conductortest.Internal(n)
	for _, k := range []string{"clean_steps", "clean_step_index", "agent_secret_token", "agent_url", "agent_cached_clean_steps"} {
		if _, ok := dii[k]; ok {
			t.Errorf("driver_internal_info keeps %s after cleaning: %v", k, dii[k])
		}
	}
	if dii["agent_erase_devices_iterations"] != float64(1) || dii["disk_erasure_concurrency"] != float64(4) {
		t.Errorf("erase settings not given to the agent: %v", dii)
	}
	if n["power_state"] != "power off" || n["last_error"] != nil || n["maintenance"] != false {
		t.Errorf("after cleaning: power %v last_error %v maintenance %v", n["power_state"], n["last_error"], n["maintenance"])
	}

	// Deploy, then undeploy: deleting -> cleaning (a new ramdisk boot) -> available.
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
	h.Provision("n1", "deleted", nil)
	n = h.WaitState("n1", "available", 20*time.Second)
	last := h.Agent()
	if last == a {
		t.Fatal("undeploy booted no cleaning ramdisk")
	}
	if got := stepNames(last.CleanStepsRun()); !slices.Equal(got, []string{"deploy.erase_devices_metadata"}) {
		t.Errorf("undeploy clean steps = %v", got)
	}
	if ii, _ := n["instance_info"].(map[string]any); len(ii) != 0 || n["power_state"] != "power off" {
		t.Errorf("after undeploy: instance_info %v power %v", ii, n["power_state"])
	}
	_ = uuid
}

func TestManualCleanRunsTheOperatorsSteps(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config()) // automated cleaning off: provide needs no agent
	h.EnrollNode()
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)

	body := map[string]any{"target": "clean", "clean_steps": []any{
		map[string]any{"interface": "deploy", "step": "erase_devices", "args": map[string]any{"zeroize": false}},
		map[string]any{"interface": "deploy", "step": "erase_devices_metadata"},
	}}
	var errBody map[string]any
	if st := h.Call("PUT", "/v1/nodes/n1/states/provision", body, &errBody); st != http.StatusAccepted {
		t.Fatalf("clean: %d %v", st, errBody)
	}
	n := h.WaitState("n1", "manageable", 20*time.Second)
	if n["last_error"] != nil {
		t.Fatalf("last_error %v", n["last_error"])
	}
	steps := h.Agent().CleanStepsRun()
	if got := stepNames(steps); !slices.Equal(got, []string{"deploy.erase_devices", "deploy.erase_devices_metadata"}) {
		t.Fatalf("manual steps run = %v (the operator's order)", got)
	}
	// As in Ironic's transcript: the operator's step plus the agent's
	// priority and abortable flag, the args as given.
	if s := steps[0]; s["priority"] != float64(10) || s["abortable"] != true || s["args"].(map[string]any)["zeroize"] != false {
		t.Errorf("manual step = %v", s)
	}

	// A step the agent does not have fails the cleaning, in maintenance.
	body["clean_steps"] = []any{map[string]any{"interface": "deploy", "step": "erase_everything"}}
	if st := h.Call("PUT", "/v1/nodes/n1/states/provision", body, &errBody); st != http.StatusAccepted {
		t.Fatalf("clean: %d %v", st, errBody)
	}
	n = h.WaitState("n1", "clean failed", 20*time.Second)
	if le, _ := n["last_error"].(string); !strings.Contains(le, "does not support this clean step") || !strings.Contains(le, "erase_everything") {
		t.Errorf("last_error = %q", le)
	}
	h.WaitPower("n1", "power off", 5*time.Second)
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 5*time.Second)
}

func TestCleanStepFailureCollectsLogsAndSetsMaintenance(t *testing.T) {
	h := cleaningHarness(t, fakeagent.Config{CleanError: "wipefs failed on /dev/vda"})
	uuid := h.CreateNode()
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)
	h.Provision("n1", "provide", nil)
	n := h.WaitState("n1", "clean failed", 20*time.Second)

	le, _ := n["last_error"].(string)
	want := "Agent returned error for clean step {'step': 'erase_devices_metadata', 'priority': 99, 'interface': 'deploy', " +
		"'reboot_requested': False, 'abortable': True, 'requires_ramdisk': True} on node " + uuid + " : wipefs failed on /dev/vda."
	if le != want {
		t.Errorf("last_error =\n%q\nwant\n%q", le, want)
	}
	if n["maintenance"] != true || n["maintenance_reason"] != le {
		t.Errorf("maintenance %v reason %v", n["maintenance"], n["maintenance_reason"])
	}
	logs, _ := conductortest.Internal(n)["agent_logs_path"].(string)
	if b, err := os.ReadFile(logs); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("agent logs at %q: %v (want a gzip file)", logs, err)
	}
	if got := h.Agent().Calls(); !slices.Contains(got, "log.collect_system_logs") {
		t.Errorf("logs not collected: %v", got)
	}
	h.WaitPower("n1", "power off", 5*time.Second)
}

func TestCleanVersionMismatchRestartsAutomatedCleaning(t *testing.T) {
	h := cleaningHarness(t, fakeagent.Config{CleanMismatchOnce: true})
	h.EnrollNode()
	var executes int
	for _, c := range h.Agent().Calls() {
		if c == "clean.execute_clean_step" {
			executes++
		}
	}
	if executes != 2 {
		t.Errorf("execute_clean_step sent %d times, want 2 (mismatch, then again): %v", executes, h.Agent().Calls())
	}
}

func TestAbortCleanWait(t *testing.T) {
	h := cleaningHarness(t, fakeagent.Config{CleanDuration: 20 * time.Second})
	h.CreateNode()
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)
	h.Provision("n1", "provide", nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := h.Node("n1")
		if n["provision_state"] == "clean wait" && conductortest.Internal(n)["clean_step_started"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the clean step never started: %v", n["provision_state"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.Provision("n1", "abort", nil)
	n := h.WaitState("n1", "clean failed", 5*time.Second)
	if le, _ := n["last_error"].(string); !strings.Contains(le, "aborted") || !strings.Contains(le, "erase_devices_metadata") {
		t.Errorf("last_error = %q", le)
	}
	h.WaitPower("n1", "power off", 5*time.Second)
	if _, ok := conductortest.Internal(h.Node("n1"))["agent_secret_token"]; ok {
		t.Error("token kept after abort")
	}
}

func TestRestartMidClean(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{CleanDuration: 1500 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond})
	cfg := h.Config()
	cfg.Provision.DisableAutomatedClean = false
	h.Start(cfg)
	uuid := h.CreateNode()
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)
	h.Provision("n1", "provide", nil)
	h.WaitInternal("n1", "the clean step to start", 10*time.Second,
		func(dii map[string]any) bool { return dii["clean_step_started"] == true })
	h.Stop()

	n := h.StoredNode(uuid)
	if ps := string(n.ProvisionState); ps != "clean wait" && ps != "cleaning" {
		t.Fatalf("after stop: provision state %q", ps)
	}
	if n.InternalString("agent_secret_token") == "" || n.DriverInternalInfo["clean_steps"] == nil {
		t.Fatalf("after stop the cleaning state is lost: %v", n.DriverInternalInfo)
	}

	h.Restart(cfg)
	h.WaitState("n1", "available", 20*time.Second)
	if got := stepNames(h.Agent().CleanStepsRun()); !slices.Equal(got, []string{"deploy.erase_devices_metadata"}) {
		t.Errorf("steps run across the restart = %v, want the one step once", got)
	}
}

func TestFastTrackReusesTheCleaningAgent(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	cfg.Provision.DisableAutomatedClean = false
	cfg.Provision.FastTrack = true
	h.Start(cfg)
	h.EnrollNode()
	n := h.Node("n1")
	a := h.Agent()
	if n["power_state"] != "power on" || conductortest.Internal(n)["agent_url"] != a.URL() {
		t.Fatalf("fast-track: the agent should keep running after cleaning (power %v, agent_url %v)", n["power_state"], conductortest.Internal(n)["agent_url"])
	}
	// It keeps heartbeating in available: recorded only.
	before := conductortest.Internal(n)["agent_last_heartbeat"]
	h.WaitInternal("n1", "a heartbeat recorded in available with fast-track", 5*time.Second,
		func(dii map[string]any) bool { return dii["agent_last_heartbeat"] != before })
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
	if h.Agent() != a {
		t.Fatal("the deploy rebooted the node although fast-track applies")
	}
	calls := a.Calls()
	if !slices.Contains(calls, "deploy.get_deploy_steps") || !slices.Contains(calls, "deploy.execute_deploy_step") {
		t.Errorf("deploy through the running agent: %v", calls)
	}
	if tm, _ := conductortest.Internal(h.Node("n1"))["deploy_timings"].(map[string]any); tm["boot_to_lookup"] != nil {
		t.Errorf("fast-track deploy has a boot_to_lookup timing: %v", tm)
	}
}
