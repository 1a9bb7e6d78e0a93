package plan

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

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

func TestWithAgentSteps(t *testing.T) {
	own := []Own{{"deploy", "deploy", 100}, {"deploy", "write_image", 80}, {"deploy", "boot_instance", 20}}
	cached := map[string][]wire.PlannedStep{
		"deploy": steps(t, `[{"step": "write_image", "interface": "deploy", "priority": 90, "requires_ramdisk": true},
			{"step": "inject_files", "interface": "deploy", "priority": 50, "requires_ramdisk": true, "reboot_requested": true},
			{"step": "erase_devices_metadata", "interface": "deploy", "priority": 0, "requires_ramdisk": true},
			{"step": "too_early", "interface": "deploy", "priority": 150, "requires_ramdisk": true}]`),
		"raid": steps(t, `[{"step": "apply_configuration", "interface": "raid", "priority": 50, "requires_ramdisk": true, "reboot_requested": false, "args": {"raid_config": {}}}]`),
	}
	got, early := WithAgentSteps(own, cached, 100, DeployInterfaceRank)
	want := []string{"deploy.deploy", "deploy.write_image", "deploy.inject_files", "raid.apply_configuration", "deploy.boot_instance"}
	if !slices.Equal(Names(got), want) {
		t.Fatalf("plan = %v, want %v", Names(got), want)
	}
	if len(early) != 1 || early[0].Step != "too_early" {
		t.Errorf("too early = %v", Names(early))
	}
	if !got[2].Reboots() || got[3].RebootRequested != nil || string(got[3].Args) != `{"raid_config": {}}` || !got[3].RequiresRamdisk {
		t.Errorf("agent steps planned as %+v and %+v", got[2], got[3])
	}
}

func TestAutomated(t *testing.T) {
	cached := map[string][]wire.PlannedStep{
		"deploy": steps(t, `[{"step": "erase_devices", "interface": "deploy", "priority": 10},
			{"step": "erase_devices_metadata", "interface": "deploy", "priority": 99},
			{"step": "burnin_cpu", "interface": "deploy", "priority": 0}]`),
		"management": steps(t, `[{"step": "reset_bmc", "interface": "management", "priority": 99}]`),
	}
	got := Automated(cached, map[string]int{"deploy.erase_devices": 0, "deploy.burnin_cpu": 5}, CleanInterfaceRank)
	if want := []string{"management.reset_bmc", "deploy.erase_devices_metadata", "deploy.burnin_cpu"}; !slices.Equal(Names(got), want) {
		t.Fatalf("plan = %v, want %v", Names(got), want)
	}
	if got[2].PriorityValue() != 5 || cached["deploy"][2].PriorityValue() != 0 {
		t.Error("the override changed the cached step or was not applied")
	}
	if got := Automated(map[string][]wire.PlannedStep{}, nil, CleanInterfaceRank); got == nil || len(got) != 0 {
		t.Errorf("no agent steps: %v, want an empty plan", got)
	}
}

func TestManual(t *testing.T) {
	cached := map[string][]wire.PlannedStep{"deploy": steps(t, `[
		{"step": "erase_devices", "interface": "deploy", "priority": 10, "abortable": true, "requires_ramdisk": true}]`)}
	user := steps(t, `[{"interface": "deploy", "step": "erase_devices", "args": {"zeroize": false}, "reboot_requested": true}]`)
	got, err := Manual(user, cached)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if string(b) != `[{"step":"erase_devices","priority":10,"interface":"deploy","args":{"zeroize":false},"reboot_requested":true,"abortable":true}]` {
		t.Errorf("manual plan = %s", b)
	}
	_, err = Manual(steps(t, `[{"interface": "raid", "step": "erase_devices"}]`), cached)
	var unsupported *UnsupportedStepError
	if !errors.As(err, &unsupported) || unsupported.Step.Interface != "raid" {
		t.Errorf("unsupported step: %v", err)
	}
}

func TestCache(t *testing.T) {
	yes := true
	got, err := Cache(map[string][]wire.Step{
		"ZManager":               {{Step: "b", Interface: "raid", Priority: 1}},
		"GenericHardwareManager": {{Step: "a", Interface: "deploy", Abortable: &yes}, {Step: "c", Interface: "raid"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got["deploy"]) != 1 || !got["deploy"][0].RequiresRamdisk || !got["deploy"][0].IsAbortable() ||
		!slices.Equal(Names(got["raid"]), []string{"raid.c", "raid.b"}) {
		t.Errorf("cached = %+v", got)
	}
	if !slices.Equal(Names(Flatten(got)), []string{"deploy.a", "raid.c", "raid.b"}) {
		t.Errorf("flattened = %v", Names(Flatten(got)))
	}
}

func TestRepr(t *testing.T) {
	s := steps(t, `[{"interface": "deploy", "step": "erase_devices", "priority": 10, "abortable": true,
		"reboot_requested": false, "args": {"k": ["v", null, 2.5]}, "requires_ramdisk": true}]`)[0]
	want := "{'step': 'erase_devices', 'priority': 10, 'interface': 'deploy', 'args': {'k': ['v', None, 2.5]}, 'reboot_requested': False, 'abortable': True, 'requires_ramdisk': True}"
	if got := Repr(s); got != want {
		t.Errorf("Repr =\n%s\nwant\n%s", got, want)
	}
	if got := Repr(Own{"deploy", "deploy", 100}.Planned()); got != "{'step': 'deploy', 'priority': 100, 'interface': 'deploy', 'argsinfo': None}" {
		t.Errorf("own step = %s", got)
	}
	if Repr(wire.PlannedStep{}) != "{}" {
		t.Error("empty step")
	}
}

func TestWithUser(t *testing.T) {
	prio := func(p int) *int { return &p }
	own := []wire.PlannedStep{
		{Interface: "deploy", Step: "deploy", Priority: prio(100)},
		{Interface: "deploy", Step: "write_image", Priority: prio(80)},
		{Interface: "deploy", Step: "tear_down_agent", Priority: prio(40)},
	}
	user := []wire.PlannedStep{
		{Interface: "deploy", Step: "install_coreos", Priority: prio(80), Args: json.RawMessage(`{"a":1}`)},
		{Interface: "deploy", Step: "write_image", Priority: prio(0)},
	}
	got, err := WithUser(own, user, nil, 100, DeployInterfaceRank)
	if err != nil {
		t.Fatal(err)
	}
	if names := Names(got); !slices.Equal(names, []string{"deploy.deploy", "deploy.install_coreos", "deploy.tear_down_agent"}) ||
		!got[1].RequiresRamdisk || string(got[1].Args) != `{"a":1}` {
		t.Fatalf("plan %v %+v", names, got[1])
	}
	// Once the agent's steps are known, a step it lacks is refused.
	cached := map[string][]wire.PlannedStep{"deploy": {{Interface: "deploy", Step: "erase_devices_metadata", Priority: prio(0)}}}
	var unsupported *UnsupportedStepError
	if _, err := WithUser(own, user, cached, 100, DeployInterfaceRank); !errors.As(err, &unsupported) || unsupported.Step.Step != "install_coreos" {
		t.Fatalf("unknown agent step: %v", err)
	}
	// An agent step of priority 0 is enabled by the user's priority.
	got, err = WithUser(own, []wire.PlannedStep{{Interface: "deploy", Step: "erase_devices_metadata", Priority: prio(85)}}, cached, 100, DeployInterfaceRank)
	if err != nil || !slices.Equal(Names(got), []string{"deploy.deploy", "deploy.erase_devices_metadata", "deploy.write_image", "deploy.tear_down_agent"}) {
		t.Fatalf("enabled agent step: %v %v", Names(got), err)
	}
	if _, err := WithUser(own, []wire.PlannedStep{{Interface: "deploy", Step: "erase_devices_metadata", Priority: prio(120)}}, cached, 100, DeployInterfaceRank); err == nil {
		t.Fatal("an agent step before the ramdisk boots was planned")
	}
}
