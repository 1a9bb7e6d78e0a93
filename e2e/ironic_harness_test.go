package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// ironicAPIVersion is the microversion the test speaks (Ironic 21.4's max).
const ironicAPIVersion = "1.82"

// ironic is a real Ironic (Debian's ironic-api + ironic-conductor) started
// by scripts/ironic/run-ironic.sh on 127.0.0.1, shared by the subtests of
// one test.
type ironic struct {
	url      string
	stateDir string
	client   *http.Client
	files    *fileServer
}

// needIronic makes sure Debian's Ironic packages are installed. Under
// RIVET_REQUIRE_E2E=1 (make test, CI) it installs them when missing
// (scripts/install-deps.sh ironic, which keeps their services from
// starting) and fails if that fails; otherwise a missing Ironic skips the
// test.
func needIronic(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		vmtest.Unavailable(t, "the Ironic compatibility test needs root (package installation, loop devices)")
	}
	missing := func() error {
		for _, bin := range []string{"ironic-api", "ironic-conductor", "ironic-dbsync"} {
			if _, err := exec.LookPath(bin); err != nil {
				return err
			}
		}
		return nil
	}
	if err := missing(); err == nil {
		return
	} else if os.Getenv(vmtest.RequireEnv) != "1" {
		t.Skipf("Debian's Ironic is not installed (scripts/install-deps.sh ironic): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(vmtest.RepoRoot(t), "scripts/install-deps.sh"), "ironic")
	out, err := cmd.CombinedOutput()
	if err != nil || missing() != nil {
		vmtest.Unavailable(t, "Debian's Ironic is not installed and scripts/install-deps.sh ironic failed: %v %v\n%s", err, missing(), out)
	}
	t.Logf("installed Debian's Ironic in %.0f s", time.Since(start).Seconds())
}

// startIronic runs Ironic until the test ends and waits until its
// conductor has registered the manual-management hardware type.
func startIronic(t *testing.T, files *fileServer) *ironic {
	t.Helper()
	root := vmtest.RepoRoot(t)
	stateDir, err := os.MkdirTemp("/tmp", "rivet-ironic-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"conductor.log", "api.log"} {
				b, _ := os.ReadFile(filepath.Join(stateDir, f))
				t.Logf("---- Ironic %s (last 12 KiB) ----\n%s", f, tailBytes(b, 12<<10))
			}
		}
		os.RemoveAll(stateDir)
	})
	apiPort, rpcPort := freePort(t), freePort(t)
	cmd := exec.Command(filepath.Join(root, "scripts/ironic/run-ironic.sh"), stateDir,
		fmt.Sprint(apiPort), fmt.Sprint(rpcPort), files.url, "uefi", "10")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(stateDir, "run-ironic.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// The script and the two services share its process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		out.Close()
	})
	ir := &ironic{url: fmt.Sprintf("http://127.0.0.1:%d", apiPort), stateDir: stateDir, client: &http.Client{Timeout: 30 * time.Second}, files: files}
	deadline := time.Now().Add(3 * time.Minute) // Ironic's Python starts slowly on a busy machine
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(stateDir, "run-ironic.out"))
			t.Fatalf("run-ironic.sh exited: %v\n%s", err, b)
		default:
		}
		if b, err := os.ReadFile(filepath.Join(stateDir, "conductor.log")); err == nil && bytes.Contains(b, []byte("Failed to register hardware types")) {
			t.Fatalf("the Ironic conductor failed to register its hardware types (it stays up regardless):\n%s", tailBytes(b, 8<<10))
		}
		var drivers struct {
			Drivers []struct {
				Name  string   `json:"name"`
				Hosts []string `json:"hosts"`
			} `json:"drivers"`
		}
		if err := ir.call("GET", "/v1/drivers", nil, &drivers); err == nil {
			for _, d := range drivers.Drivers {
				if d.Name == "manual-management" && len(d.Hosts) > 0 {
					t.Logf("Ironic up in %.1f s at %s (state %s)", time.Since(start).Seconds(), ir.url, stateDir)
					return ir
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ironic not ready after 3 min (no conductor with manual-management)")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// call does one Ironic API request; a non-2xx answer is an error carrying
// Ironic's fault text.
func (ir *ironic) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, ir.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-OpenStack-Ironic-API-Version", ironicAPIVersion)
	resp, err := ir.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (ir *ironic) must(t *testing.T, method, path string, body, out any) {
	t.Helper()
	if err := ir.call(method, path, body, out); err != nil {
		t.Fatal(err)
	}
}

// node reads a node.
func (ir *ironic) node(t *testing.T, id string) map[string]any {
	t.Helper()
	var n map[string]any
	ir.must(t, "GET", "/v1/nodes/"+id, nil, &n)
	return n
}

// provision asks for a provision-state target ("manage", "provide",
// "active", "deleted", "clean"…).
func (ir *ironic) provision(t *testing.T, id, target string, extra map[string]any) {
	t.Helper()
	body := map[string]any{"target": target}
	for k, v := range extra {
		body[k] = v
	}
	ir.must(t, "PUT", "/v1/nodes/"+id+"/states/provision", body, nil)
}

// patch applies a JSON patch to a node.
func (ir *ironic) patch(t *testing.T, id string, ops ...map[string]any) {
	t.Helper()
	ir.must(t, "PATCH", "/v1/nodes/"+id, ops, nil)
}

// waitState polls the node until its provision state is want, failing at
// once on a failure state or a last_error. It returns the node.
func (ir *ironic) waitState(t *testing.T, id, want string, timeout time.Duration, also func()) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		n := ir.node(t, id)
		st, _ := n["provision_state"].(string)
		if st != last {
			t.Logf("node %s: provision_state %q (target %v)", id, st, n["target_provision_state"])
			last = st
		}
		if st == want {
			return n
		}
		if strings.HasSuffix(st, "failed") || st == "error" {
			t.Fatalf("node %s went to %q: last_error %v", id, st, n["last_error"])
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s still %q after %v, want %q (last_error %v)", id, st, timeout, want, n["last_error"])
		}
		if also != nil {
			also()
		}
		time.Sleep(time.Second)
	}
}

// fileServer serves the test's files to Ironic (HEAD checks, deploy
// kernel and ramdisk downloads) and to the agent (the image).
type fileServer struct {
	url string
	mu  sync.Mutex
	fs  map[string][]byte
}

func (f *fileServer) put(path string, b []byte) {
	f.mu.Lock()
	f.fs[path] = b
	f.mu.Unlock()
}

func (f *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	b, ok := f.fs[r.URL.Path]
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, filepath.Base(r.URL.Path), time.Time{}, bytes.NewReader(b))
}

// agentProc is a rivet-agent process on the host.
type agentProc struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan error
}

// output returns the agent's log so far.
func (p *agentProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startAgentProcess runs the agent binary until the test ends.
func startAgentProcess(t *testing.T, bin string, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		p.done <- err
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("---- rivet-agent log ----\n%s", tailBytes([]byte(p.output()), 16<<10))
		}
	})
	return p
}

// goBuild builds a command of this module into dir.
func goBuild(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = vmtest.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOAMD64=v1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
