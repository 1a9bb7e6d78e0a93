package agent

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/rivetmetal/rivet/hardware/ondisk"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/wire"
)

// gptDisk puts a one-partition GPT and a filesystem-like signature on a
// loop device.
func gptDisk(t *testing.T, size int64) *loopdev.Device {
	t.Helper()
	loop := loopdev.New(t, size)
	img := ironicLikeImage(t, size)
	if err := os.WriteFile(loop.Path, img, 0); err != nil {
		t.Fatal(err)
	}
	return loop
}

// ironicLikeImage is a disk image of size bytes: a GPT (written by the
// gpt test helper) and an ext4 magic at the partition start.
func ironicLikeImage(t *testing.T, size int64) []byte {
	t.Helper()
	b := make([]byte, size)
	copy(b, protectiveMBRAndGPT(t, size))
	b[2048*512+1080], b[2048*512+1081] = 0x53, 0xEF
	return b
}

func cleanNode(dii map[string]any) map[string]any {
	n := nodeWithHints(nil)
	n["driver_internal_info"] = dii
	return n
}

func executeClean(c client, step map[string]any, node map[string]any, version map[string]string) wire.CommandResult {
	c.t.Helper()
	st, b := c.post("clean.execute_clean_step", map[string]any{"step": step, "node": node, "ports": []any{}, "clean_version": version}, false)
	if st != http.StatusOK {
		c.t.Fatalf("execute_clean_step: HTTP %d %s", st, b)
	}
	return c.waitDone()
}

var ourVersion = map[string]string{"generic_hardware_manager": "1.2"}

func TestCleanStepsLikeIronic(t *testing.T) {
	a := gptDisk(t, 64<<20)
	b := gptDisk(t, 64<<20)
	_, base := startAgent(t, standaloneConfig(a.Path, b.Path), &fakePower{})
	c := client{t: t, base: base}

	r := c.run("clean.get_clean_steps", map[string]any{"node": cleanNode(nil), "ports": []any{}}, true)
	var cs wire.CleanSteps
	if err := r.DecodeResult(&cs); err != nil || r.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("get_clean_steps: %+v %v", r, err)
	}
	prio := map[string]int{}
	for _, s := range cs.CleanSteps["GenericHardwareManager"] {
		prio[s.Interface+"."+s.Step] = s.Priority
		if s.Abortable == nil || !*s.Abortable {
			t.Errorf("step %s not abortable", s.Step)
		}
	}
	want := map[string]int{"deploy.erase_devices": 10, "deploy.erase_devices_metadata": 99, "deploy.erase_devices_express": 0,
		"deploy.erase_pstore": 0, "deploy.clean_uefi_nvram": 0}
	for k, v := range want {
		if p, ok := prio[k]; !ok || p != v {
			t.Errorf("clean step %s priority %d (present %v), want %d", k, p, ok, v)
		}
	}
	if cs.HardwareManagerVersion["generic_hardware_manager"] != "1.2" {
		t.Errorf("hardware_manager_version %v", cs.HardwareManagerVersion)
	}

	// Automated cleaning's first step, exactly as Ironic 21.4 sends it.
	step := map[string]any{"step": "erase_devices_metadata", "priority": 99, "interface": "deploy", "reboot_requested": false,
		"abortable": true, "requires_ramdisk": true}
	res := executeClean(c, step, cleanNode(map[string]any{"agent_erase_devices_iterations": 1}), ourVersion)
	if res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("erase_devices_metadata: %+v", res.CommandError)
	}
	var cr struct {
		CleanResult map[string]wire.EraseResult `json:"clean_result"`
		CleanStep   map[string]any              `json:"clean_step"`
	}
	if err := res.DecodeResult(&cr); err != nil {
		t.Fatal(err)
	}
	if cr.CleanStep["step"] != "erase_devices_metadata" || cr.CleanStep["interface"] != "deploy" ||
		cr.CleanResult[a.Path].Method != "metadata" || cr.CleanResult[b.Path].Method != "metadata" {
		t.Fatalf("clean result %+v", cr)
	}
	for _, l := range []*loopdev.Device{a, b} {
		f, _ := os.Open(l.Path)
		_, err := ondisk.ReadGPT(f, 64<<20, 512)
		head := make([]byte, 1<<20)
		f.ReadAt(head, 0)
		f.Close()
		if err == nil || !bytes.Equal(head, make([]byte, len(head))) {
			t.Errorf("%s still has metadata (%v)", l.Path, err)
		}
	}

	// erase_devices with the node's settings: one random pass and zeros,
	// both disks at once.
	os.WriteFile(a.Path, bytes.Repeat([]byte{0xAB}, 64<<20), 0)
	res = executeClean(c, map[string]any{"step": "erase_devices", "priority": 10, "interface": "deploy"},
		cleanNode(map[string]any{"agent_erase_devices_iterations": 1, "agent_erase_devices_zeroize": true, "disk_erasure_concurrency": 2}), ourVersion)
	if res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("erase_devices: %+v", res.CommandError)
	}
	if got, _ := os.ReadFile(a.Path); !bytes.Equal(got, make([]byte, len(got))) {
		t.Error("erase_devices left data on the disk")
	}

	// A step from another version of the agent.
	res = executeClean(c, step, cleanNode(nil), map[string]string{"generic_hardware_manager": "1.0"})
	if res.CommandStatus != wire.StatusVersionMismatch {
		t.Fatalf("version mismatch: %+v", res)
	}
	// A step this agent does not have: the command fails.
	res = executeClean(c, map[string]any{"step": "burnin_cpu", "interface": "deploy", "priority": 0}, cleanNode(nil), ourVersion)
	if res.CommandStatus != wire.StatusFailed || res.CommandError.Type != "HardwareManagerMethodNotFound" {
		t.Fatalf("unknown step: %+v %+v", res, res.CommandError)
	}
}

// TestMalformedStepsAreRefused checks that bad step dicts are a 400 before
// anything runs, with a message naming the problem.
func TestMalformedStepsAreRefused(t *testing.T) {
	_, base := startAgent(t, standaloneConfig(), &fakePower{})
	c := client{t: t, base: base}
	cases := []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"step is a string", map[string]any{"step": "erase_devices", "node": cleanNode(nil)}, "malformed step"},
		{"no interface", map[string]any{"step": map[string]any{"step": "erase_devices"}, "node": cleanNode(nil)}, "needs both 'step' and 'interface'"},
		{"priority not a number", map[string]any{"step": map[string]any{"step": "erase_devices", "interface": "deploy", "priority": "high"}}, "malformed step"},
		{"args not an object", map[string]any{"step": map[string]any{"step": "erase_devices", "interface": "deploy", "args": []int{1}}}, "malformed step"},
		{"unexpected args", map[string]any{"step": map[string]any{"step": "erase_devices", "interface": "deploy", "args": map[string]any{"force": true}}}, "takes no arguments"},
		{"bad NVRAM pattern", map[string]any{"step": map[string]any{"step": "clean_uefi_nvram", "interface": "deploy", "args": map[string]any{"match_patterns": []string{"(unclosed"}}}}, "match pattern"},
		{"missing step", map[string]any{"node": cleanNode(nil)}, "the step is missing"},
	}
	for _, tc := range cases {
		st, b := c.post("clean.execute_clean_step", tc.params, false)
		f := fault(t, b)
		if st != http.StatusBadRequest || f.FaultCode != "Client" {
			t.Errorf("%s: HTTP %d %s", tc.name, st, b)
			continue
		}
		mustContain(t, tc.name, f.FaultString, tc.want)
	}
	if l := c.list(); len(l) != 0 {
		t.Errorf("refused commands were recorded: %+v", l)
	}
}

func TestProtectedFilesystemStopsCleaning(t *testing.T) {
	loop := loopdev.New(t, 8<<20)
	// A GFS2 superblock: a shared cluster filesystem.
	b := make([]byte, 8<<20)
	copy(b[65536:], []byte{0x01, 0x16, 0x19, 0x70})
	os.WriteFile(loop.Path, b, 0)
	_, base := startAgent(t, standaloneConfig(loop.Path), &fakePower{})
	c := client{t: t, base: base}
	step := map[string]any{"step": "erase_devices_metadata", "interface": "deploy", "priority": 99}
	res := executeClean(c, step, cleanNode(nil), ourVersion)
	if res.CommandStatus != wire.StatusFailed || res.CommandError.Type != "ProtectedDeviceError" {
		t.Fatalf("%+v %+v", res, res.CommandError)
	}
	mustContain(t, "details", res.CommandError.Details, "GFS2")
	if got, _ := os.ReadFile(loop.Path); !bytes.Equal(got, b) {
		t.Fatal("a protected disk was touched")
	}
	// The node can waive the guard.
	res = executeClean(c, step, cleanNode(map[string]any{"wipe_special_filesystems": false}), ourVersion)
	if res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("guard waived: %+v", res.CommandError)
	}
}

func TestEraseSettingsOfTheWrongTypeKeepDefaults(t *testing.T) {
	a := &Agent{cfg: DefaultConfig(), log: testLogger(t)}
	// As it arrives: JSON numbers decode to float64.
	raw, _ := json.Marshal(cleanNode(map[string]any{"agent_erase_devices_iterations": "three", "agent_erase_devices_zeroize": false,
		"disk_erasure_concurrency": 0, "agent_continue_if_ata_erase_failed": true, "agent_enable_ata_secure_erase": "yes"}))
	var node map[string]any
	json.Unmarshal(raw, &node)
	a.nodes.setNode(node)
	s := a.eraseSettingsFromNode()
	if s.Iterations != 1 || s.Zeroize || s.concurrency != 1 || !s.ContinueIfSecureEraseFailed || !s.ATASecureErase || !s.guard {
		t.Fatalf("%+v", s)
	}
}

// TestEraseProgressPerDisk runs an erase step's work directly and reads
// the per-disk states it publishes (what a running command's result shows).
func TestEraseProgressPerDisk(t *testing.T) {
	a1, a2 := loopdev.New(t, 8<<20), loopdev.New(t, 8<<20)
	cfg := standaloneConfig(a1.Path, a2.Path)
	a, err := New(cfg, Options{Logger: testLogger(t), Power: &fakePower{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.selectManagers(t.Context()); err != nil { // as Run does
		t.Fatal(err)
	}
	a.nodes.setNode(cleanNode(map[string]any{"agent_erase_devices_iterations": float64(1), "disk_erasure_concurrency": float64(2)}))
	job := &Job{}
	res, err := a.eraseDevicesStep(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	per := res.(map[string]wire.EraseResult)
	if len(per) != 2 || per[a1.Path].Method != "overwrite" || per[a2.Path].Seconds <= 0 {
		t.Fatalf("results %+v", per)
	}
	states := job.DiskProgress()
	if len(states) != 2 {
		t.Fatalf("progress %+v", states)
	}
	for _, s := range states {
		if s.State != "done" || s.Method != "overwrite" || s.BytesDone != 8<<20 || s.TotalBytes != 8<<20 {
			t.Errorf("final state %+v", s)
		}
	}
	// While running, the command result carries the same list.
	e := &entry{job: job, status: wire.StatusRunning}
	var pr wire.ProgressResult
	snap := e.snapshot()
	if err := json.Unmarshal(snap.CommandResult, &pr); err != nil || len(pr.Disks) != 2 {
		t.Fatalf("running result %s", snap.CommandResult)
	}
}
