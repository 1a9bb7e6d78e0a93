package conductor_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

func TestDeployEnrollToActiveAndBack(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 200 * time.Millisecond})
	h.Start(h.Config())
	uuid := h.EnrollNode()
	if n := h.Node("n1"); n["power_state"] != "power off" || n["target_provision_state"] != nil {
		t.Fatalf("after provide: power %v target %v", n["power_state"], n["target_provision_state"])
	}
	h.SetImage("n1")
	h.Provision("n1", "active", "H4sIAAAAAAAC/0vOz0vLTNc1UihJLS5RSCnKLEsFAH0NynYTAAAA")
	n := h.WaitState("n1", "active", 20*time.Second)

	a := h.Agent()
	if a == nil {
		t.Fatal("no agent was booted")
	}
	wantCalls := []string{"deploy.get_deploy_steps", "deploy.execute_deploy_step",
		"standby.get_partition_uuids", "image.install_bootloader", "standby.power_off"}
	if got := a.Calls(); !slices.Equal(got, wantCalls) {
		t.Errorf("agent calls = %v, want %v", got, wantCalls)
	}
	info := a.ImageInfo()
	if info == nil {
		t.Fatal("no image_info received")
	}
	if info.ID != "disk.raw" || len(info.URLs) != 1 || info.URLs[0] != h.URL()+"/images/disk.raw" ||
		info.OSHashAlgo != "sha256" || info.NodeUUID != uuid || info.DiskFormatString() != "raw" ||
		info.StreamRawImages == nil || !*info.StreamRawImages || info.ContainerFormat != nil ||
		info.Configdrive == nil || *info.Configdrive != "H4sIAAAAAAAC/0vOz0vLTNc1UihJLS5RSCnKLEsFAH0NynYTAAAA" {
		t.Errorf("image_info = %+v", info)
	}
	if cfg := a.LookupConfig(); cfg.HeartbeatTimeout != 300 || !cfg.AgentTokenRequired || len(a.Token()) != 43 {
		t.Errorf("lookup config %+v, token length %d", cfg, len(a.Token()))
	}

	dii := conductortest.Internal(n)
	prog, _ := dii["deploy_progress"].(map[string]any)
	if prog == nil || prog["bytes_written"] != float64(len(h.Image())) || prog["total_bytes"] != float64(len(h.Image())) {
		t.Errorf("deploy_progress = %v, want %d bytes written", prog, len(h.Image()))
	}
	if dii["root_uuid_or_disk_id"] != "0x1a2b3c4d" {
		t.Errorf("root_uuid_or_disk_id = %v", dii["root_uuid_or_disk_id"])
	}
	for _, k := range []string{"agent_secret_token", "agent_url", "agent_cached_deploy_steps", "deploy_step_index"} {
		if _, ok := dii[k]; ok {
			t.Errorf("driver_internal_info still holds %s after deploy", k)
		}
	}
	if ds, _ := n["deploy_step"].(map[string]any); len(ds) != 0 || n["last_error"] != nil || n["power_state"] != "power on" {
		t.Errorf("deploy_step %v, last_error %v, power %v", n["deploy_step"], n["last_error"], n["power_state"])
	}
	if dev, persistent := h.Driver().BootDevice(uuid); dev != power.BootDisk || !persistent {
		t.Errorf("boot device %q persistent=%v, want disk, persistent", dev, persistent)
	}
	if ii := n["instance_info"].(map[string]any); ii["configdrive"] != "******" || ii["image_url"] != "******" {
		t.Errorf("instance_info secrets not masked: %v", ii)
	}
	// The agent's token was wiped: a late heartbeat is refused.
	var errBody map[string]any
	st := h.CallVersion("1.68", "POST", "/v1/heartbeat/"+uuid, map[string]any{
		"callback_url": a.URL(), "agent_token": a.Token(), "agent_version": "9.0.0"}, &errBody)
	if st != http.StatusBadRequest || conductortest.IronicFault(t, errBody).FaultString != "Invalid or missing agent token received." {
		t.Errorf("heartbeat after deploy: %d %v", st, errBody)
	}

	h.Provision("n1", "deleted", nil)
	n = h.WaitState("n1", "available", 10*time.Second)
	if ii, _ := n["instance_info"].(map[string]any); len(ii) != 0 {
		t.Errorf("instance_info after undeploy = %v", ii)
	}
	if n["power_state"] != "power off" {
		t.Errorf("power after undeploy = %v", n["power_state"])
	}
}

func TestDeployWriteFailure(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteError: "No space left on device"})
	h.Start(h.Config())
	uuid := h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	n := h.WaitState("n1", "deploy failed", 20*time.Second)
	want := "Deploy step deploy.write_image failed on node " + uuid + ". No space left on device"
	if n["last_error"] != want {
		t.Errorf("last_error = %q, want %q", n["last_error"], want)
	}
	if n["target_provision_state"] != nil {
		t.Errorf("target %v after failure", n["target_provision_state"])
	}
	n = h.WaitPower("n1", "power off", 5*time.Second)
	if _, ok := conductortest.Internal(n)["agent_secret_token"]; ok {
		t.Error("token kept after a failed deploy")
	}
	// A failed deploy can be torn down.
	h.Provision("n1", "deleted", nil)
	h.WaitState("n1", "available", 10*time.Second)
}

func TestAgentBusyIsRetried(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{BusyOnce: true})
	h.Start(h.Config())
	h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 20*time.Second)
	var executes int
	for _, c := range h.Agent().Calls() {
		if c == "deploy.execute_deploy_step" {
			executes++
		}
	}
	if executes != 2 {
		t.Errorf("execute_deploy_step sent %d times, want 2 (409 then retry): %v", executes, h.Agent().Calls())
	}
}

func TestBadTokenHeartbeatAndCallbackTimeout(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{TokenOverride: strings.Repeat("x", 43)})
	cfg := h.Config()
	cfg.Provision.CallbackTimeout = 700 * time.Millisecond
	h.Start(cfg)
	uuid := h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "wait call-back", 5*time.Second)

	// The agent's heartbeats carry a wrong token: 400 with Ironic's text.
	h.WaitFor("a heartbeat", 5*time.Second, func() bool { return h.Agent() != nil && len(h.Agent().HeartbeatStatuses()) > 0 })
	for _, st := range h.Agent().HeartbeatStatuses() {
		if st != http.StatusBadRequest {
			t.Fatalf("heartbeat with a bad token answered %d", st)
		}
	}
	var errBody map[string]any
	st := h.CallVersion("1.68", "POST", "/v1/heartbeat/"+uuid, map[string]any{
		"callback_url": h.Agent().URL(), "agent_token": "wrong", "agent_version": "9.0.0"}, &errBody)
	if f := conductortest.IronicFault(t, errBody); st != 400 || f.FaultCode != "Client" || f.FaultString != "Invalid or missing agent token received." {
		t.Errorf("bad token heartbeat: %d %+v", st, f)
	}

	// No heartbeat is processed, so the callback timeout fails the deploy.
	n := h.WaitState("n1", "deploy failed", 10*time.Second)
	if want := "Timeout reached while waiting for callback for node " + uuid; n["last_error"] != want {
		t.Errorf("last_error = %q, want %q", n["last_error"], want)
	}
	h.WaitPower("n1", "power off", 5*time.Second)
}

func TestRestartMidDeploy(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 3 * time.Second, WriteChunks: 30,
		HeartbeatInterval: 100 * time.Millisecond})
	cfg := h.Config()
	h.Start(cfg)
	uuid := h.EnrollNode()
	// The image comes from its own server, so stopping the conductor does
	// not wait for the download.
	imgSrv := httptest.NewServer(http.StripPrefix("/images/", http.FileServer(http.Dir(filepath.Join(h.Dir(), "images")))))
	defer imgSrv.Close()
	h.SetImageURL("n1", imgSrv.URL+"/images/disk.raw")
	h.Provision("n1", "active", nil)

	// Wait until the write runs and its progress is visible.
	deadline := time.Now().Add(10 * time.Second)
	var written float64
	for {
		n := h.Node("n1")
		if p, ok := conductortest.Internal(n)["deploy_progress"].(map[string]any); ok {
			written, _ = p["bytes_written"].(float64)
		}
		if written > 0 && written < float64(len(h.Image())) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no partial progress seen (state %v, progress %v)", n["provision_state"], conductortest.Internal(n)["deploy_progress"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.Stop()

	// The database holds the deploy: state, token, agent URL, current step.
	n := h.StoredNode(uuid)
	if ps := string(n.ProvisionState); ps != "wait call-back" && ps != "deploying" {
		t.Fatalf("after stop: provision state %q", ps)
	}
	if n.InternalString("agent_secret_token") == "" || n.InternalString("agent_url") == "" || n.DeployStep["step"] != "write_image" {
		t.Fatalf("after stop: token set=%v agent_url=%q step=%v", n.InternalString("agent_secret_token") != "",
			n.InternalString("agent_url"), n.DeployStep["step"])
	}

	// A new conductor on the same database picks the deploy up from the
	// agent's next heartbeat.
	h.Restart(cfg)
	h.WaitState("n1", "active", 20*time.Second)
	var executes int
	for _, c := range h.Agent().Calls() {
		if c == "deploy.execute_deploy_step" {
			executes++
		}
	}
	if executes != 1 {
		t.Errorf("image written %d times, want once: %v", executes, h.Agent().Calls())
	}
}
