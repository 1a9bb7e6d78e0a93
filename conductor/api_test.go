package conductor_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
	"github.com/rivetmetal/rivet/wire"
)

func TestVersionNegotiation(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())

	var root wire.RootDocument
	if st := h.CallVersion("", "GET", "/", nil, &root); st != 200 || root.DefaultVersion.Version != "1.110" ||
		root.DefaultVersion.MinVersion != "1.1" || root.Name != "OpenStack Ironic API" {
		t.Fatalf("GET / = %d %+v", st, root)
	}
	tests := []struct {
		header, wantVersion string
		wantStatus          int
		wantFault           string
	}{
		{"", "1.1", 200, ""},
		{"latest", "1.110", 200, ""},
		{"1.68", "1.68", 200, ""},
		{"1.111", "", 406, "Version 1.111 was requested but the minor version is not supported by this service. The supported version range is: [1.1, 1.110]."},
		{"2.1", "", 406, "Mutually exclusive versions requested. Version 2.1 requested but not supported by this service. The supported version range is: [1.1, 1.110]."},
		{"bogus", "", 406, "Invalid value for X-OpenStack-Ironic-API-Version header"},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest("GET", h.URL()+"/v1", nil)
		if tc.header != "" {
			req.Header.Set(wire.APIVersionHeader, tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || resp.Header.Get(wire.APIVersionHeader) != tc.wantVersion ||
			resp.Header.Get(wire.APIMinVersionHeader) != "1.1" || resp.Header.Get(wire.APIMaxVersionHeader) != "1.110" {
			t.Errorf("version %q: %d, headers %v", tc.header, resp.StatusCode, resp.Header)
		}
		if tc.wantFault != "" {
			var body map[string]any
			h.CallVersion(tc.header, "GET", "/v1/nodes", nil, &body)
			if f := conductortest.IronicFault(t, body); f.FaultString != tc.wantFault {
				t.Errorf("version %q: fault %q", tc.header, f.FaultString)
			}
		}
	}
	// Fields newer than the requested version are hidden.
	h.Call("POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "fake-hardware"}, nil)
	var old map[string]any
	h.CallVersion("1.1", "GET", "/v1/nodes/detail", nil, &old)
	n := old["nodes"].([]any)[0].(map[string]any)
	if _, ok := n["name"]; ok {
		t.Errorf("name shown at 1.1: %v", n)
	}
}

func TestLookup(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	var body map[string]any
	q := "/v1/lookup?addresses=" + url.QueryEscape("52:54:00:aa:bb:cc")
	if st := h.CallVersion("1.68", "GET", q, nil, &body); st != 404 || conductortest.IronicFault(t, body).FaultString != "Resource could not be found." {
		t.Fatalf("unknown MAC: %d %v", st, body)
	}
	if st := h.CallVersion("1.68", "GET", "/v1/lookup?addresses=zz", nil, &body); st != 400 {
		t.Fatalf("no valid MAC: %d %v", st, body)
	}

	// A node that exists but is not in a lookup state gets the same 404.
	uuid := h.EnrollNode()
	q = "/v1/lookup?addresses=" + url.QueryEscape(conductortest.MAC)
	if st := h.CallVersion("1.68", "GET", q, nil, &body); st != 404 || conductortest.IronicFault(t, body).FaultString != "Resource could not be found." {
		t.Fatalf("node in available: %d %v", st, body)
	}
	if st := h.CallVersion("1.21", "GET", q, nil, &body); st != 404 {
		t.Fatalf("lookup below 1.22: %d", st)
	}

	// In wait call-back (the agent here never heartbeats with a valid
	// token): the first lookup gets the token, later ones "******".
	h.Machines().SetConfig(fakeagent.Config{TokenOverride: "bad-token-bad-token-bad-token-bad-token-bad"})
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "wait call-back", 5*time.Second)
	h.WaitFor("the agent's lookup", 10*time.Second, func() bool { return h.Agent() != nil && h.Agent().Token() != "" })
	var lr wire.LookupResponse
	if st := h.CallVersion("1.68", "GET", q, nil, &lr); st != 200 {
		t.Fatalf("second lookup: %d", st)
	}
	if lr.Node.UUID != uuid || lr.Config.AgentToken == nil || *lr.Config.AgentToken != "******" ||
		lr.Node.DriverInternalInfo["agent_secret_token"] != "******" || lr.Node.InstanceInfo["image_url"] != "******" {
		t.Fatalf("lookup after token = %+v", lr)
	}
	if len(h.Agent().Token()) != 43 {
		t.Fatalf("agent token %q, want 43 characters", h.Agent().Token())
	}
}

func TestNodeAndPortErrors(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	h.Start(h.Config())
	var body map[string]any
	check := func(what string, st, want int, wantMsg string) {
		t.Helper()
		if st != want {
			t.Errorf("%s: status %d, want %d (%v)", what, st, want, body)
			return
		}
		if f := conductortest.IronicFault(t, body); wantMsg != "" && f.FaultString != wantMsg {
			t.Errorf("%s: %q, want %q", what, f.FaultString, wantMsg)
		}
	}
	check("no driver", h.Call("POST", "/v1/nodes", map[string]any{"name": "x"}, &body), 400, "'driver' is a required property")
	check("bad driver", h.Call("POST", "/v1/nodes", map[string]any{"driver": "ipmi"}, &body), 400,
		`No valid host was found. Reason: No conductor service registered which supports driver ipmi for conductor group "".`)
	check("bad field", h.Call("POST", "/v1/nodes", map[string]any{"driver": "fake-hardware", "color": 1}, &body), 400, "")
	if st := h.Call("POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "fake-hardware"}, &body); st != 201 {
		t.Fatalf("create: %d", st)
	}
	uuid := body["uuid"].(string)
	check("duplicate name", h.Call("POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "fake-hardware"}, &body), 409,
		"A node with name n1 already exists.")
	check("bad MAC", h.Call("POST", "/v1/ports", map[string]any{"address": "nope", "node_uuid": uuid}, &body), 400,
		"Expected a MAC address but received nope.")
	h.Call("POST", "/v1/ports", map[string]any{"address": "52:54:00:12:34:56", "node_uuid": uuid}, nil)
	check("duplicate MAC", h.Call("POST", "/v1/ports", map[string]any{"address": "52:54:00:12:34:56", "node_uuid": uuid}, &body), 409,
		"A port with MAC address 52:54:00:12:34:56 already exists.")
	check("patch internal", h.Call("PATCH", "/v1/nodes/n1", []map[string]any{{"op": "replace", "path": "/provision_state", "value": "active"}}, &body), 400,
		"'/provision_state' is an internal attribute and can not be updated")
	check("bad verb", h.Call("PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "fly"}, &body), 400,
		`The requested action "fly" could not be understood.`)
	check("bad transition", h.Call("PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "active"}, &body), 400,
		`The requested action "active" can not be performed on node "`+uuid+`" while it is in state "enroll".`)
	check("unknown node", h.Call("GET", "/v1/nodes/nope", nil, &body), 404, "Node nope could not be found.")
	check("bad heartbeat field", h.CallVersion("1.68", "POST", "/v1/heartbeat/"+uuid,
		map[string]any{"callback_url": "http://x", "agent_token": "t", "agent_version": "1", "foo": 1}, &body), 400,
		"Unexpected arguments: foo")
	check("heartbeat without version", h.CallVersion("1.68", "POST", "/v1/heartbeat/"+uuid,
		map[string]any{"callback_url": "http://x", "agent_token": "t"}, &body), 400,
		"Agent did not transmit a version, and a version is required. Please update the agent being used.")
	check("heartbeat without token", h.CallVersion("1.68", "POST", "/v1/heartbeat/"+uuid,
		map[string]any{"callback_url": "http://x", "agent_version": "1"}, &body), 400,
		"Agent token is required for heartbeat processing.")

	// JSON Patch and the node document.
	var n map[string]any
	if st := h.Call("PATCH", "/v1/nodes/n1", []map[string]any{
		{"op": "add", "path": "/driver_info/ipmi_password", "value": "s3cret"},
		{"op": "replace", "path": "/name", "value": "n2"},
		{"op": "add", "path": "/properties/memory_mb", "value": 4096},
	}, &n); st != 200 {
		t.Fatalf("patch: %d %v", st, n)
	}
	if n["name"] != "n2" || n["driver_info"].(map[string]any)["ipmi_password"] != "******" ||
		n["properties"].(map[string]any)["memory_mb"] != float64(4096) || n["updated_at"] == nil {
		t.Errorf("patched node = %v", n)
	}

	// Deleting a node removes its ports.
	if st := h.Call("DELETE", "/v1/nodes/n2", nil, nil); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	var ports map[string][]any
	h.Call("GET", "/v1/ports", nil, &ports)
	if len(ports["ports"]) != 0 {
		t.Errorf("ports after node delete: %v", ports)
	}
}
