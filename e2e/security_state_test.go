//go:build linux

package e2e

// The attacker's side of the conductor's state (docs/security.md,
// "Conductor state"), against the real rivet-conductor binary: a stale
// conductor resumed after losing its lease (two conductors on a real
// PostgreSQL), and attempts to steal a running deploy's agent token (a
// real TLS listener and a real htpasswd file). Each test asserts the
// refusal and that nothing was served, written, called or leaked.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/store/postgres/pgtest"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"github.com/rivetmetal/rivet/internal/testpki"
	"github.com/rivetmetal/rivet/wire"
)

// stateConductorBin is the conductor binary `make test` builds.
func stateConductorBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(vmtest.RepoRoot(t), "build/bin/rivet-conductor")
	if _, err := os.Stat(bin); err != nil {
		vmtest.Unavailable(t, "%s is missing: run `make build` (make test builds it)", bin)
	}
	return bin
}

// stateProc is a rivet-conductor process of these tests.
type stateProc struct {
	name, url, log string
	cmd            *exec.Cmd
	exited         chan struct{}
}

// startStateConductor runs the conductor binary on a free loopback port
// with args, logging to dir/name.log, and waits until its API answers
// (through client, for a TLS listener). It is killed when the test ends.
func startStateConductor(t *testing.T, bin, dir, name string, client *http.Client, scheme string, args ...string) *stateProc {
	t.Helper()
	port := freePort(t)
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--state-dir", filepath.Join(dir, name)}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	p := &stateProc{name: name, url: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port), log: logPath, cmd: cmd,
		exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // also ends a stopped process
		<-p.exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 120 {
				lines = lines[len(lines)-120:]
			}
			t.Logf("--- last lines of %s's log:\n%s", name, strings.Join(lines, "\n"))
		}
	})
	if client == nil {
		client = http.DefaultClient
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(p.url + "/")
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("conductor %s exited:\n%s", name, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("conductor %s not serving after 60 s: %v", name, err)
		}
	}
}

// logHas reports whether the process's log has a line containing all of
// parts.
func (p *stateProc) logHas(parts ...string) bool {
	f, err := os.Open(p.log)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(line, s) }) {
			return true
		}
	}
	return false
}

// stateAPI calls a conductor's API at microversion 1.82, with basic
// credentials when user is set.
type stateAPI struct {
	t          *testing.T
	base       string
	client     *http.Client
	user, pass string
}

func (a stateAPI) do(method, path string, body any) (int, []byte) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set(wire.APIVersionHeader, "1.82")
	req.Header.Set("Content-Type", "application/json")
	if a.user != "" {
		req.SetBasicAuth(a.user, a.pass)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// must calls and decodes, failing unless the status is want.
func (a stateAPI) must(want int, method, path string, body any) map[string]any {
	a.t.Helper()
	st, data := a.do(method, path, body)
	if st != want {
		a.t.Fatalf("%s %s: %d, want %d: %s", method, path, st, want, data)
	}
	out := map[string]any{}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return out
}

func (a stateAPI) node(ident string) map[string]any {
	a.t.Helper()
	return a.must(http.StatusOK, "GET", "/v1/nodes/"+ident, nil)
}

// waitState waits for a node's provision state (a liveness bound).
func (a stateAPI) waitState(ident, want string, limit time.Duration) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		n := a.node(ident)
		if n["provision_state"] == want {
			return n
		}
		if n["provision_state"] == "deploy failed" && want != "deploy failed" {
			a.t.Fatalf("node %s failed: %v", ident, n["last_error"])
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("node %s in %v after %s, want %s (last_error %v)", ident, n["provision_state"], limit, want, n["last_error"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// enroll creates a fake-hardware node with one port and makes it
// available; it returns its UUID.
func (a stateAPI) enroll(name, mac string) string {
	a.t.Helper()
	n := a.must(http.StatusCreated, "POST", "/v1/nodes", map[string]any{"name": name, "driver": fake.Name})
	uuid := n["uuid"].(string)
	a.must(http.StatusCreated, "POST", "/v1/ports", map[string]any{"address": mac, "node_uuid": uuid})
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/"+uuid+"/states/provision", map[string]any{"target": "manage"})
	a.waitState(uuid, "manageable", time.Minute)
	a.must(http.StatusAccepted, "PUT", "/v1/nodes/"+uuid+"/states/provision", map[string]any{"target": "provide"})
	a.waitState(uuid, "available", time.Minute)
	return uuid
}

// setImage points a node at image, served by srv.
func (a stateAPI) setImage(uuid string, srv *httptest.Server, image []byte) {
	a.t.Helper()
	sum := sha256.Sum256(image)
	a.must(http.StatusOK, "PATCH", "/v1/nodes/"+uuid, []map[string]any{
		{"op": "add", "path": "/instance_info/image_source", "value": srv.URL + "/disk.raw"},
		{"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
		{"op": "add", "path": "/instance_info/image_os_hash_value", "value": hex.EncodeToString(sum[:])},
		{"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
	})
}

// stateImageServer serves image as /disk.raw on 127.0.0.1.
func stateImageServer(t *testing.T, image []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "disk.raw", time.Time{}, bytes.NewReader(image))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// stateBalancer is the one API address agents are given, as a load stateBalancer
// in front of the conductors: requests go to the live backends in turn;
// a backend taken out (down) gets no new request, and taking it out waits
// for the requests it is serving.
type stateBalancer struct {
	client *http.Client

	mu       sync.Mutex
	cond     *sync.Cond
	backends []string
	down     map[string]bool
	inflight map[string]int
	next     int
}

func newStateBalancer(backends ...string) *stateBalancer {
	b := &stateBalancer{client: &http.Client{Timeout: 30 * time.Second}, backends: backends,
		down: map[string]bool{}, inflight: map[string]int{}}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// takeOut stops sending requests to backend and waits for those under way.
func (b *stateBalancer) takeOut(backend string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[backend] = true
	for b.inflight[backend] > 0 {
		b.cond.Wait()
	}
}

func (b *stateBalancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var lastErr error
	for range b.backends {
		b.mu.Lock()
		backend := b.backends[b.next%len(b.backends)]
		b.next++
		if b.down[backend] {
			b.mu.Unlock()
			continue
		}
		b.inflight[backend]++
		b.mu.Unlock()
		done := func() {
			b.mu.Lock()
			b.inflight[backend]--
			b.cond.Broadcast()
			b.mu.Unlock()
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, backend+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			done()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := b.client.Do(req)
		if err != nil {
			done()
			lastErr = err
			continue
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		resp.Body.Close()
		done()
		return
	}
	http.Error(w, fmt.Sprintf("no conductor reachable: %v", lastErr), http.StatusBadGateway)
}

// stateAuditSQL records every write to the nodes and node_leases tables with
// the application_name of the connection that made it: each conductor
// connects under its own name.
const stateAuditSQL = `
CREATE TABLE rivet_test_audit (
	id       BIGSERIAL PRIMARY KEY,
	at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
	app      TEXT NOT NULL,
	tbl      TEXT NOT NULL,
	op       TEXT NOT NULL,
	node_id  BIGINT,
	detail   TEXT
);
CREATE FUNCTION rivet_test_audit_nodes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		INSERT INTO rivet_test_audit (app, tbl, op, node_id, detail)
		VALUES (current_setting('application_name'), TG_TABLE_NAME, TG_OP, OLD.id, OLD.provision_state);
	ELSE
		INSERT INTO rivet_test_audit (app, tbl, op, node_id, detail)
		VALUES (current_setting('application_name'), TG_TABLE_NAME, TG_OP, NEW.id, NEW.provision_state);
	END IF;
	RETURN NULL;
END $$;
CREATE FUNCTION rivet_test_audit_leases() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		INSERT INTO rivet_test_audit (app, tbl, op, node_id, detail)
		VALUES (current_setting('application_name'), TG_TABLE_NAME, TG_OP, OLD.node_id, OLD.owner || '/' || OLD.generation);
	ELSE
		INSERT INTO rivet_test_audit (app, tbl, op, node_id, detail)
		VALUES (current_setting('application_name'), TG_TABLE_NAME, TG_OP, NEW.node_id, NEW.owner || '/' || NEW.generation);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER rivet_test_audit AFTER INSERT OR UPDATE OR DELETE ON nodes
	FOR EACH ROW EXECUTE FUNCTION rivet_test_audit_nodes();
CREATE TRIGGER rivet_test_audit AFTER INSERT OR UPDATE OR DELETE ON node_leases
	FOR EACH ROW EXECUTE FUNCTION rivet_test_audit_leases();
`

// stateAuditRow is one recorded write.
type stateAuditRow struct {
	ID             int64
	App, Table, Op string
	NodeID         int64
	Detail         string
	At             time.Time
}

// statePowerCalls reads a fake-hardware call log, keeping the calls for node.
func statePowerCalls(t *testing.T, path, node string) []fake.Call {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []fake.Call
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var c fake.Call
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("power call log %s: %v: %q", path, err, line)
		}
		if c.Node == node {
			out = append(out, c)
		}
	}
	return out
}

// TestStaleConductorIsFencedOut runs two conductor processes on one real
// PostgreSQL database. The conductor that owns a deploying node is
// stopped (SIGSTOP) while it waits for the node to power off at the end
// of the deploy, past its lease; the other takes the node over and
// finishes the deploy; the first is then resumed (SIGCONT). It must make
// no write to the node (a trigger records every write with the writing
// conductor's connection name), no power call (the fake-hardware driver
// logs every call) and no agent call (the fake agent records each
// caller's User-Agent) for the node — and say in its log that its job
// stopped on the lost lease.
func TestStaleConductorIsFencedOut(t *testing.T) {
	if testing.Short() {
		t.Skip("two conductor processes and a PostgreSQL server, waiting out a lease: skipped in -short mode")
	}
	bin := stateConductorBin(t)
	ctx := context.Background()
	srv, err := pgtest.Start(ctx)
	if errors.Is(err, pgtest.ErrNoServer) {
		vmtest.Unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	dsn, err := srv.CreateDatabase(ctx, "rivet_fence")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	procs := map[string]*stateProc{}
	for _, name := range []string{"conductor-a", "conductor-b"} {
		procs[name] = startStateConductor(t, bin, dir, name, nil, "http",
			"--db", dsn+"&application_name="+name, "--conductor-name", name,
			"--cluster-lease-ttl", "6s", "--automated-clean=false", "--log-level", "debug",
			"--fake-power-call-log", filepath.Join(dir, name+"-power.jsonl"))
	}
	db, err := pgx.Connect(ctx, dsn+"&application_name=rivet-test")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, stateAuditSQL); err != nil {
		t.Fatalf("install the write audit: %v", err)
	}
	lb := newStateBalancer(procs["conductor-a"].url, procs["conductor-b"].url)
	proxy := httptest.NewServer(lb)
	defer proxy.Close()
	api := stateAPI{t: t, base: proxy.URL, client: &http.Client{Timeout: 30 * time.Second}}

	image := bytes.Repeat([]byte("rivet fencing test image "), 1<<14)
	images := stateImageServer(t, image)
	const mac = "52:54:00:fe:0c:01"
	uuid := api.enroll("n1", mac)
	api.setImage(uuid, images, image)
	api.must(http.StatusAccepted, "PUT", "/v1/nodes/"+uuid+"/states/provision", map[string]any{"target": "active"})
	api.waitState(uuid, "wait call-back", time.Minute)

	poweredOff := make(chan struct{}, 1)
	agent, err := fakeagent.Start(ctx, fakeagent.Config{APIURL: proxy.URL, MACs: []string{mac},
		HeartbeatInterval: 300 * time.Millisecond, WriteDuration: time.Second,
		OnPowerOff: func() {
			select {
			case poweredOff <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Stop()

	var nodeID int64
	if err := db.QueryRow(ctx, `SELECT id FROM nodes WHERE uuid = $1`, uuid).Scan(&nodeID); err != nil {
		t.Fatal(err)
	}
	lease := func() (owner string, gen int64) {
		t.Helper()
		if err := db.QueryRow(ctx, `SELECT owner, generation FROM node_leases WHERE node_id = $1`, nodeID).Scan(&owner, &gen); err != nil {
			t.Fatalf("read the lease: %v", err)
		}
		return owner, gen
	}
	audit := func(app string, after int64) []stateAuditRow {
		t.Helper()
		rows, err := db.Query(ctx, `SELECT id, app, tbl, op, COALESCE(node_id, 0), COALESCE(detail, ''), at
			FROM rivet_test_audit WHERE app = $1 AND id > $2 AND node_id = $3 ORDER BY id`, app, after, nodeID)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stateAuditRow, error) {
			var a stateAuditRow
			err := r.Scan(&a.ID, &a.App, &a.Table, &a.Op, &a.NodeID, &a.Detail, &a.At)
			return a, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	userAgent := func(name string) string { return "rivet-conductor (" + name + ")" }

	// The agent writes the image; at the end of the deploy the owner asks
	// it to power the node off (standby.power_off) and then polls the
	// node's power state: that is when the owner is stopped.
	select {
	case <-poweredOff:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the deploy did not reach tear_down_agent: %v (agent calls %v)", api.node(uuid)["provision_state"], agent.Calls())
	}
	owner, gen := lease()
	victim := procs[owner]
	if victim == nil {
		t.Fatalf("node leased to %q", owner)
	}
	survivor := procs["conductor-a"]
	if owner == "conductor-a" {
		survivor = procs["conductor-b"]
	}
	if c := agent.Callers(); len(c) == 0 || c[len(c)-1].Command != "standby.power_off" || c[len(c)-1].UserAgent != userAgent(victim.name) {
		t.Fatalf("standby.power_off did not come from the owner %s: %v", victim.name, c)
	}
	lb.takeOut(victim.url) // as a load stateBalancer would once it stops answering
	if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var markAudit int64
	if err := db.QueryRow(ctx, `SELECT COALESCE(max(id), 0) FROM rivet_test_audit`).Scan(&markAudit); err != nil {
		t.Fatal(err)
	}
	victimLog := filepath.Join(dir, victim.name+"-power.jsonl")
	markPower := len(statePowerCalls(t, victimLog, uuid))
	markAgent := len(agent.Callers())
	// The three records do attribute the victim's own work to it.
	if len(audit(victim.name, 0)) == 0 || markPower == 0 {
		t.Fatalf("before the stop: %d writes and %d power calls attributed to %s; the records cannot tell", len(audit(victim.name, 0)), markPower, victim.name)
	}
	t.Logf("%s owns the node (lease generation %d) and is stopped in tear_down_agent", victim.name, gen)

	stateWaitFor(t, "the other conductor takes the node over", 2*time.Minute, func() (bool, string) {
		o, g := lease()
		return o == survivor.name && g == gen+1, fmt.Sprintf("lease %s/%d", o, g)
	})
	t.Logf("%s took the node over %s after the stop", survivor.name, time.Since(stopped).Round(100*time.Millisecond))
	final := api.waitState(uuid, "active", 2*time.Minute)
	if le, _ := final["last_error"].(string); le != "" {
		t.Fatalf("last_error %q", le)
	}

	if err := victim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	// The victim's job wakes up in its power-state poll: the fence must
	// stop it before the call. Wait for that, or for any trace of it
	// acting for the node.
	violations := func() (writes []stateAuditRow, power []fake.Call, agentCalls []string) {
		writes = audit(victim.name, markAudit)
		if calls := statePowerCalls(t, victimLog, uuid); len(calls) > markPower {
			power = calls[markPower:]
		}
		for _, c := range agent.Callers()[markAgent:] {
			if c.UserAgent == userAgent(victim.name) {
				agentCalls = append(agentCalls, c.Command)
			}
		}
		return writes, power, agentCalls
	}
	stateWaitFor(t, "the resumed conductor's job stops on its lost lease", time.Minute, func() (bool, string) {
		w, p, a := violations()
		return victim.logHas("node job stopped", "no longer holds the node's lease", uuid) || len(w)+len(p)+len(a) > 0,
			"not in its log yet"
	})
	// Its cluster loop has run again since (two heartbeats recorded).
	var beat time.Time
	for range 2 {
		stateWaitFor(t, "the resumed conductor's cluster heartbeat", time.Minute, func() (bool, string) {
			var at time.Time
			if err := db.QueryRow(ctx, `SELECT heartbeat_at FROM conductors WHERE name = $1`, victim.name).Scan(&at); err != nil {
				return false, err.Error()
			}
			ok := at.After(resumed) && at.After(beat)
			if ok {
				beat = at
			}
			return ok, "heartbeat at " + at.String()
		})
	}

	// Within this window the lease has not moved back (which would be a
	// legitimate new lease): everything the victim did was under the lost
	// one.
	if o, g := lease(); o != survivor.name || g != gen+1 {
		t.Fatalf("the lease moved during the observation (%s/%d): inconclusive", o, g)
	}
	writes, power, agentCalls := violations()
	if len(writes) > 0 {
		t.Errorf("the stale conductor wrote to the node's rows after losing the lease: %+v", writes)
	}
	if len(power) > 0 {
		t.Errorf("the stale conductor made power calls after losing the lease: %+v", power)
	}
	if len(agentCalls) > 0 {
		t.Errorf("the stale conductor called the agent after losing the lease: %v", agentCalls)
	}
	var survivorCalls int
	for _, c := range agent.Callers()[markAgent:] {
		if c.UserAgent == userAgent(survivor.name) {
			survivorCalls++
		}
	}
	if survivorCalls == 0 || len(audit(survivor.name, markAudit)) == 0 {
		t.Errorf("the survivor's takeover is not in the records (%d agent calls)", survivorCalls)
	}
	if !victim.logHas("node job stopped", "no longer holds the node's lease", uuid) {
		t.Errorf("the resumed conductor's job did not stop on the fence")
	}
	if !victim.logHas("lease lost to another conductor", uuid) {
		t.Errorf("the resumed conductor did not notice its lost lease in its cluster loop")
	}
	if t.Failed() {
		return
	}
	t.Logf("resumed %s made no write, power call or agent call for the node (%d writes, %d power calls and %d agent calls before the stop)",
		victim.name, len(audit(victim.name, 0)), markPower, markAgent)
}

// stateRandom is 16 random bytes in hex.
func stateRandom(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestLookupTheftIsRefused plays an attacker on the provisioning network
// against a conductor serving TLS with http_basic users from a real
// htpasswd file, while a node waits for its deploy ramdisk: lookups by
// node_uuid alone, with wrong MACs or with another node's MAC, heartbeats
// without the token, unauthenticated writes and plain HTTP are refused;
// nothing is served (no node document, token or config drive), nothing
// is written, and the real agent then gets the token. A token replayed
// from another address cannot redirect the conductor: the callback URL
// stays pinned and the attacker's address is never called.
func TestLookupTheftIsRefused(t *testing.T) {
	bin := stateConductorBin(t)
	htpasswd, err := exec.LookPath("htpasswd")
	if err != nil {
		vmtest.Unavailable(t, "htpasswd not found (scripts/install-deps.sh test installs apache2-utils)")
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "rivet-test-ca")
	leaf := ca.Issue(t, dir, "conductor", "127.0.0.1")
	users := filepath.Join(dir, "htpasswd")
	pass := stateRandom(t)
	if out, err := exec.Command(htpasswd, "-c", "-B", "-b", users, "operator", pass).CombinedOutput(); err != nil {
		t.Fatalf("htpasswd: %v: %s", err, out)
	}
	tlsClient := &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	c := startStateConductor(t, bin, dir, "conductor", tlsClient, "https",
		"--tls-cert-file", leaf.CertFile, "--tls-key-file", leaf.KeyFile,
		"--auth-strategy", "http_basic", "--http-basic-auth-user-file", users,
		"--automated-clean=false")
	admin := stateAPI{t: t, base: c.url, client: tlsClient, user: "operator", pass: pass}
	attacker := stateAPI{t: t, base: c.url, client: tlsClient}

	// The attacker's own agent endpoint: nothing may ever call it.
	var attackerHits atomic.Int64
	lure := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer lure.Close()

	image := bytes.Repeat([]byte("rivet theft test image "), 1<<14)
	images := stateImageServer(t, image)
	const mac1, mac2 = "52:54:00:7e:57:01", "52:54:00:7e:57:02"
	u1 := admin.enroll("victim", mac1)
	u2 := admin.enroll("bystander", mac2)
	admin.setImage(u1, images, image)
	configdrive := base64.StdEncoding.EncodeToString([]byte("rivet-secret-config-drive-" + stateRandom(t)))
	admin.must(http.StatusAccepted, "PUT", "/v1/nodes/"+u1+"/states/provision",
		map[string]any{"target": "active", "configdrive": configdrive})
	before := admin.waitState(u1, "wait call-back", time.Minute)

	secrets := []string{configdrive, pass}
	leaks := func(body []byte, more ...string) string {
		for _, s := range append(slices.Clone(secrets), more...) {
			if s != "" && bytes.Contains(body, []byte(s)) {
				return s
			}
		}
		return ""
	}
	hb := func(token, callback string) map[string]any {
		m := map[string]any{"callback_url": callback, "agent_version": "9.0.0"}
		if token != "" {
			m["agent_token"] = token
		}
		return m
	}
	attempts := []struct {
		what, method, path string
		body               any
		status             int
	}{
		{"lookup by node_uuid alone", "GET", "/v1/lookup?node_uuid=" + u1, nil, 404},
		{"lookup by node_uuid with wrong MACs", "GET", "/v1/lookup?node_uuid=" + u1 + "&addresses=52:54:00:de:ad:01,52:54:00:de:ad:02", nil, 404},
		{"lookup by node_uuid with another node's MAC", "GET", "/v1/lookup?node_uuid=" + u1 + "&addresses=" + mac2, nil, 404},
		{"lookup by another node's MAC", "GET", "/v1/lookup?addresses=" + mac2, nil, 404},
		{"lookup by the MACs of two nodes", "GET", "/v1/lookup?addresses=" + mac1 + "," + mac2, nil, 404},
		{"lookup by node_uuid with an invalid MAC", "GET", "/v1/lookup?node_uuid=" + u1 + "&addresses=not-a-mac", nil, 404},
		{"heartbeat without a token", "POST", "/v1/heartbeat/" + u1, hb("", lure.URL), 400},
		{"heartbeat with a guessed token", "POST", "/v1/heartbeat/" + u1, hb(stateRandom(t), lure.URL), 400},
		{"heartbeat with the masked token", "POST", "/v1/heartbeat/" + u1, hb(wire.Masked, lure.URL), 400},
		{"inspection data for the node", "POST", "/v1/continue_inspection?node_uuid=" + u1,
			map[string]any{"inventory": map[string]any{"interfaces": []any{map[string]any{"mac_address": mac1}}}}, 404},
		{"unauthenticated PATCH of driver_internal_info", "PATCH", "/v1/nodes/" + u1,
			[]map[string]any{{"op": "remove", "path": "/driver_internal_info/agent_secret_token"}}, 401},
		{"unauthenticated abort", "PUT", "/v1/nodes/" + u1 + "/states/provision", map[string]any{"target": "abort"}, 401},
		{"unauthenticated power off", "PUT", "/v1/nodes/" + u1 + "/states/power", map[string]any{"target": "power off"}, 401},
		{"unauthenticated delete", "DELETE", "/v1/nodes/" + u1, nil, 401},
		{"unauthenticated read", "GET", "/v1/nodes/" + u1, nil, 401},
	}
	for _, a := range attempts {
		st, body := attacker.do(a.method, a.path, a.body)
		if st != a.status {
			t.Errorf("%s: %d, want %d: %s", a.what, st, a.status, body)
		}
		if s := leaks(body, u1); s != "" && a.status != 401 || (a.status == 401 && leaks(body) != "") {
			t.Errorf("%s: the answer leaks %q: %s", a.what, s, body)
		}
	}
	wrongPass := attacker
	wrongPass.user, wrongPass.pass = "operator", "wrong"
	if st, body := wrongPass.do("DELETE", "/v1/nodes/"+u1, nil); st != 401 || leaks(body) != "" {
		t.Errorf("delete with a wrong password: %d %s", st, body)
	}
	// Plain HTTP to the TLS port.
	plain := strings.Replace(c.url, "https://", "http://", 1)
	if resp, err := http.Get(plain + "/v1/lookup?addresses=" + mac1); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || leaks(body, u1) != "" {
			t.Errorf("plain HTTP lookup: %d %s", resp.StatusCode, body)
		}
	}

	after := admin.node(u1)
	dii, _ := after["driver_internal_info"].(map[string]any)
	if after["updated_at"] != before["updated_at"] || dii["agent_secret_token"] != nil || dii["agent_url"] != nil {
		t.Fatalf("the attempts changed the node: updated_at %v -> %v, driver_internal_info %v",
			before["updated_at"], after["updated_at"], dii)
	}
	if n := admin.node(u2); n["provision_state"] != "available" {
		t.Fatalf("the bystander moved to %v", n["provision_state"])
	}

	// The real agent boots: the first token is its own.
	agent, err := fakeagent.Start(context.Background(), fakeagent.Config{APIURL: c.url, MACs: []string{mac1},
		Client: tlsClient, HeartbeatInterval: 200 * time.Millisecond, WriteDuration: 30 * time.Second, WriteChunks: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Stop()
	stateWaitFor(t, "the real agent gets the token and starts writing", time.Minute, func() (bool, string) {
		return agent.Token() != "" && slices.Contains(agent.Calls(), "deploy.execute_deploy_step"), fmt.Sprint(agent.Calls())
	})
	token := agent.Token()
	if len(token) != 43 {
		t.Fatalf("the agent got token %q", token)
	}
	secrets = append(secrets, token)

	// A MAC is no secret: a lookup with it finds the node, but the token
	// and the config drive stay masked.
	st, body := attacker.do("GET", "/v1/lookup?addresses="+mac1, nil)
	var lk wire.LookupResponse
	if st != 200 || json.Unmarshal(body, &lk) != nil || lk.Config.AgentToken == nil || *lk.Config.AgentToken != wire.Masked || leaks(body) != "" {
		t.Errorf("lookup with the node's MAC after the agent's: %d %s", st, body)
	}
	// The token, sniffed, replayed from the attacker's address.
	for _, a := range []struct {
		what, ident string
		want        string
	}{
		{"the node", u1, "Detected change in ramdisk provided"},
		{"another node", u2, "Invalid or missing agent token"},
	} {
		st, body := attacker.do("POST", "/v1/heartbeat/"+a.ident, hb(token, lure.URL))
		if st != 400 || !strings.Contains(string(body), a.want) || leaks(body) != "" {
			t.Errorf("replayed token on %s: %d %s", a.what, st, body)
		}
	}
	// The conductor keeps talking to the real agent only.
	pinned := admin.node(u1)["driver_internal_info"].(map[string]any)["agent_url"]
	if pinned != agent.URL() {
		t.Fatalf("agent_url %v, want the real agent's %s", pinned, agent.URL())
	}
	seen := len(agent.Callers())
	stateWaitFor(t, "the conductor polls the real agent again", time.Minute, func() (bool, string) {
		return len(agent.Callers()) > seen, "no new call"
	})
	if n := attackerHits.Load(); n != 0 {
		t.Fatalf("the attacker's address was called %d times", n)
	}
	if st := admin.node(u1)["provision_state"]; st != "wait call-back" && st != "deploying" {
		t.Fatalf("the deploy was disturbed: %v", st)
	}
}

// stateWaitFor polls cond every 100 ms until it holds; limit is a
// liveness bound, not a timing claim.
func stateWaitFor(t *testing.T, what string, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s (%s)", what, limit, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
