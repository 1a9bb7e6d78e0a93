package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// fakePower records power actions instead of performing them.
type fakePower struct {
	mu      sync.Mutex
	actions []string
}

func (p *fakePower) Sync() { p.record("sync") }
func (p *fakePower) PowerOff() error {
	p.record("power off")
	return nil
}
func (p *fakePower) Reboot() error {
	p.record("reboot")
	return nil
}
func (p *fakePower) record(s string) {
	p.mu.Lock()
	p.actions = append(p.actions, s)
	p.mu.Unlock()
}
func (p *fakePower) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.actions...)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startAgent runs an agent on 127.0.0.1 with a random port until the test
// ends, and returns its base URL.
func startAgent(t *testing.T, cfg Config, power PowerController) (*Agent, string) {
	t.Helper()
	return startAgentWith(t, cfg, Options{Power: power})
}

// startAgentWith is startAgent with the agent's options; the logger
// defaults to the test's.
func startAgentWith(t *testing.T, cfg Config, opts Options) (*Agent, string) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	cfg.ListenHost = "127.0.0.1"
	cfg.ListenPort = freePort(t)
	if cfg.AdvertiseHost == "" {
		cfg.AdvertiseHost = "127.0.0.1"
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent exited early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("agent not ready after 60 s")
	}
	return a, "http://" + a.Addr().String()
}

func standaloneConfig(devices ...string) Config {
	cfg := DefaultConfig()
	cfg.Standalone = true
	cfg.BlockDevices = devices
	return cfg
}

type client struct {
	t     *testing.T
	base  string
	token string
	// hc makes the requests; nil means http.DefaultClient.
	hc *http.Client
}

// tlsClient trusts only the agent's auto-TLS certificate, as Ironic does
// with agent_verify_ca.
func tlsClient(t *testing.T, pem string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pem)) {
		t.Fatalf("agent_verify_ca is not a PEM certificate: %q", pem)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (c client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.hc
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// run posts a command and decodes the result; it fails the test on a
// non-200 answer.
func (c client) run(name string, params any, wait bool) wire.CommandResult {
	c.t.Helper()
	st, b := c.post(name, params, wait)
	if st != http.StatusOK {
		c.t.Fatalf("POST %s: HTTP %d: %s", name, st, b)
	}
	var r wire.CommandResult
	if err := json.Unmarshal(b, &r); err != nil {
		c.t.Fatalf("POST %s: %v: %s", name, err, b)
	}
	return r
}

func (c client) post(name string, params any, wait bool) (int, []byte) {
	q := "?wait=false"
	if wait {
		q = "?wait=true"
	}
	if c.token != "" {
		q += "&agent_token=" + c.token
	}
	return c.do(http.MethodPost, "/v1/commands/"+q, map[string]any{"name": name, "params": params})
}

func (c client) list() []wire.CommandResult {
	c.t.Helper()
	st, b := c.do(http.MethodGet, "/v1/commands/", nil)
	if st != http.StatusOK {
		c.t.Fatalf("GET commands: %d %s", st, b)
	}
	var l wire.CommandList
	if err := json.Unmarshal(b, &l); err != nil {
		c.t.Fatal(err)
	}
	return l.Commands
}

// waitDone polls the command list until the last command is finished.
func (c client) waitDone() wire.CommandResult {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		l := c.list()
		if last := l[len(l)-1]; last.CommandStatus.Finished() {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("command still running after 2 minutes")
	return wire.CommandResult{}
}

func fault(t *testing.T, b []byte) wire.Fault {
	t.Helper()
	var f wire.Fault
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("not a fault body: %s", b)
	}
	return f
}

func mustContain(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("%s = %q, want it to contain %q", what, got, want)
	}
}
