package internalinfo

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// ironicDeploy is driver_internal_info as Ironic 21.4 kept it during a
// partition-image deploy (shared/ironic-traffic/partition-image.md), with
// Rivet's own keys added and one key neither knows.
const ironicDeploy = `{
	"is_whole_disk_image": false,
	"deploy_steps": [
		{"step": "deploy", "priority": 100, "argsinfo": null, "interface": "deploy"},
		{"step": "write_image", "priority": 80, "argsinfo": null, "interface": "deploy"},
		{"step": "prepare_instance_boot", "priority": 60, "argsinfo": null, "interface": "deploy"}
	],
	"last_power_state_change": "2026-11-21T10:00:26.526017",
	"deploy_boot_mode": "uefi",
	"deploy_step_index": 1,
	"deploy_step_started": true,
	"agent_secret_token": "KrTS84g08AHWKoyDoQDo6D7D8q869z_W4GfK3A3ksyc",
	"agent_url": "http://127.0.0.1:19999",
	"agent_version": "9.0.0",
	"agent_last_heartbeat": "2026-11-21T10:00:27.241503",
	"hardware_manager_version": {"generic_hardware_manager": "1.1"},
	"agent_cached_deploy_steps": {
		"deploy": [
			{"step": "erase_devices_metadata", "priority": 0, "interface": "deploy", "reboot_requested": false, "requires_ramdisk": true},
			{"step": "inject_files", "priority": 0, "interface": "deploy", "reboot_requested": false, "requires_ramdisk": true,
			 "argsinfo": {"files": {"description": "Files to inject", "required": false}}}
		]
	},
	"agent_cached_deploy_steps_refreshed": "2026-11-21T10:00:27.270000",
	"deploy_progress": {"phase": "write", "bytes_read": 1024, "bytes_written": 512, "bytes_skipped": 0, "total_bytes": 4096,
		"rate_bytes_per_sec": 100, "eta_seconds": 35, "started_at": 1, "updated_at": 2},
	"deploy_timings": {"boot_to_lookup": 8.25},
	"deploy_timestamps": {"deploy_started": "2026-11-21T10:00:20.5Z"},
	"ramdisk_kernel_params": ["ipa-inspection-collectors=default"],
	"agent_erase_devices_iterations": 1,
	"agent_erase_devices_zeroize": true,
	"agent_continue_if_secure_erase_failed": false,
	"agent_continue_if_ata_erase_failed": false,
	"agent_enable_nvme_secure_erase": true,
	"agent_enable_ata_secure_erase": true,
	"disk_erasure_concurrency": 4,
	"agent_erase_skip_read_only": false,
	"power_request": {"state": "rebooting", "timeout": 30}
}`

func node(t *testing.T, dii string) *store.Node {
	t.Helper()
	n := &store.Node{UUID: "3f603778-f6c2-4a4d-b205-d2e7b2df5470"}
	if err := json.Unmarshal([]byte(dii), &n.DriverInternalInfo); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRoundTripKeepsIronicShapes: decoding and encoding again gives the
// same driver_internal_info, key for key and value for value, foreign keys
// included.
func TestRoundTripKeepsIronicShapes(t *testing.T) {
	n := node(t, ironicDeploy)
	want := node(t, ironicDeploy).DriverInternalInfo
	info, err := Decode(n)
	if err != nil {
		t.Fatal(err)
	}
	step, ok := info.Deploy.Current()
	if !ok || step.Step != wire.WriteImageStep || !info.Deploy.Started || info.Image.WholeDisk == nil || *info.Image.WholeDisk ||
		info.Agent.HardwareManagerVersion["generic_hardware_manager"] != "1.1" || info.Erase == nil || info.Erase.Concurrency != 4 ||
		info.Image.Progress.BytesWritten != 512 || info.PowerRequest.Timeout != 30 ||
		!info.Image.Timestamps["deploy_started"].Equal(time.Date(2026, 11, 21, 10, 0, 20, 5e8, time.UTC)) {
		t.Fatalf("decoded = %+v", info)
	}
	if err := info.Encode(n); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(n.DriverInternalInfo, want) {
		got, _ := json.Marshal(n.DriverInternalInfo)
		t.Errorf("after a round trip:\n got %s\nwant %s", got, ironicDeploy)
	}
	// node.deploy_step is the current step as Ironic shows it.
	if n.DeployStep["step"] != wire.WriteImageStep || n.DeployStep["priority"] != float64(80) {
		t.Errorf("deploy_step = %v", n.DeployStep)
	}
}

func TestEncodeDropsEmptyKeysAndKeepsPresence(t *testing.T) {
	n := node(t, ironicDeploy)
	info, err := Decode(n)
	if err != nil {
		t.Fatal(err)
	}
	info.WipeOnPowerOff()
	info.Deploy.Wipe()
	info.Erase = nil
	// A made but empty plan, a first step, an empty cache: all present.
	info.Clean.Plan = []wire.PlannedStep{}
	info.Clean.SetIndex(0)
	info.Clean.Cached = map[string][]wire.PlannedStep{}
	if err := info.Encode(n); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"agent_url", "agent_secret_token", "deploy_steps", "deploy_step_index",
		"deploy_step_started", "agent_cached_deploy_steps", "agent_erase_devices_zeroize", "disk_erasure_concurrency"} {
		if v, ok := n.DriverInternalInfo[gone]; ok {
			t.Errorf("%s still present: %v", gone, v)
		}
	}
	for key, want := range map[string]string{"clean_steps": "[]", "clean_step_index": "0", "agent_cached_clean_steps": "{}",
		"last_power_state_change": `"2026-11-21T10:00:26.526017"`, "agent_version": `"9.0.0"`} {
		b, _ := json.Marshal(n.DriverInternalInfo[key])
		if string(b) != want {
			t.Errorf("%s = %s, want %s", key, b, want)
		}
	}
	if len(n.DeployStep) != 0 {
		t.Errorf("deploy_step after the wipe = %v", n.DeployStep)
	}
	if HeartbeatPending(n) {
		t.Error("a heartbeat is pending")
	}
}

func TestPregeneratedTokenSurvivesPowerOff(t *testing.T) {
	info := &Info{Agent: Agent{Token: "t", TokenPregenerated: true, URL: "u", VerifyCAPEM: "pem", HeartbeatPending: "x"}}
	info.Deploy.Cached = map[string][]wire.PlannedStep{}
	info.WipeOnPowerOff()
	if info.Agent.Token != "t" || info.Agent.URL != "" || info.Agent.VerifyCAPEM != "" || info.Deploy.Cached != nil {
		t.Errorf("after a power off: %+v", info)
	}
	info.Agent.WipeTokenAndURL()
	if info.Agent.Token != "" || info.Agent.TokenPregenerated {
		t.Errorf("after the end of an operation: %+v", info.Agent)
	}
}

func TestDecodeNamesTheBadKey(t *testing.T) {
	for key, value := range map[string]string{"agent_url": "5", "deploy_step_index": `"one"`, "clean_steps": `{"a": 1}`,
		"agent_erase_devices_iterations": `"x"`} {
		n := node(t, `{"`+key+`": `+value+`}`)
		if _, err := Decode(n); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s = %s: %v", key, value, err)
		}
	}
}

func TestKindsHaveTheirOwnKeys(t *testing.T) {
	for _, k := range []wire.StepKind{wire.DeployStepKind, wire.CleanStepKind, wire.ServiceStepKind} {
		info := &Info{}
		info.Kind(k).Plan = []wire.PlannedStep{{Step: "s", Interface: "deploy"}}
		info.Kind(k).SetIndex(0)
		info.Kind(k).Reboot = true
		n := &store.Node{}
		if err := info.Encode(n); err != nil {
			t.Fatal(err)
		}
		want := map[wire.StepKind][]string{
			wire.DeployStepKind:  {"deploy_steps", "deploy_step_index", "deployment_reboot"},
			wire.CleanStepKind:   {"clean_steps", "clean_step_index", "cleaning_reboot"},
			wire.ServiceStepKind: {"service_steps", "service_step_index", "servicing_reboot"},
		}[k]
		if len(n.DriverInternalInfo) != len(want) {
			t.Errorf("%s: keys %v, want %v", k, n.DriverInternalInfo, want)
		}
		for _, key := range want {
			if _, ok := n.DriverInternalInfo[key]; !ok {
				t.Errorf("%s: %s missing", k, key)
			}
		}
	}
}
