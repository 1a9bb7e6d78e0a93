package conductor_test

import (
	"context"
	"github.com/rivetmetal/rivet/wire"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/configiso"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

func TestDeployPartitionImageInstallsTheBootloader(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{BootloaderDuration: 300 * time.Millisecond})
	cfg := h.Config()
	cfg.Provision.CommandWaitInterval = 20 * time.Millisecond
	h.Start(cfg)
	h.EnrollNode()
	h.SetImage("n1")
	patch := []map[string]any{
		{"op": "add", "path": "/instance_info/image_type", "value": "partition"},
		{"op": "add", "path": "/instance_info/root_gb", "value": 4},
		{"op": "add", "path": "/instance_info/swap_mb", "value": 256},
	}
	if st := h.Call("PATCH", "/v1/nodes/n1", patch, nil); st != http.StatusOK {
		t.Fatalf("patch: %d", st)
	}
	h.Provision("n1", "active", nil)
	n := h.WaitState("n1", "active", 20*time.Second)

	a := h.Agent()
	info := a.ImageInfo()
	if info == nil || !info.IsPartitionImage() || info.RootGB != 4 || info.RootMB != 4096 || info.SwapMB != 256 ||
		info.DeployBootMode != "uefi" || info.DiskLabel != "gpt" || info.BootOption != "local" {
		t.Fatalf("partition image_info = %+v", info)
	}
	calls := a.BootloaderCalls()
	if len(calls) != 1 {
		t.Fatalf("install_bootloader calls = %+v", calls)
	}
	if c := calls[0]; wire.StringValue(c.RootUUID) != "6f4c3e9a-1b2d-4c5e-8f70-1a2b3c4d5e6f" ||
		wire.StringValue(c.EFISystemPartUUID) != "2d9e6a1b-3c4f-4a5b-9c6d-7e8f9a0b1c2d" ||
		wire.StringValue(c.TargetBootMode) != "uefi" || c.PRePBootPartUUID != nil {
		t.Errorf("install_bootloader params = %+v", c)
	}
	dii := conductortest.Internal(n)
	if dii["root_uuid_or_disk_id"] != "6f4c3e9a-1b2d-4c5e-8f70-1a2b3c4d5e6f" || dii["efi_system_partition_uuid"] != "2d9e6a1b-3c4f-4a5b-9c6d-7e8f9a0b1c2d" ||
		dii["is_whole_disk_image"] != false {
		t.Errorf("driver_internal_info = %v", dii)
	}
	// The boot loader ran 300 ms and was polled to its end.
	tm, _ := dii["deploy_timings"].(map[string]any)
	if bl, _ := tm["bootloader"].(float64); bl < 0.3 {
		t.Errorf("bootloader timing %v, want >= 0.3 s", tm["bootloader"])
	}
}

func TestDeployFailsWhenTheBootloaderFails(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{BootloaderError: "grub-install: error: cannot find EFI directory"})
	cfg := h.Config()
	cfg.Provision.CommandWaitInterval = 20 * time.Millisecond
	h.Start(cfg)
	uuid := h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	n := h.WaitState("n1", "deploy failed", 20*time.Second)
	want := "Failed to install a bootloader when deploying node " + uuid + ". Error: grub-install: error: cannot find EFI directory"
	if n["last_error"] != want {
		t.Errorf("last_error = %q, want %q", n["last_error"], want)
	}
	if p, _ := conductortest.Internal(n)["agent_logs_path"].(string); p == "" {
		t.Error("no agent logs collected on the failure")
	}
}

func TestWholeDiskDeployToleratesAnAgentWithoutBootloader(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{NoBootloader: true})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
}

func TestDeployBuildsTheConfigDriveFromJSON(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	uuid := h.EnrollNode()
	h.SetImage("n1")
	cd := map[string]any{"meta_data": map[string]any{"hostname": "web-1"}, "user_data": "#cloud-config\n"}
	h.Provision("n1", "active", cd)
	n := h.WaitState("n1", "active", 20*time.Second)
	info := h.Agent().ImageInfo()
	if info == nil || info.Configdrive == nil {
		t.Fatal("no config drive sent to the agent")
	}
	img, err := configiso.Decode(*info.Configdrive)
	if err != nil {
		t.Fatalf("the config drive sent is not gzip+base64: %v", err)
	}
	// An ISO 9660 image (CD001 at sector 16) labelled config-2.
	if len(img) < 0x8000+40 || string(img[0x8001:0x8006]) != "CD001" || strings.TrimRight(string(img[0x8028:0x8048]), " \x00") != "config-2" {
		t.Fatalf("not an ISO 9660 image labelled config-2 (%d bytes)", len(img))
	}
	if !strings.Contains(string(img), `"uuid":"`+uuid+`"`) || !strings.Contains(string(img), `"hostname":"web-1"`) {
		t.Error("meta_data.json lacks the node's uuid or the hostname")
	}
	if ii := n["instance_info"].(map[string]any); ii["configdrive"] != "******" {
		t.Errorf("configdrive not masked: %v", ii["configdrive"])
	}
	// A config drive that is neither a string nor an object is refused.
	var errBody map[string]any
	h.Provision("n1", "deleted", nil)
	h.WaitState("n1", "available", 10*time.Second)
	h.SetImage("n1")
	if st := h.Call("PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "active", "configdrive": map[string]any{"bogus": 1}}, &errBody); st != http.StatusBadRequest {
		t.Errorf("bad config drive: %d %v", st, errBody)
	}
}

func TestDeployTimingsAreKept(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 200 * time.Millisecond})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	n := h.WaitState("n1", "active", 20*time.Second)
	tm, _ := conductortest.Internal(n)["deploy_timings"].(map[string]any)
	for _, k := range []string{"boot_to_lookup", "download_write", "bootloader", "power", "total", "agent_download", "agent_verify"} {
		v, ok := tm[k].(float64)
		if !ok || v < 0 {
			t.Errorf("deploy_timings[%q] = %v", k, tm[k])
		}
	}
	if dw, _ := tm["download_write"].(float64); dw < 0.15 {
		t.Errorf("download_write %v, want the agent's ~0.2 s", dw)
	}
	if total, _ := tm["total"].(float64); total < tm["download_write"].(float64)+tm["power"].(float64) {
		t.Errorf("total %v shorter than its parts %v", total, tm)
	}
	if _, ok := conductortest.Internal(n)["deploy_timestamps"]; ok {
		t.Error("deploy_timestamps left behind")
	}
}

func TestAgentTLSWithItsOwnCertificate(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{TLS: true, WriteDuration: 1500 * time.Millisecond, WriteChunks: 10})
	h.Start(h.Config())
	uuid := h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)

	// While the agent writes: its certificate is pinned on the node.
	dii := conductortest.Internal(h.WaitInternal("n1", "agent_verify_ca", 10*time.Second,
		func(dii map[string]any) bool { return dii["agent_verify_ca"] != nil }))
	a := h.Agent()
	path, _ := dii["agent_verify_ca"].(string)
	if b, err := os.ReadFile(path); err != nil || string(b) != a.CertificatePEM() || !strings.HasSuffix(path, uuid+".crt") {
		t.Errorf("certificate file %q: %v", path, err)
	}
	// A heartbeat with another certificate is refused with Ironic's text.
	var errBody map[string]any
	st := h.CallVersion("1.68", "POST", "/v1/heartbeat/"+uuid, map[string]any{"callback_url": a.URL(),
		"agent_token": a.Token(), "agent_version": "9.0.0", "agent_verify_ca": otherCertificate(t)}, &errBody)
	if f := conductortest.IronicFault(t, errBody); st != 400 || f.FaultString != `Detected change in ramdisk provided "agent_verify_ca"` {
		t.Errorf("changed certificate: %d %q", st, f.FaultString)
	}
	// The deploy goes on over https, verified against the pinned certificate.
	n := h.WaitState("n1", "active", 20*time.Second)
	if got := a.Calls(); !slices.Contains(got, "standby.power_off") {
		t.Errorf("agent calls over TLS = %v", got)
	}
	// Powered off: the certificate is forgotten.
	if _, ok := conductortest.Internal(n)["agent_verify_ca"]; ok {
		t.Error("agent_verify_ca kept after power off")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("certificate file kept after power off: %v", err)
	}
}

// otherCertificate is a certificate of another agent boot.
func otherCertificate(t *testing.T) string {
	a, err := fakeagent.Start(context.Background(), fakeagent.Config{TLS: true, APIURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	return a.CertificatePEM()
}

// writeStarted says the agent accepted the image write.
func writeStarted(dii map[string]any) bool {
	step, _ := dii["deploy_steps"].([]any)
	i, _ := dii["deploy_step_index"].(float64)
	if int(i) >= len(step) {
		return false
	}
	cur, _ := step[int(i)].(map[string]any)
	return cur["step"] == "write_image" && dii["deploy_step_started"] == true
}

func TestPowerChangeWipesTheAgent(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 2 * time.Second, WriteChunks: 20})
	h.Start(h.Config())
	uuid := h.EnrollNode()
	if st := h.Call("PUT", "/v1/nodes/n1/states/power", map[string]any{"target": "power on"}, nil); st != http.StatusAccepted {
		t.Fatalf("power on: %d", st)
	}
	h.WaitPower("n1", "power on", 5*time.Second)
	// During a deploy's wait, a reboot through the API forgets the agent:
	// its token no longer works, and the ramdisk booted again gets a new
	// one and writes the image again.
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitInternal("n1", "the write to start", 10*time.Second, writeStarted)
	old := h.Agent()
	h.RetryOn409("PUT", "/v1/nodes/n1/states/power", map[string]any{"target": "rebooting"})
	h.WaitState("n1", "active", 20*time.Second)
	if h.Agent() == old || h.Agent().Token() == old.Token() {
		t.Fatal("the reboot did not start a new ramdisk with a new token")
	}
	var errBody map[string]any
	st := h.CallVersion("1.68", "POST", "/v1/heartbeat/"+uuid, map[string]any{
		"callback_url": old.URL(), "agent_token": old.Token(), "agent_version": "9.0.0"}, &errBody)
	if st != http.StatusBadRequest {
		t.Errorf("heartbeat with the wiped token: %d %v", st, errBody)
	}
	if n := h.Node("n1"); n["target_power_state"] != nil || n["power_state"] != "power on" {
		t.Errorf("after the deploy: power %v target %v", n["power_state"], n["target_power_state"])
	}
}

func TestUndeployDuringWaitCallBack(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 10 * time.Second, WriteChunks: 20})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "wait call-back", 10*time.Second)
	h.Provision("n1", "deleted", nil)
	n := h.WaitState("n1", "available", 10*time.Second)
	if n["power_state"] != "power off" {
		t.Errorf("power after undeploy = %v", n["power_state"])
	}
}

func TestAbortDeployWait(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 10 * time.Second, WriteChunks: 20})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "wait call-back", 10*time.Second)
	// Aborting a deploy waiting for its agent came with API 1.110. Each
	// heartbeat moves the node to deploying while it is processed, where
	// an abort is 409 NodeLocked: a client retries, as Ironic's do.
	abort := func(version string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var body map[string]any
			st := h.CallVersion(version, "PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "abort"}, &body)
			if st == want {
				return
			}
			if st != http.StatusConflict || time.Now().After(deadline) {
				t.Fatalf("abort from wait call-back at %s: %d %v, want %d", version, st, body, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	abort("1.109", http.StatusBadRequest)
	abort("1.110", http.StatusAccepted)
	n := h.WaitState("n1", "deploy failed", 5*time.Second)
	if le, _ := n["last_error"].(string); !strings.Contains(le, "aborted") {
		t.Errorf("last_error = %q", le)
	}
	h.WaitPower("n1", "power off", 5*time.Second)
	// Aborting a node that waits for nothing is refused.
	var errBody map[string]any
	if st := h.Call("PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "abort"}, &errBody); st != http.StatusBadRequest {
		t.Errorf("abort from deploy failed: %d %v", st, errBody)
	}
	// A failed deploy can be retried.
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "wait call-back", 10*time.Second)
}

func TestRebuildRedeploys(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
	first := h.Agent()
	h.Provision("n1", "rebuild", nil)
	h.WaitState("n1", "active", 20*time.Second)
	if h.Agent() == first {
		t.Error("rebuild did not boot the ramdisk again")
	}
	if !slices.Contains(h.Agent().Calls(), "deploy.execute_deploy_step") {
		t.Errorf("rebuild did not write the image: %v", h.Agent().Calls())
	}
}

func TestRestartMidDeployKeepsTimingsAndStep(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 2 * time.Second, WriteChunks: 20, HeartbeatInterval: 100 * time.Millisecond})
	cfg := h.Config()
	h.Start(cfg)
	uuid := h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "wait call-back", 10*time.Second)
	h.WaitInternal("n1", "the write to start", 10*time.Second, writeStarted)
	h.Stop()
	n := h.StoredNode(uuid)
	if tm, _ := n.DriverInternalInfo["deploy_timings"].(map[string]any); tm["boot_to_lookup"] == nil {
		t.Errorf("boot_to_lookup not persisted: %v", n.DriverInternalInfo["deploy_timings"])
	}
	h.Restart(cfg)
	n2 := h.WaitState("n1", "active", 20*time.Second)
	if tm, _ := conductortest.Internal(n2)["deploy_timings"].(map[string]any); tm["total"] == nil || tm["boot_to_lookup"] == nil {
		t.Errorf("timings after a restart = %v", tm)
	}
}
