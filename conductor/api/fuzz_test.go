package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/store/sqlite"
	"github.com/rivetmetal/rivet/wire"
)

// The API's parsers fed from the network, fuzzed through the handler
// itself (a real SQLite store, the tests' fake engine): whatever the body
// or query, the answer is a client error or a success, never a 5xx (an
// unexpected failure) or a panic; an error comes in Ironic's error body,
// a success in JSON.

// fuzzAPI is one handler shared by a fuzz target's runs, with node "fz"
// (fake-hardware) and a port.
func fuzzAPI(f *testing.F) http.Handler {
	st, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "rivet.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	p := &fakeProvisioner{}
	h := New(Config{Store: st, Provisioner: p, Power: p, Ramdisk: p, Inspector: p, Drivers: p, Conductor: "c1",
		Logger: slog.New(slog.DiscardHandler)})
	for _, req := range []struct{ path, body string }{
		{"/v1/nodes", `{"name":"fz","driver":"fake-hardware","uuid":"6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11"}`},
		{"/v1/ports", `{"address":"52:54:00:12:34:56","node_uuid":"6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11"}`},
	} {
		if rec := fuzzCall(h, "POST", req.path, []byte(req.body)); rec.Code != http.StatusCreated {
			f.Fatalf("POST %s: %d %s", req.path, rec.Code, rec.Body)
		}
	}
	return h
}

func fuzzCall(h http.Handler, method, target string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://c1"+target, bytes.NewReader(body))
	req.Header.Set(wire.APIVersionHeader, "1.89")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkAnswer fails on a server error, an error without Ironic's body or
// a success that is not JSON.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder, input any) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s %q: status %d: %s", what, input, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var e wire.IronicError
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.ErrorMessage == "" || e.Fault().FaultString == "" {
			t.Fatalf("%s %q: %d without Ironic's error body: %q", what, input, rec.Code, rec.Body)
		}
	} else if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%s %q: %d with a body that is not JSON: %q", what, input, rec.Code, rec.Body)
	}
}

func FuzzNodeCreateBody(f *testing.F) {
	h := fuzzAPI(f)
	for _, s := range []string{
		`{"driver":"fake-hardware"}`,
		`{"name":"n-1","driver":"fake-hardware","driver_info":{"deploy_kernel":"/srv/k"},"properties":{"cpus":2}}`,
		`{"driver":"fake-hardware","uuid":"not-a-uuid"}`,
		`{"driver":"fake-hardware","automated_clean":null,"boot_interface":"ipxe"}`,
		`{"driver":"redfish","instance_info":{"image_source":"file:///etc/shadow"}} {}`,
		`{"driver":"fake-hardware","extra":{"a":[1,{"b":null}]},"name":"😀"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fuzzCall(h, "POST", "/v1/nodes", body)
		checkAnswer(t, "POST /v1/nodes", rec, body)
		if rec.Code == http.StatusCreated {
			var n map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &n); err != nil || n["uuid"] == nil {
				t.Fatalf("created node document %q", rec.Body)
			}
			uuid, _ := n["uuid"].(string)
			checkAnswer(t, "GET the created node", fuzzCall(h, "GET", "/v1/nodes/"+uuid, nil), body)
			checkAnswer(t, "DELETE the created node", fuzzCall(h, "DELETE", "/v1/nodes/"+uuid, nil), body)
		}
	})
}

func FuzzNodePatchBody(f *testing.F) {
	h := fuzzAPI(f)
	for _, s := range []string{
		`[{"op":"add","path":"/extra/a","value":1}]`,
		`[{"op":"replace","path":"/name","value":"x"},{"op":"remove","path":"/extra/a"}]`,
		`[{"op":"add","path":"/driver_info/l","value":[1,2]},{"op":"add","path":"/driver_info/l/-","value":3},{"op":"add","path":"/driver_info/l/0","value":0}]`,
		`[{"op":"add","path":"/instance_info","value":{"image_source":"http://x/d","configdrive":"x"}}]`,
		`[{"op":"replace","path":"/maintenance","value":"yes"}]`,
		`[{"op":"add","path":"/provision_state","value":"active"}]`,
		`[{"op":"add","path":"/extra/a~1b~0c","value":{}}] []`,
		`[{"op":"add","path":"/boot_interface","value":"ipxe"},{"op":"remove","path":"/automated_clean"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAnswer(t, "PATCH /v1/nodes/fz", fuzzCall(h, "PATCH", "/v1/nodes/6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", body), body)
		// Whatever was applied, the node can still be read.
		if rec := fuzzCall(h, "GET", "/v1/nodes/6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", nil); rec.Code != http.StatusOK {
			t.Fatalf("GET after PATCH %q: %d %s", body, rec.Code, rec.Body)
		}
	})
}

func FuzzPortCreateBody(f *testing.F) {
	h := fuzzAPI(f)
	for _, s := range []string{
		`{"address":"52:54:00:00:00:01","node_uuid":"6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11"}`,
		`{"address":"52-54-00-00-00-02","node_uuid":"fz","pxe_enabled":false,"extra":{"a":1}}`,
		`{"address":"not a mac","node_uuid":"6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11","local_link_connection":{"switch_id":"x"}}`,
		`{"address":"52:54:00:00:00:03"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fuzzCall(h, "POST", "/v1/ports", body)
		checkAnswer(t, "POST /v1/ports", rec, body)
		if rec.Code == http.StatusCreated {
			var p map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p["uuid"] == nil {
				t.Fatalf("created port document %q", rec.Body)
			}
			uuid, _ := p["uuid"].(string)
			checkAnswer(t, "DELETE the created port", fuzzCall(h, "DELETE", "/v1/ports/"+uuid, nil), body)
		}
	})
}

func FuzzProvisionBody(f *testing.F) {
	h := fuzzAPI(f)
	for _, s := range []string{
		`{"target":"active","configdrive":"H4sIAAAAAAAC/0vOz0vLTNc1UihJLS5RSCnKLEsFAH0NynYTAAAA"}`,
		`{"target":"active","configdrive":{"meta_data":{"hostname":"h"},"user_data":"#cloud-config\n"}}`,
		`{"target":"active","configdrive":"\u0048\u0034sI"}`,
		`{"target":"clean","clean_steps":[{"interface":"deploy","step":"erase_devices","args":{"x":1}}]}`,
		`{"target":"rebuild","configdrive":[1]}`,
		`{"target":"manage","disable_ramdisk":true}`,
		`{"target":"active"} x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAnswer(t, "PUT provision", fuzzCall(h, "PUT", "/v1/nodes/fz/states/provision", body), body)
	})
}

// FuzzLookupRoute sends lookup query strings through the whole API handler:
// never a 5xx, always Ironic's error body.
func FuzzLookupRoute(f *testing.F) {
	h := fuzzAPI(f)
	for _, s := range []string{
		"addresses=52:54:00:12:34:56",
		"addresses=52:54:00:12:34:56,aa-bb-cc-dd-ee-ff&node_uuid=6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11",
		"node_uuid=nope", "addresses=%zz", "addresses=&addresses=,,,", strings.Repeat("addresses=x&", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest("GET", "http://c1/v1/lookup", nil)
		req.URL.RawQuery = query
		req.Header.Set(wire.APIVersionHeader, "1.89")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, "GET /v1/lookup", rec, query)
	})
}

func FuzzHeartbeatBody(f *testing.F) {
	h := fuzzAPI(f)
	for _, s := range []string{
		`{"callback_url":"https://10.0.0.5:9999","agent_token":"t","agent_version":"10.0.0"}`,
		`{"callback_url":"https://10.0.0.5:9999","agent_status":"end","agent_status_message":"ok","agent_verify_ca":"-----BEGIN CERTIFICATE-----"}`,
		`{"callback_url":1}`, `{"bogus":true}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAnswer(t, "POST heartbeat", fuzzCall(h, "POST", "/v1/heartbeat/6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", body), body)
	})
}
