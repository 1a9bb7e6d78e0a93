package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/wire"
)

func TestWatchMaintenanceAndFilters(t *testing.T) {
	api, image, sum := testConductor(t, fakeagent.Config{WriteDuration: time.Second, WriteChunks: 8})
	t.Setenv("RIVET_URL", api)
	fast := "--poll-interval=20ms"
	mustRivet(t, "node", "create", "--name", "n1", "--driver", "fake-hardware")
	mustRivet(t, "port", "create", "52:54:00:12:34:56", "--node", "n1")
	mustRivet(t, "node", "manage", "n1", "--wait", fast)
	mustRivet(t, "node", "provide", "n1", "--wait", fast)

	// Maintenance on and off, seen by the list filter.
	mustRivet(t, "node", "maintenance", "n1", "on", "--reason", "rack move")
	var list []map[string]any
	json.Unmarshal([]byte(mustRivet(t, "-o", "json", "node", "list", "--maintenance", "true")), &list)
	if len(list) != 1 || list[0]["maintenance_reason"] != "rack move" {
		t.Fatalf("maintenance list = %v", list)
	}
	mustRivet(t, "node", "maintenance", "n1", "off")
	json.Unmarshal([]byte(mustRivet(t, "-o", "json", "node", "list", "--maintenance", "true")), &list)
	if len(list) != 0 {
		t.Fatalf("maintenance list after off = %v", list)
	}
	json.Unmarshal([]byte(mustRivet(t, "-o", "json", "node", "list", "--provision-state", "available")), &list)
	if len(list) != 1 {
		t.Fatalf("available list = %v", list)
	}

	mustRivet(t, "node", "deploy", "n1", "--image", image, "--checksum", sum, "--os-hash-algo", "sha256")
	out := mustRivet(t, "node", "watch", "n1", fast, "--timeout", "30s")
	for _, want := range []string{"n1: deploying → active", "of 2.0 MiB", "] write ", "/s", "n1: active"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "[########################] done 2.0 MiB of 2.0 MiB (100%)") {
		t.Errorf("watch never showed a full bar:\n%s", out)
	}
}

func TestWatchFailureExitCode(t *testing.T) {
	api, image, sum := testConductor(t, fakeagent.Config{WriteError: "disk /dev/vda vanished"})
	t.Setenv("RIVET_URL", api)
	fast := "--poll-interval=20ms"
	mustRivet(t, "node", "create", "--name", "n1", "--driver", "fake-hardware")
	mustRivet(t, "port", "create", "52:54:00:12:34:56", "--node", "n1")
	mustRivet(t, "node", "manage", "n1", "--wait", fast)
	mustRivet(t, "node", "provide", "n1", "--wait", fast)
	mustRivet(t, "node", "deploy", "n1", "--image", image, "--checksum", sum, "--os-hash-algo", "sha256")
	_, err := rivet(t, "node", "watch", "n1", fast)
	if ExitCode(err) != ExitNodeFailed || !strings.Contains(err.Error(), "disk /dev/vda vanished") {
		t.Fatalf("watch of a failing deploy: exit %d, %v", ExitCode(err), err)
	}
	if _, err := rivet(t, "node", "show", "nope"); ExitCode(err) != 1 {
		t.Fatalf("show of an unknown node: exit %d (%v)", ExitCode(err), err)
	}
	if _, err := rivet(t, "node", "power", "n1", "sideways"); ExitCode(err) != 2 {
		t.Fatalf("bad power word: exit %d (%v)", ExitCode(err), err)
	}
}

// fakeAPI answers node reads with a canned node and records writes.
type fakeAPI struct {
	mu     sync.Mutex
	bodies map[string]map[string]any
}

func newFakeAPI(t *testing.T, node map[string]any) *fakeAPI {
	f := &fakeAPI{bodies: map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.bodies[r.Method+" "+r.URL.Path] = body
		f.mu.Unlock()
		switch {
		case r.Method == "GET" && r.URL.Path == "/":
			fmt.Fprint(w, `{"default_version": {"id": "v1", "min_version": "1.1", "version": "1.89"}}`)
		case r.Method == "GET" && r.URL.Path == "/v1/nodes/n1":
			json.NewEncoder(w).Encode(node)
		case r.Method == "GET" && r.URL.Path == "/v1/nodes/n1/management/boot_device":
			fmt.Fprint(w, `{"boot_device":"pxe","persistent":false}`)
		case r.Method == "PUT" && r.URL.Path == "/v1/nodes/n1/states/power":
			w.WriteHeader(http.StatusAccepted)
		case r.Method == "PUT" && r.URL.Path == "/v1/nodes/n1/states/provision":
			w.WriteHeader(http.StatusAccepted)
		case r.Method == "PUT" && r.URL.Path == "/v1/nodes/n1/management/boot_device":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"Not Found\", \"debuginfo\": null}"}`)
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv("RIVET_URL", srv.URL)
	return f
}

func (f *fakeAPI) body(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(f.bodies[key])
	return string(b)
}

func TestTimingsPowerCleanBootDevice(t *testing.T) {
	f := newFakeAPI(t, map[string]any{"uuid": "u1", "name": "n1", "provision_state": "active",
		"driver_internal_info": map[string]any{"deploy_timings": map[string]any{
			"boot_to_lookup": 8.25, "download_write": 12.0, "bootloader": 0.75, "power": 1.0, "custom": 0.5,
			"agent_download": 11.0, "agent_decode": 10.5, "agent_write": 11.5, "agent_verify": 0.5, "total": 23.0,
			"agent_decode_cpu": 9.75, "agent_decode_input_wait": 0.25, "agent_decode_output_wait": 0.5}}})
	out := mustRivet(t, "node", "timings", "n1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var phases []string
	for _, l := range lines[1:] {
		phases = append(phases, strings.Join(strings.Fields(strings.SplitN(l, ".", 2)[0]), " "))
	}
	// The recorded total, not the sum of every line (the agent's
	// overlapping phases are parts of download_write).
	want := []string{"boot_to_lookup 8", "download_write 12", "↳ agent_download 11", "↳ agent_decode 10",
		"↳ agent_decode_input_wait 0", "↳ agent_decode_output_wait 0", "↳ agent_decode_cpu 9", "↳ agent_write 11", "↳ agent_verify 0", "bootloader 0", "power 1", "custom 0", "between phases 0", "total 23"}
	if strings.Join(phases, "|") != strings.Join(want, "|") || !strings.Contains(out, "   23.0") ||
		!strings.Contains(lines[len(lines)-1], "23.0") || !strings.Contains(out, "part of download_write") {
		t.Fatalf("timings output:\n%s\nphases %q", out, phases)
	}
	var js map[string]float64
	if err := json.Unmarshal([]byte(mustRivet(t, "-o", "json", "node", "timings", "n1")), &js); err != nil || js["bootloader"] != 0.75 {
		t.Fatalf("timings json: %v %v", js, err)
	}

	mustRivet(t, "node", "power", "n1", "soft-reboot", "--power-timeout", "90")
	if b := f.body("PUT /v1/nodes/n1/states/power"); b != `{"target":"soft rebooting","timeout":90}` {
		t.Errorf("power body %s", b)
	}
	mustRivet(t, "node", "boot-device", "n1", "disk", "--persistent")
	if b := f.body("PUT /v1/nodes/n1/management/boot_device"); b != `{"boot_device":"disk","persistent":true}` {
		t.Errorf("boot device body %s", b)
	}
	if out := mustRivet(t, "node", "boot-device", "n1"); !strings.Contains(out, "pxe") {
		t.Fatalf("boot-device show: %q", out)
	}
	mustRivet(t, "node", "clean", "n1", "--step", "deploy.erase_devices_metadata",
		"--step", `raid.create_configuration={"create_root_volume":true}`)
	if b := f.body("PUT /v1/nodes/n1/states/provision"); b != `{"clean_steps":[{"interface":"deploy","step":"erase_devices_metadata"},{"args":{"create_root_volume":true},"interface":"raid","step":"create_configuration"}],"target":"clean"}` {
		t.Errorf("clean body %s", b)
	}
	if _, err := rivet(t, "node", "clean", "n1"); !errors.Is(err, ErrUsage) {
		t.Fatalf("clean without steps: %v", err)
	}
	if _, err := rivet(t, "node", "validate", "n2"); ExitCode(err) != 1 {
		t.Fatalf("validate unknown: %v", err)
	}
}

// TestTimingsWithoutTotal: a deploy that has not ended shows the sum of
// its phases, said to be one.
func TestTimingsWithoutTotal(t *testing.T) {
	newFakeAPI(t, map[string]any{"uuid": "u1", "name": "n1", "provision_state": "wait call-back",
		"driver_internal_info": map[string]any{"deploy_timings": map[string]any{"boot_to_lookup": 8.25, "agent_download": 3.0}}})
	out := mustRivet(t, "node", "timings", "n1")
	if !strings.Contains(out, "sum of phases") || !strings.Contains(out, "no total recorded") || strings.Contains(out, "\ntotal") ||
		!strings.Contains(out, "8.2") {
		t.Fatalf("timings of an unfinished deploy:\n%s", out)
	}
}

func TestNoTimingsIsAnError(t *testing.T) {
	newFakeAPI(t, map[string]any{"uuid": "u1", "name": "n1", "provision_state": "active"})
	if _, err := rivet(t, "node", "timings", "n1"); err == nil || !strings.Contains(err.Error(), "no deploy timings") {
		t.Fatalf("timings without data: %v", err)
	}
}

// A sparse image writes less than it reads: the percentage follows the
// image as served, and the skipped zeros are shown, not taken for a
// shortfall.
func TestFormatProgressSparseImage(t *testing.T) {
	const mib = 1 << 20
	p := &wire.Progress{Phase: "done", BytesRead: 48 * mib, BytesWritten: 16 * mib,
		BytesSkipped: 32 * mib, TotalBytes: 48 * mib, ETASeconds: -1}
	want := "done 48.0 MiB of 48.0 MiB (100%), 16.0 MiB written, 32.0 MiB zeros skipped"
	if got := formatProgress(p); got != want {
		t.Errorf("formatProgress = %q, want %q", got, want)
	}
	if got := progressBar(p, 4); got != "[####]" {
		t.Errorf("progressBar = %q, want a full bar", got)
	}
	p = &wire.Progress{Phase: "write", BytesRead: 12 * mib, BytesWritten: 4 * mib, TotalBytes: 48 * mib,
		RateBytesPerSec: 2 * mib, ETASeconds: 18}
	want = "write 12.0 MiB of 48.0 MiB (25%), 4.0 MiB written, 2.0 MiB/s, ETA 18s"
	if got := formatProgress(p); got != want {
		t.Errorf("formatProgress = %q, want %q", got, want)
	}
	if got := progressBar(p, 4); got != "[#...]" {
		t.Errorf("progressBar = %q, want a quarter", got)
	}
}
