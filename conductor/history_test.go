package conductor_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/auth"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// TestNodeHistoryOverTheAPI drives a node through a conductor with
// http_basic authentication (no TLS: the fake agents do not trust a test
// CA) — enroll, manage, provide, deploy,
// maintenance, power off, a failed rebuild — and reads its history with
// the reader user at API 1.78: every operator action carries its user,
// the conductor's own work none, the deploy's total is in its end, the
// failure is an error with the agent's message, and the heartbeat cycles
// are left out.
func TestNodeHistoryOverTheAPI(t *testing.T) {
	s := newSecureSetup(t)
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	cfg.Auth = auth.Config{Strategy: auth.HTTPBasic, UserFile: s.userFile, RolesFile: s.rolesFile}
	h.Start(cfg)
	hc := &http.Client{Timeout: 30 * time.Second}
	api := h.URL() + "/v1"
	admin := func(method, path string, body any) answer {
		t.Helper()
		a := send(t, hc, method, api+path, body, adminUser, adminPass)
		if a.status/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, path, a.status, a.body)
		}
		return a
	}
	state := func(id, want string) {
		t.Helper()
		h.WaitFor("node "+want, 30*time.Second, func() bool {
			var n map[string]any
			a := send(t, hc, "GET", api+"/nodes/"+id, nil, readerUser, readerPass)
			if err := json.Unmarshal(a.body, &n); err != nil {
				t.Fatal(err)
			}
			return n["provision_state"] == want && n["target_provision_state"] == nil
		})
	}

	var n map[string]any
	json.Unmarshal(admin("POST", "/nodes", map[string]any{"name": "h1", "driver": "fake-hardware"}).body, &n)
	id := n["uuid"].(string)
	admin("POST", "/ports", map[string]any{"address": conductortest.MAC, "node_uuid": id})
	admin("PUT", "/nodes/h1/states/provision", map[string]any{"target": "manage"})
	state(id, "manageable")
	admin("PUT", "/nodes/h1/states/provision", map[string]any{"target": "provide"})
	state(id, "available")
	sum := sha256.Sum256(h.Image())
	admin("PATCH", "/nodes/h1", []map[string]any{{"op": "add", "path": "/instance_info", "value": map[string]any{
		"image_source": h.URL() + "/images/disk.raw", "image_os_hash_algo": "sha256",
		"image_os_hash_value": hex.EncodeToString(sum[:])}}})
	admin("PUT", "/nodes/h1/states/provision", map[string]any{"target": "active"})
	state(id, "active")
	admin("PUT", "/nodes/h1/maintenance", map[string]any{"reason": "rack move"})
	admin("DELETE", "/nodes/h1/maintenance", nil)
	h.Machines().SetConfig(fakeagent.Config{WriteError: "No space left on device"})
	admin("PUT", "/nodes/h1/states/provision", map[string]any{"target": "rebuild"})
	state(id, "deploy failed")

	req, _ := http.NewRequest("GET", api+"/nodes/h1/history?detail=true", nil)
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.78")
	req.SetBasicAuth(readerUser, readerPass)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hist struct {
		History []struct {
			Severity  string  `json:"severity"`
			EventType string  `json:"event_type"`
			Event     string  `json:"event"`
			Conductor string  `json:"conductor"`
			User      *string `json:"user"`
		} `json:"history"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&hist); err != nil || resp.StatusCode != 200 {
		t.Fatalf("history: %d %v", resp.StatusCode, err)
	}
	var lines []string
	for _, e := range hist.History {
		u := "-"
		if e.User != nil {
			u = *e.User
		}
		if e.Conductor == "" {
			t.Errorf("event %q has no conductor", e.Event)
		}
		lines = append(lines, e.Severity+" "+e.EventType+" "+u+": "+e.Event)
	}
	got := strings.Join(lines, "\n")
	t.Logf("history:\n%s", got)
	for _, want := range []string{
		"INFO provisioning admin: Node created in enroll (driver fake-hardware)",
		"INFO provisioning admin: enroll → verifying (target manageable)",
		"INFO provisioning -: verifying → manageable",
		"INFO provisioning admin: manageable → cleaning (target available)",
		"INFO provisioning admin: available → deploying (target active)",
		"INFO provisioning -: deploying → active; deployed in ",
		"INFO maintenance admin: Maintenance set: rack move",
		"INFO maintenance admin: Maintenance cleared",
		"INFO provisioning admin: active → deploying (target active)",
		"ERROR deploying -: deploying → deploy failed: ",
		"No space left on device",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("history lacks %q", want)
		}
	}
	if strings.Contains(got, "wait call-back → deploying") || strings.Contains(got, "deploying → wait call-back") {
		t.Error("the history shows the heartbeat cycles")
	}
}
