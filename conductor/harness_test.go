package conductor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/wire"
)

const testMAC = "52:54:00:12:34:56"

// harness is a conductor on 127.0.0.1 with the fake-hardware driver, whose
// nodes boot a fake agent when powered on from the network.
type harness struct {
	t        *testing.T
	dir      string
	drv      *fake.Driver
	machines *fakeagent.Machines
	image    []byte

	mu   sync.Mutex
	url  string
	cond *running
}

type running struct {
	c      *conductor.Conductor
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, agentCfg fakeagent.Config) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir()}
	if err := os.Mkdir(filepath.Join(h.dir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.image = bytes.Repeat([]byte("rivet-test-image"), 64<<10) // 1 MiB
	if err := os.WriteFile(filepath.Join(h.dir, "images", "disk.raw"), h.image, 0o644); err != nil {
		t.Fatal(err)
	}
	drv, err := fake.New(fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h.drv = drv
	h.machines = fakeagent.NewMachines(drv, agentCfg, h.baseURL)
	t.Cleanup(h.close)
	return h
}

// agent is the last agent booted (nil if none).
func (h *harness) agent() *fakeagent.Agent { return h.machines.Last() }

func (h *harness) config() conductor.Config {
	return conductor.Config{
		Listen:   "127.0.0.1:0",
		DBPath:   filepath.Join(h.dir, "rivet.db"),
		ImageDir: filepath.Join(h.dir, "images"),
		Drivers:  []power.Driver{h.drv},
		Provision: provision.Config{
			CallbackTimeout:      30 * time.Second,
			CheckInterval:        50 * time.Millisecond,
			ProgressPollInterval: 50 * time.Millisecond,
			PowerOffRetries:      5,
			PowerOffInterval:     20 * time.Millisecond,
			PowerStateInterval:   10 * time.Millisecond,
			PowerStateTimeout:    2 * time.Second,
			CommandWaitInterval:  20 * time.Millisecond,
			StateDir:             filepath.Join(h.dir, "state"),
		},
		Agent:  agentclient.Config{Timeout: 5 * time.Second, RetryDelay: 10 * time.Millisecond},
		Logger: testLogger(h.t),
	}
}

// start runs a conductor; the harness stops it on cleanup.
func (h *harness) start(cfg conductor.Config) *conductor.Conductor {
	h.t.Helper()
	c, err := conductor.New(context.Background(), cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	h.mu.Lock()
	h.url, h.cond = c.URL(), r
	h.mu.Unlock()
	return c
}

// stop stops the running conductor and waits for it.
func (h *harness) stop() {
	h.mu.Lock()
	r := h.cond
	h.cond = nil
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			h.t.Errorf("conductor Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Error("conductor did not stop")
	}
}

func (h *harness) close() {
	h.stop()
	h.machines.Close()
}

func (h *harness) baseURL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.url
}

// call does an API request with microversion 1.82 and decodes a JSON answer
// into out (when non-nil).
func (h *harness) call(method, path string, body any, out any) int {
	h.t.Helper()
	return h.callVersion("1.82", method, path, body, out)
}

func (h *harness) callVersion(ver, method, path string, body any, out any) int {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.baseURL()+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if ver != "" {
		req.Header.Set(wire.APIVersionHeader, ver)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			h.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

// enrollNode creates node n1 with a port and makes it available.
func (h *harness) enrollNode() string {
	h.t.Helper()
	var node map[string]any
	if st := h.call("POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "fake-hardware"}, &node); st != http.StatusCreated {
		h.t.Fatalf("create node: %d %v", st, node)
	}
	uuid := node["uuid"].(string)
	if st := h.call("POST", "/v1/ports", map[string]any{"address": testMAC, "node_uuid": uuid}, nil); st != http.StatusCreated {
		h.t.Fatalf("create port: %d", st)
	}
	h.provision("n1", "manage", nil)
	h.waitState("n1", "manageable", 10*time.Second)
	h.provision("n1", "provide", nil)
	h.waitState("n1", "available", 10*time.Second)
	return uuid
}

// provision asks for a provision action; like Ironic's clients it retries
// while the node is locked by heartbeat processing (409).
func (h *harness) provision(node, target string, configdrive any) {
	h.t.Helper()
	body := map[string]any{"target": target}
	if configdrive != nil {
		body["configdrive"] = configdrive
	}
	h.retryOn409("PUT", "/v1/nodes/"+node+"/states/provision", body)
}

// retryOn409 sends a request that must be accepted (202), retrying for a
// few seconds while the node is locked (409).
func (h *harness) retryOn409(method, path string, body any) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var errBody map[string]any
		st := h.call(method, path, body, &errBody)
		if st == http.StatusAccepted {
			return
		}
		if st != http.StatusConflict || time.Now().After(deadline) {
			h.t.Fatalf("%s %s %v: %d %v", method, path, body, st, errBody)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setImage points the node's instance_info at the harness image served by
// the conductor itself.
func (h *harness) setImage(node string) {
	h.t.Helper()
	h.setImageURL(node, h.baseURL()+"/images/disk.raw")
}

// setImageURL points the node's instance_info at the harness image at url.
func (h *harness) setImageURL(node, url string) {
	h.t.Helper()
	sum := sha256.Sum256(h.image)
	patch := []map[string]any{
		{"op": "add", "path": "/instance_info/image_source", "value": url},
		{"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
		{"op": "add", "path": "/instance_info/image_os_hash_value", "value": hex.EncodeToString(sum[:])},
		{"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
	}
	var out map[string]any
	if st := h.call("PATCH", "/v1/nodes/"+node, patch, &out); st != http.StatusOK {
		h.t.Fatalf("patch: %d %v", st, out)
	}
}

func (h *harness) node(ident string) map[string]any {
	h.t.Helper()
	var n map[string]any
	if st := h.call("GET", "/v1/nodes/"+ident, nil, &n); st != http.StatusOK {
		h.t.Fatalf("get node %s: %d %v", ident, st, n)
	}
	return n
}

// waitState polls the node until its provision state is want; it fails
// the test on a different stable state or after timeout.
func (h *harness) waitState(ident, want string, timeout time.Duration) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := h.node(ident)
		st := n["provision_state"]
		if st == want {
			return n
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("node %s: provision state %v (target %v, last_error %v), waited %s for %q",
				ident, st, n["target_provision_state"], n["last_error"], timeout, want)
		}
		if n["target_provision_state"] == nil && st != want {
			h.t.Fatalf("node %s settled in %v (last_error %v), want %q", ident, st, n["last_error"], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPower polls the node until its power state is want.
func (h *harness) waitPower(ident, want string, timeout time.Duration) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := h.node(ident)
		if n["power_state"] == want {
			return n
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("node %s: power state %v after %s, want %q", ident, n["power_state"], timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func internal(n map[string]any) map[string]any {
	m, _ := n["driver_internal_info"].(map[string]any)
	return m
}

// ironicFault decodes an Ironic error body.
func ironicFault(t *testing.T, body map[string]any) wire.IronicFault {
	t.Helper()
	msg, ok := body["error_message"].(string)
	if !ok {
		t.Fatalf("not an Ironic error body: %v", body)
	}
	return wire.IronicError{ErrorMessage: msg}.Fault()
}

// testLogger logs to the test output at debug level when -v is given.
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
