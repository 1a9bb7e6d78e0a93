package agentclient

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

const token = "tok-0123456789abcdef0123456789abcdef012"

func newClient() *Client {
	return New(Config{Timeout: 2 * time.Second, RetryDelay: 10 * time.Millisecond})
}

func TestExecuteSendsIronicShape(t *testing.T) {
	var got struct {
		path, wait, tok, ctype string
		req                    wire.CommandRequest
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.path, got.ctype = r.URL.Path, r.Header.Get("Content-Type")
		got.wait, got.tok = r.URL.Query().Get("wait"), r.URL.Query().Get("agent_token")
		json.NewDecoder(r.Body).Decode(&got.req)
		json.NewEncoder(w).Encode(wire.CommandResult{ID: "1", CommandName: "get_partition_uuids",
			CommandStatus: wire.StatusSucceeded, CommandResult: json.RawMessage(`{"root uuid":"0x1a2b3c4d"}`)})
	}))
	defer srv.Close()

	res, err := newClient().Execute(context.Background(), Endpoint{URL: srv.URL, Token: token}, "standby.get_partition_uuids", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if got.path != "/v1/commands/" || got.wait != "true" || got.tok != token || got.ctype != "application/json" {
		t.Errorf("request path=%q wait=%q token ok=%v ctype=%q", got.path, got.wait, got.tok == token, got.ctype)
	}
	if got.req.Name != "standby.get_partition_uuids" || string(got.req.Params) != "{}" {
		t.Errorf("body = %+v", got.req)
	}
	var pu wire.PartitionUUIDs
	if err := res.DecodeResult(&pu); err != nil || pu.RootUUID != "0x1a2b3c4d" {
		t.Errorf("result = %+v, %v", pu, err)
	}
}

func TestExecuteBusyAndAPIError(t *testing.T) {
	status, fault := http.StatusConflict, "Agent is busy: executing command execute_deploy_step"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(wire.Fault{FaultCode: "Client", FaultString: fault})
	}))
	defer srv.Close()
	c := newClient()

	_, err := c.Execute(context.Background(), Endpoint{URL: srv.URL, Token: token}, "deploy.execute_deploy_step", map[string]any{}, false)
	if !errors.Is(err, ErrAgentBusy) {
		t.Fatalf("409: %v, want ErrAgentBusy", err)
	}
	status, fault = http.StatusBadRequest, "Invalid command: Unknown command: x"
	_, err = c.Execute(context.Background(), Endpoint{URL: srv.URL, Token: token}, "deploy.x", nil, false)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || errors.Is(err, ErrAgentBusy) {
		t.Fatalf("400: %v", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestExecuteRetriesAndNeverLeaksToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused

	_, err = newClient().Execute(context.Background(), Endpoint{URL: "http://" + addr, Token: token}, "standby.power_off", nil, false)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestExecuteDroppedPostButRunning(t *testing.T) {
	var mu sync.Mutex
	var posts int
	var running bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost {
			posts++
			running = true
			// The agent accepted the command, then the connection dropped.
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		list := wire.CommandList{}
		if running {
			list.Commands = []wire.CommandResult{{ID: "9", CommandName: "execute_deploy_step", CommandStatus: wire.StatusRunning}}
		}
		json.NewEncoder(w).Encode(list)
	}))
	defer srv.Close()

	res, err := newClient().Execute(context.Background(), Endpoint{URL: srv.URL, Token: token}, "deploy.execute_deploy_step", map[string]any{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "9" || res.CommandStatus != wire.StatusRunning {
		t.Fatalf("result = %+v", res)
	}
	if posts != 1 {
		t.Fatalf("POSTed %d times, want 1 (the command was already running)", posts)
	}
}

func TestCommands(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/commands/" || r.URL.Query().Get("agent_token") != token {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"commands":[{"id":"1","command_name":"get_deploy_steps","command_status":"SUCCEEDED","command_error":null,"command_result":{}},
			{"id":"2","command_name":"execute_deploy_step","command_status":"RUNNING","command_error":null,"command_result":{"progress":{"phase":"write","bytes_written":1048576}}}]}`))
	}))
	defer srv.Close()
	list, err := newClient().Commands(context.Background(), Endpoint{URL: srv.URL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	last := list.Last()
	var pr wire.ProgressResult
	if err := last.DecodeResult(&pr); err != nil || last.CommandName != "execute_deploy_step" || pr.Progress.BytesWritten != 1<<20 {
		t.Fatalf("last = %+v, progress %+v, %v", last, pr.Progress, err)
	}
}

func TestWaitPollsUntilTheCommandEnds(t *testing.T) {
	var mu sync.Mutex
	polls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		polls++
		status := wire.StatusRunning
		if polls >= 3 {
			status = wire.StatusSucceeded
		}
		json.NewEncoder(w).Encode(wire.CommandList{Commands: []wire.CommandResult{
			{ID: "1", CommandName: "get_partition_uuids", CommandStatus: wire.StatusSucceeded},
			{ID: "2", CommandName: "install_bootloader", CommandStatus: status},
		}})
	}))
	defer srv.Close()
	ep := Endpoint{URL: srv.URL, Token: token}
	res, err := newClient().Wait(context.Background(), ep, "install_bootloader", 5*time.Millisecond, 10)
	if err != nil || res.ID != "2" || res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("Wait = %+v, %v", res, err)
	}
	if polls != 3 {
		t.Fatalf("polled %d times, want 3", polls)
	}
	mu.Lock()
	polls = -100
	mu.Unlock()
	_, err = newClient().Wait(context.Background(), ep, "install_bootloader", time.Millisecond, 4)
	if !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Wait on a command that never ends: %v", err)
	}
}

func TestPinnedAgentCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(wire.CommandList{Commands: []wire.CommandResult{}})
	}))
	defer srv.Close()
	pemOf := func(s *httptest.Server) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	}
	c := newClient()
	defer c.Close()
	// Trusted through the agent's own certificate.
	if _, err := c.Commands(context.Background(), Endpoint{URL: srv.URL, Token: token, VerifyCA: pemOf(srv)}); err != nil {
		t.Fatalf("pinned certificate refused: %v", err)
	}
	// Without the pin the self-signed agent is not trusted.
	if _, err := c.Commands(context.Background(), Endpoint{URL: srv.URL, Token: token}); err == nil {
		t.Fatal("unpinned self-signed agent accepted")
	}
	// Another certificate (a different agent boot) is refused.
	_, err := c.Commands(context.Background(), Endpoint{URL: srv.URL, Token: token, VerifyCA: selfSigned(t)})
	if err == nil || strings.Contains(err.Error(), token) {
		t.Fatalf("a different pinned certificate: %v", err)
	}
	if _, err := c.Execute(context.Background(), Endpoint{URL: srv.URL, Token: token, VerifyCA: []byte("junk")}, "log.collect_system_logs", nil, true); !errors.Is(err, ErrBadCertificate) {
		t.Fatalf("junk certificate: %v", err)
	}
}

// selfSigned makes a certificate shaped like IPA's auto-TLS one: self
// signed, one IP SAN, no basic constraints.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestCommandBodyIsTheRequestEncoded checks that the request body written
// around the encoded params is compact JSON, HTML escaped, that decodes to
// what encoding wire.CommandRequest gives (its keys in any order), for
// params with characters JSON escapes, nested raw JSON and values whose
// MarshalJSON is not compact; without maps it is byte for byte the same.
func TestCommandBodyIsTheRequestEncoded(t *testing.T) {
	type spaced struct{ json.Marshaler }
	type mapless struct {
		Raw  json.RawMessage `json:"raw"`
		Text string          `json:"text"`
	}
	cases := []struct {
		name   string
		params any
		exact  bool // no map in params: the bytes are encoding/json's
	}{
		{"standby.prepare_image", map[string]any{"image_info": map[string]any{"id": "<&>", "urls": []string{"http://h/a?b=1&c=2"}}}, false},
		{"deploy.get_deploy_steps", map[string]any{"node": json.RawMessage(`{ "uuid" : "x<y" , "n": [1, 2.50] }`), "ports": []any{}}, false},
		{"clean.execute_clean_step", map[string]any{"step": spaced{rawMarshaler(`{ "a" :  "\u2028" }`)}}, false},
		{`weird"name\<>`, map[string]any{}, false},
		{"standby.sync", struct{}{}, true},
		{"deploy.execute_deploy_step", deployStepParams(), false},
		{"deploy.get_deploy_steps", wire.GetStepsParams{Node: deployStepParams().Node, Ports: deployStepParams().Ports}, false},
		{"x.mapless", mapless{Raw: json.RawMessage(`{"b": 1, "a": "<"}`), Text: "a&b"}, true},
	}
	for _, c := range cases {
		got, err := commandBody(c.name, c.params)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		p, err := json.Marshal(c.params)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(wire.CommandRequest{Name: c.name, Params: p})
		if err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, got); err != nil || compact.String() != string(got) {
			t.Errorf("%s: body is not compact JSON (%v): %s", c.name, err, got)
		}
		if bytes.ContainsAny(got, "<>&") || bytes.Contains(got, []byte("\u2028")) != bytes.Contains(want, []byte("\u2028")) {
			t.Errorf("%s: not escaped as encoding/json escapes: %s", c.name, got)
		}
		var gotV, wantV any
		if err := json.Unmarshal(got, &gotV); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &wantV); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotV, wantV) {
			t.Errorf("%s:\n got  %s\n want %s", c.name, got, want)
		}
		if c.exact && string(got) != string(want) {
			t.Errorf("%s: without maps, got %s, want %s", c.name, got, want)
		}
	}
	if _, err := commandBody("x", map[string]any{"f": func() {}}); err == nil {
		t.Error("params that cannot be encoded gave a body")
	}
}

// rawMarshaler encodes as its text, spaces and all.
type rawMarshaler string

func (r rawMarshaler) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// deployStepParams is a write_image command's params as the conductor
// sends them: the step with its image info (a Marshaler), a node document
// with masked and nested fields, the ports, the agent's versions.
func deployStepParams() wire.ExecuteStepParams {
	prio := 80
	qcow2 := "qcow2"
	args, err := json.Marshal(wire.WriteImageArgs{ImageInfo: wire.ImageInfo{ID: "img<1>", URLs: []string{"http://h/i.qcow2?a=1&b=2"},
		DiskFormat: &qcow2, Checksum: "abc", OSHashAlgo: "sha512", OSHashVal: "def", RootGB: 10}})
	if err != nil {
		panic(err)
	}
	node := map[string]any{"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "id": int64(7), "name": nil,
		"driver_info":          map[string]any{"ipmi_password": wire.Masked, "ipmi_address": "127.0.0.1"},
		"driver_internal_info": map[string]any{"agent_url": "http://127.0.0.1:9999", "deploy_steps": []any{map[string]any{"step": "write_image", "priority": 80.0}}, "clean_after": 1.5e-7},
		"instance_info":        map[string]any{"image_source": "http://h/i", "root_gb": 10.0, "configdrive": wire.Masked},
		"traits":               map[string]any{"objects": []any{map[string]any{"trait": "CUSTOM_\u2028"}}},
		"provision_updated_at": "2026-12-06T04:00:00.000000", "maintenance": false}
	ports := []map[string]any{{"address": "52:54:00:12:34:56", "pxe_enabled": true, "local_link_connection": map[string]any{}}}
	return wire.DeployStepKind.ExecuteStepParams(wire.PlannedStep{Step: "write_image", Priority: &prio, Interface: "deploy", Args: args},
		node, ports, wire.HardwareManagerVersion{"name": "generic_hardware_manager", "version": "1.2"})
}

// TestConnectionsToAgentsAreKept checks that the default client keeps the
// connections of concurrent commands to agents behind one address for the
// next commands: eight commands at once, twice, open eight connections,
// where the default transport (two idle per address) would dial six more.
func TestConnectionsToAgentsAreKept(t *testing.T) {
	const n = 8
	var (
		mu      sync.Mutex
		dialled int
		arrived = make(chan struct{}, n)
		release = make(chan struct{})
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		r0 := release
		mu.Unlock()
		arrived <- struct{}{}
		<-r0
		json.NewEncoder(w).Encode(wire.CommandResult{ID: "1", CommandName: "sync", CommandStatus: wire.StatusSucceeded})
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			dialled++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	c := newClient()
	defer c.Close()
	for round := range 2 {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each command as if from its own agent behind the address.
				_, err := c.Execute(context.Background(), Endpoint{URL: srv.URL + "/agent" + string(rune('a'+i)), Token: token}, "standby.sync", nil, true)
				errs <- err
			}()
		}
		for range n {
			<-arrived // all n in flight at once: n connections
		}
		mu.Lock()
		close(release)
		mu.Unlock()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		mu.Lock()
		release = make(chan struct{})
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	if dialled != n {
		t.Errorf("%d connections for two rounds of %d concurrent commands; want %d, kept between rounds", dialled, n, n)
	}
}

// TestCommandBodiesAreTheirOwn: bodies encoded at once, through the
// shared buffers, each decode to their own params, and stay so after the
// buffers are reused.
func TestCommandBodiesAreTheirOwn(t *testing.T) {
	const workers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bodies [][]byte
			for i := range each {
				params := map[string]any{"id": fmt.Sprintf("%d-%d", w, i), "pad": strings.Repeat("x", 100*(i%50))}
				b, err := commandBody("x.y", params)
				if err != nil {
					errs <- err
					return
				}
				bodies = append(bodies, b)
			}
			for i, b := range bodies {
				var req struct {
					Params struct {
						ID string `json:"id"`
					} `json:"params"`
				}
				if err := json.Unmarshal(b, &req); err != nil || req.Params.ID != fmt.Sprintf("%d-%d", w, i) {
					errs <- fmt.Errorf("body %d of worker %d: id %q (%v): %.80s", i, w, req.Params.ID, err, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
