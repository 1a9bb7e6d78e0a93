package cluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/store/postgres/pgtest"
	"github.com/rivetmetal/rivet/wire"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

const testMAC = "52:54:00:aa:bb:01"

// conductorProc is a rivet-conductor process of the test.
type conductorProc struct {
	name string
	url  string
	cmd  *exec.Cmd
	log  string
	// exited is closed once the process has been waited for; err is its
	// exit status then.
	exited chan struct{}
	err    error
}

// buildConductor builds cmd/rivet-conductor into dir.
func buildConductor(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(dir, "rivet-conductor")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/rivetmetal/rivet/cmd/rivet-conductor")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build rivet-conductor: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startConductor runs a conductor on the shared database; it is killed at
// the end of the test if still running.
func startConductor(t *testing.T, bin, dir, name, dsn string) *conductorProc {
	t.Helper()
	addr := freeAddr(t)
	state := filepath.Join(dir, name)
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", addr, "--db", dsn, "--conductor-name", name,
		"--state-dir", state, "--log-level", "debug", "--automated-clean=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	p := &conductorProc{name: name, url: "http://" + addr, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			if len(lines) > 150 {
				lines = lines[len(lines)-150:]
			}
			t.Logf("--- last lines of conductor %s's log:\n%s", name, strings.Join(lines, "\n"))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/")
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("conductor %s exited: %v\n%s", name, p.err, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("conductor %s not serving after 30 s", name)
		}
	}
}

// failover is the single API address the agent is given, as a load
// balancer in front of the conductors would be: each request goes to the
// next conductor in turn, and to the following one when a conductor
// cannot be reached. It counts the heartbeats each conductor answered.
type failover struct {
	backends []string
	client   *http.Client

	mu         sync.Mutex
	next       int
	heartbeats map[string]int
}

func (f *failover) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	first := f.next
	f.next++
	f.mu.Unlock()
	var lastErr error
	for i := range f.backends {
		b := f.backends[(first+i)%len(f.backends)]
		req, err := http.NewRequestWithContext(r.Context(), r.Method, b+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := f.client.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		defer resp.Body.Close()
		if strings.HasPrefix(r.URL.Path, "/v1/heartbeat/") && resp.StatusCode == http.StatusAccepted {
			f.mu.Lock()
			f.heartbeats[b]++
			f.mu.Unlock()
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	http.Error(w, fmt.Sprintf("no conductor reachable: %v", lastErr), http.StatusBadGateway)
}

func (f *failover) heartbeatsTo(backend string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.heartbeats[backend]
}

// api calls the conductors' API through the failover and decodes the
// answer into out (when non-nil).
func api(t *testing.T, base, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(wire.APIVersionHeader, "1.82")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

// waitFor polls cond every 100 ms until it returns true; limit is a
// liveness bound, not a timing claim.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %s (%s)", what, limit, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKillOwnerMidDeploy runs two conductor processes on one PostgreSQL
// database, starts a deploy of a fake-hardware node whose agent talks to
// both, SIGKILLs the conductor that owns the node while the agent writes
// the image, and checks that the other conductor takes the node over and
// finishes the deploy: the image is written once, the token is never
// reissued, and the node ends active with no error.
func TestKillOwnerMidDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two conductor processes and waits out a lease (about a minute); skipped in -short mode")
	}
	dsn := pgtest.NewDatabase(t)
	dir := t.TempDir()
	bin := buildConductor(t, dir)
	conductors := map[string]*conductorProc{}
	for _, name := range []string{"conductor-a", "conductor-b"} {
		conductors[name] = startConductor(t, bin, dir, name, dsn)
	}
	lb := &failover{backends: []string{conductors["conductor-a"].url, conductors["conductor-b"].url},
		client: &http.Client{Timeout: 30 * time.Second}, heartbeats: map[string]int{}}
	proxy := httptest.NewServer(lb)
	defer proxy.Close()

	image := bytes.Repeat([]byte("rivet multi-conductor image "), 1<<15) // 896 KiB
	sum := sha256.Sum256(image)
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "disk.raw", time.Time{}, bytes.NewReader(image))
	}))
	defer images.Close()

	// Enroll a node and make it available.
	var node map[string]any
	if st := api(t, proxy.URL, "POST", "/v1/nodes", map[string]any{"name": "n1", "driver": "fake-hardware"}, &node); st != http.StatusCreated {
		t.Fatalf("create node: %d %v", st, node)
	}
	uuid := node["uuid"].(string)
	if st := api(t, proxy.URL, "POST", "/v1/ports", map[string]any{"address": testMAC, "node_uuid": uuid}, nil); st != http.StatusCreated {
		t.Fatalf("create port: %d", st)
	}
	state := func() map[string]any {
		var n map[string]any
		if st := api(t, proxy.URL, "GET", "/v1/nodes/"+uuid, nil, &n); st != http.StatusOK {
			t.Fatalf("get node: %d %v", st, n)
		}
		return n
	}
	provision := func(target string, want string) {
		t.Helper()
		var errBody map[string]any
		if st := api(t, proxy.URL, "PUT", "/v1/nodes/"+uuid+"/states/provision", map[string]any{"target": target}, &errBody); st != http.StatusAccepted {
			t.Fatalf("provision %s: %d %v", target, st, errBody)
		}
		waitFor(t, "node reaches "+want, 60*time.Second, func() (bool, string) {
			n := state()
			return n["provision_state"] == want, fmt.Sprintf("%v, last_error %v", n["provision_state"], n["last_error"])
		})
	}
	provision("manage", "manageable")
	provision("provide", "available")
	patch := []map[string]any{
		{"op": "add", "path": "/instance_info/image_source", "value": images.URL + "/disk.raw"},
		{"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
		{"op": "add", "path": "/instance_info/image_os_hash_value", "value": hex.EncodeToString(sum[:])},
		{"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
	}
	if st := api(t, proxy.URL, "PATCH", "/v1/nodes/"+uuid, patch, nil); st != http.StatusOK {
		t.Fatalf("patch instance_info: %d", st)
	}
	provision("active", "wait call-back")

	// The owner powered the node on from the network: boot its agent.
	agent, err := fakeagent.Start(context.Background(), fakeagent.Config{
		APIURL: proxy.URL, MACs: []string{testMAC},
		HeartbeatInterval: 300 * time.Millisecond,
		WriteDuration:     15 * time.Second, WriteChunks: 15,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Stop()
	waitFor(t, "the agent starts writing the image", 60*time.Second, func() (bool, string) {
		return slices.Contains(agent.Calls(), "deploy.execute_deploy_step"), fmt.Sprint(agent.Calls())
	})

	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	lease := func() (owner string, generation int) {
		err := db.QueryRow(context.Background(), `SELECT l.owner, l.generation FROM node_leases l
			JOIN nodes n ON n.id = l.node_id WHERE n.uuid = $1`, uuid).Scan(&owner, &generation)
		if err != nil {
			t.Fatalf("read the node's lease: %v", err)
		}
		return owner, generation
	}
	owner, gen := lease()
	victim := conductors[owner]
	if victim == nil {
		t.Fatalf("node leased to %q, not one of the test's conductors", owner)
	}
	survivor := conductors["conductor-a"]
	if owner == "conductor-a" {
		survivor = conductors["conductor-b"]
	}
	t.Logf("%s owns the node (lease generation %d); killing it mid-write", owner, gen)
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.exited
	killed := time.Now()

	took := waitFor(t, "the surviving conductor takes the node over", time.Minute, func() (bool, string) {
		o, _ := lease()
		return o == survivor.name, "lease held by " + o
	})
	t.Logf("%s took the node over %s after the kill", survivor.name, took.Round(100*time.Millisecond))

	final := map[string]any{}
	waitFor(t, "the deploy reaches active", 3*time.Minute, func() (bool, string) {
		final = state()
		if final["provision_state"] == "deploy failed" {
			t.Fatalf("deploy failed after the takeover: %v", final["last_error"])
		}
		return final["provision_state"] == "active", fmt.Sprintf("%v (step %v)", final["provision_state"], final["deploy_step"])
	})
	t.Logf("deploy active %s after the kill", time.Since(killed).Round(100*time.Millisecond))

	calls := agent.Calls()
	count := func(name string) (n int) {
		for _, c := range calls {
			if c == name {
				n++
			}
		}
		return n
	}
	if n := count("deploy.execute_deploy_step"); n != 1 {
		t.Errorf("the image write was started %d times, want once: %v", n, calls)
	}
	if n := count("standby.power_off"); n != 1 {
		t.Errorf("standby.power_off sent %d times, want once: %v", n, calls)
	}
	if le, _ := final["last_error"].(string); le != "" {
		t.Errorf("last_error = %q", le)
	}
	if ii, _ := final["instance_info"].(map[string]any); ii["image_source"] != images.URL+"/disk.raw" {
		t.Errorf("instance_info lost: %v", final["instance_info"])
	}
	if o, g := lease(); o != survivor.name || g != gen+1 {
		t.Errorf("lease = %s generation %d; want %s, generation %d (one change of owner)", o, g, survivor.name, gen+1)
	}
	for _, st := range agent.HeartbeatStatuses() {
		if st != http.StatusAccepted && st != http.StatusBadGateway {
			t.Errorf("a heartbeat was answered %d (statuses %v)", st, agent.HeartbeatStatuses())
			break
		}
	}
	for _, c := range conductors {
		if lb.heartbeatsTo(c.url) == 0 {
			t.Errorf("conductor %s answered no heartbeat; the test meant both to", c.name)
		}
	}
	var ports []any
	var portList map[string]any
	if st := api(t, proxy.URL, "GET", "/v1/ports?node_uuid="+uuid, nil, &portList); st == http.StatusOK {
		ports, _ = portList["ports"].([]any)
	}
	if len(ports) != 1 {
		t.Errorf("ports after the takeover: %v", portList)
	}
}
