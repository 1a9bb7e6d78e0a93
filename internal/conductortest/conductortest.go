// Package conductortest runs a rivet-conductor in process for tests: on
// 127.0.0.1, SQLite in the test's temporary directory, the fake-hardware
// driver whose nodes boot a fake agent (conductor/fakeagent) when powered
// on from the network, and a 1 MiB image served under /images/. It stops,
// restarts on the same database and reads the database directly, and it
// drives the API as Ironic's clients do: calls at a microversion, nodes
// enrolled and made available, provision actions retried while the node is
// locked, waits for a provision or power state. Logger gives tests a
// logger that writes to the test's output.
package conductortest

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
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
	"github.com/rivetmetal/rivet/wire"
)

// MAC is the MAC address of the port EnrollNode gives node n1.
const MAC = "52:54:00:12:34:56"

// Harness is a conductor on 127.0.0.1 with the fake-hardware driver, whose
// nodes boot a fake agent when powered on from the network. It is not
// running until Start.
type Harness struct {
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

// New prepares a harness whose machines boot agents configured like
// agentCfg; the conductor and the agents are stopped when the test ends.
func New(t *testing.T, agentCfg fakeagent.Config) *Harness {
	t.Helper()
	h := &Harness{t: t, dir: t.TempDir()}
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
	h.machines = fakeagent.NewMachines(drv, agentCfg, h.URL)
	t.Cleanup(h.Close)
	return h
}

// Agent is the last agent booted (nil if none).
func (h *Harness) Agent() *fakeagent.Agent { return h.machines.Last() }

// Driver is the fake-hardware driver of the nodes.
func (h *Harness) Driver() *fake.Driver { return h.drv }

// Machines are the fake machines, to change the agents booted from now on.
func (h *Harness) Machines() *fakeagent.Machines { return h.machines }

// Image is the image served under /images/disk.raw.
func (h *Harness) Image() []byte { return h.image }

// Dir is the harness's directory: the database, images/, state/.
func (h *Harness) Dir() string { return h.dir }

// Config is the conductor configuration Start takes by default: short
// intervals and timeouts fit for tests, and automated cleaning turned off
// (the conductor's default is on) so that provide and undeploy go straight
// to available; tests of cleaning turn it on.
func (h *Harness) Config() conductor.Config {
	return conductor.Config{
		Listen:   "127.0.0.1:0",
		DBPath:   filepath.Join(h.dir, "rivet.db"),
		ImageDir: filepath.Join(h.dir, "images"),
		Drivers:  []power.Driver{h.drv},
		Provision: provision.Config{
			CallbackTimeout:       30 * time.Second,
			CheckInterval:         50 * time.Millisecond,
			ProgressPollInterval:  50 * time.Millisecond,
			PowerOffRetries:       5,
			PowerOffInterval:      20 * time.Millisecond,
			PowerStateInterval:    10 * time.Millisecond,
			PowerStateTimeout:     2 * time.Second,
			CommandWaitInterval:   20 * time.Millisecond,
			StateDir:              filepath.Join(h.dir, "state"),
			DisableAutomatedClean: true,
		},
		Agent:  agentclient.Config{Timeout: 5 * time.Second, RetryDelay: 10 * time.Millisecond},
		Logger: Logger(h.t),
	}
}

// Start runs a conductor; the harness stops it on cleanup.
func (h *Harness) Start(cfg conductor.Config) *conductor.Conductor {
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

// Stop stops the running conductor and waits for it.
func (h *Harness) Stop() {
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

// Restart stops the running conductor and starts another on the same
// database with cfg; the last agent booted is pointed at it.
func (h *Harness) Restart(cfg conductor.Config) *conductor.Conductor {
	h.t.Helper()
	h.Stop()
	c := h.Start(cfg)
	if a := h.Agent(); a != nil {
		a.SetAPIURL(h.URL())
	}
	return c
}

// StoredNode reads a node straight from the database (while no conductor
// runs, what the next one will find).
func (h *Harness) StoredNode(ident string) *store.Node {
	h.t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(h.dir, "rivet.db"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer st.Close()
	n, err := st.GetNode(context.Background(), ident)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// Close stops the conductor and every running agent; the test's cleanup
// calls it too.
func (h *Harness) Close() {
	h.Stop()
	h.machines.Close()
}

// URL is the running conductor's API URL ("" before the first Start).
func (h *Harness) URL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.url
}

// Call does an API request with microversion 1.82 and decodes a JSON answer
// into out (when non-nil).
func (h *Harness) Call(method, path string, body any, out any) int {
	h.t.Helper()
	return h.CallVersion("1.82", method, path, body, out)
}

// CallVersion does an API request at microversion ver ("" for none) and
// decodes a JSON answer into out (when non-nil); it returns the status.
func (h *Harness) CallVersion(ver, method, path string, body any, out any) int {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.URL()+path, rd)
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

// CreateNode creates node n1 (fake-hardware) with a port of address MAC,
// in enroll, and returns its UUID.
func (h *Harness) CreateNode() string {
	h.t.Helper()
	var node map[string]any
	if st := h.Call("POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "fake-hardware"}, &node); st != http.StatusCreated {
		h.t.Fatalf("create node: %d %v", st, node)
	}
	uuid := node["uuid"].(string)
	if st := h.Call("POST", "/v1/ports", map[string]any{"address": MAC, "node_uuid": uuid}, nil); st != http.StatusCreated {
		h.t.Fatalf("create port: %d", st)
	}
	return uuid
}

// EnrollNode creates node n1 with a port and makes it available; it
// returns its UUID.
func (h *Harness) EnrollNode() string {
	h.t.Helper()
	uuid := h.CreateNode()
	h.Provision("n1", "manage", nil)
	h.WaitState("n1", "manageable", 10*time.Second)
	h.Provision("n1", "provide", nil)
	h.WaitState("n1", "available", 10*time.Second)
	return uuid
}

// Provision asks for a provision action; like Ironic's clients it retries
// while the node is locked by heartbeat processing (409).
func (h *Harness) Provision(node, target string, configdrive any) {
	h.t.Helper()
	body := map[string]any{"target": target}
	if configdrive != nil {
		body["configdrive"] = configdrive
	}
	h.RetryOn409("PUT", "/v1/nodes/"+node+"/states/provision", body)
}

// RetryOn409 sends a request that must be accepted (202), retrying for a
// few seconds while the node is locked (409).
func (h *Harness) RetryOn409(method, path string, body any) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var errBody map[string]any
		st := h.Call(method, path, body, &errBody)
		if st == http.StatusAccepted {
			return
		}
		if st != http.StatusConflict || time.Now().After(deadline) {
			h.t.Fatalf("%s %s %v: %d %v", method, path, body, st, errBody)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SetImage points the node's instance_info at the harness image served by
// the conductor itself.
func (h *Harness) SetImage(node string) {
	h.t.Helper()
	h.SetImageURL(node, h.URL()+"/images/disk.raw")
}

// SetImageURL points the node's instance_info at the harness image at url.
func (h *Harness) SetImageURL(node, url string) {
	h.t.Helper()
	sum := sha256.Sum256(h.image)
	patch := []map[string]any{
		{"op": "add", "path": "/instance_info/image_source", "value": url},
		{"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
		{"op": "add", "path": "/instance_info/image_os_hash_value", "value": hex.EncodeToString(sum[:])},
		{"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
	}
	var out map[string]any
	if st := h.Call("PATCH", "/v1/nodes/"+node, patch, &out); st != http.StatusOK {
		h.t.Fatalf("patch: %d %v", st, out)
	}
}

// Node is the node's API document.
func (h *Harness) Node(ident string) map[string]any {
	h.t.Helper()
	var n map[string]any
	if st := h.Call("GET", "/v1/nodes/"+ident, nil, &n); st != http.StatusOK {
		h.t.Fatalf("get node %s: %d %v", ident, st, n)
	}
	return n
}

// WaitState polls the node until its provision state is want; it fails
// the test on a different stable state or after timeout.
func (h *Harness) WaitState(ident, want string, timeout time.Duration) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := h.Node(ident)
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

// WaitFor polls done every 10 ms until it reports true; after timeout it
// fails the test, saying what was waited for.
func (h *Harness) WaitFor(what string, timeout time.Duration, done func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			h.t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitInternal polls the node until its driver_internal_info satisfies
// cond, and returns the node; after timeout it fails the test.
func (h *Harness) WaitInternal(ident, what string, timeout time.Duration, cond func(dii map[string]any) bool) map[string]any {
	h.t.Helper()
	var n map[string]any
	h.WaitFor(what, timeout, func() bool {
		n = h.Node(ident)
		return cond(Internal(n))
	})
	return n
}

// WaitPower polls the node until its power state is want.
func (h *Harness) WaitPower(ident, want string, timeout time.Duration) map[string]any {
	h.t.Helper()
	var n map[string]any
	h.WaitFor("node "+ident+" to reach power state "+want, timeout, func() bool {
		n = h.Node(ident)
		return n["power_state"] == want
	})
	return n
}

// Internal is a node document's driver_internal_info.
func Internal(n map[string]any) map[string]any {
	m, _ := n["driver_internal_info"].(map[string]any)
	return m
}

// IronicFault decodes an Ironic error body.
func IronicFault(t *testing.T, body map[string]any) wire.IronicFault {
	t.Helper()
	msg, ok := body["error_message"].(string)
	if !ok {
		t.Fatalf("not an Ironic error body: %v", body)
	}
	return wire.IronicError{ErrorMessage: msg}.Fault()
}

// Logger logs to the test's output: warnings and errors, everything down
// to debug when -v is given.
func Logger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
