package e2e

// The attacker suite: the real rivet-conductor binary with real TLS and a
// user file written by Apache's htpasswd, attacked through its API the
// way issue 9 describes — host files read through deploy_kernel, the
// disk filled through the image cache, oversized and malformed bodies,
// config-drive bombs, slow clients — each refusal asserted together with
// what was not served, written or leaked.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/syncbuf"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"github.com/rivetmetal/rivet/internal/testpki"
	"github.com/rivetmetal/rivet/wire"
)

// The suite's users.
const (
	secAdmin, secAdminPass   = "operator", "correct horse battery"
	secReader, secReaderPass = "viewer", "staple"
)

// secureConductor is the real conductor binary serving TLS with
// http_basic users.
type secureConductor struct {
	bin, stateDir, url, addr string
	args                     []string
	hc                       *http.Client
	ca                       *testpki.CA

	cmd  *exec.Cmd
	logs *syncbuf.Buffer
	done chan struct{}
}

// newSecureConductor prepares (and starts) the real conductor: a CA and a
// certificate for 127.0.0.1, a user file made with htpasswd -B, a roles
// file, the operator's own deploy files outside every allowed directory.
func newSecureConductor(t *testing.T, extraArgs ...string) *secureConductor {
	t.Helper()
	root := vmtest.RepoRoot(t)
	bin := filepath.Join(root, "build/bin/rivet-conductor")
	if _, err := os.Stat(bin); err != nil {
		vmtest.Unavailable(t, "%s is missing: run `make build`", bin)
	}
	htpasswd := vmtest.Tool(t, "htpasswd")
	stateDir, err := os.MkdirTemp("/tmp", "rivet-sec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	secrets := t.TempDir()
	ca := testpki.NewCA(t, "attacker suite CA")
	leaf := ca.Issue(t, secrets, "conductor", "127.0.0.1")
	users := filepath.Join(secrets, "htpasswd")
	for i, u := range [][2]string{{secAdmin, secAdminPass}, {secReader, secReaderPass}} {
		args := []string{"-B", "-b", users, u[0], u[1]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(htpasswd, args...).CombinedOutput(); err != nil {
			t.Fatalf("htpasswd: %v: %s", err, out)
		}
	}
	roles := filepath.Join(secrets, "roles")
	os.WriteFile(roles, []byte(secAdmin+":admin\n"+secReader+":reader\n"), 0o600)
	operator := t.TempDir()
	kernel, ramdisk := filepath.Join(operator, "vmlinuz"), filepath.Join(operator, "initrd")
	os.WriteFile(kernel, []byte("OPERATOR KERNEL"), 0o644)
	os.WriteFile(ramdisk, []byte("OPERATOR RAMDISK"), 0o644)
	port := freePort(t)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
	t.Cleanup(tr.CloseIdleConnections)
	s := &secureConductor{bin: bin, stateDir: stateDir, ca: ca,
		addr: fmt.Sprintf("127.0.0.1:%d", port), url: fmt.Sprintf("https://127.0.0.1:%d", port),
		hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
	s.args = append([]string{
		"--listen", s.addr, "--state-dir", stateDir, "--log-level", "debug",
		"--auth-strategy", "http_basic", "--http-basic-auth-user-file", users, "--http-basic-auth-roles-file", roles,
		"--tls-cert-file", leaf.CertFile, "--tls-key-file", leaf.KeyFile,
		"--deploy-kernel", kernel, "--deploy-ramdisk", ramdisk,
	}, extraArgs...)
	s.start(t)
	return s
}

// start runs the conductor and waits for its API.
func (s *secureConductor) start(t *testing.T) {
	t.Helper()
	s.logs = &syncbuf.Buffer{}
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	s.done = done
	cmd := s.cmd
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("conductor log:\n%s", s.logs)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := s.hc.Get(s.url + "/v1")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("the conductor exited at start:\n%s", s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("conductor API not up after 60 s: %v\n%s", err, s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop signals the conductor and waits for it to exit.
func (s *secureConductor) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the conductor did not exit on %v", sig)
	}
}

// reply is an answer of the API.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) fault() string {
	var e wire.IronicError
	if json.Unmarshal(r.body, &e) != nil || e.ErrorMessage == "" {
		return ""
	}
	return e.Fault().FaultString
}

// do sends a request (body: nil, []byte, io.Reader or a value to encode)
// as user ("" for none), with Content-Length length when >= 0 and body is
// a reader.
func (s *secureConductor) do(t *testing.T, method, path string, body any, user string) reply {
	t.Helper()
	r, err := s.try(method, path, body, user, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (s *secureConductor) try(method, path string, body any, user string, length int64) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		return reply{}, err
	}
	if _, isReader := body.(io.Reader); isReader {
		req.ContentLength = length
	}
	req.Header.Set(wire.APIVersionHeader, "1.89")
	req.Header.Set("Content-Type", "application/json")
	switch user {
	case secAdmin:
		req.SetBasicAuth(secAdmin, secAdminPass)
	case secReader:
		req.SetBasicAuth(secReader, secReaderPass)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, data}, err
}

// patch applies one JSON Patch operation to a node as the admin.
func (s *secureConductor) patch(t *testing.T, node, path string, value any) reply {
	t.Helper()
	return s.do(t, "PATCH", "/v1/nodes/"+node, []map[string]any{{"op": "add", "path": path, "value": value}}, secAdmin)
}

// node returns a node's document as the admin.
func (s *secureConductor) node(t *testing.T, ident string) map[string]any {
	t.Helper()
	r := s.do(t, "GET", "/v1/nodes/"+ident, nil, secAdmin)
	var n map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &n) != nil {
		t.Fatalf("GET node %s: %d %s", ident, r.status, r.body)
	}
	return n
}

// enroll creates an available fake-hardware node with a port and returns
// its UUID.
func (s *secureConductor) enroll(t *testing.T, name, mac string) string {
	t.Helper()
	r := s.do(t, "POST", "/v1/nodes", map[string]any{"name": name, "driver": "fake-hardware"}, secAdmin)
	var n map[string]any
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &n) != nil {
		t.Fatalf("create node: %d %s", r.status, r.body)
	}
	uuid := n["uuid"].(string)
	if r := s.do(t, "POST", "/v1/ports", map[string]any{"address": mac, "node_uuid": uuid}, secAdmin); r.status != http.StatusCreated {
		t.Fatalf("create port: %d %s", r.status, r.body)
	}
	s.provision(t, name, "manage", "manageable")
	s.provision(t, name, "provide", "available")
	return uuid
}

// provision asks for a provision action and waits for the node to settle
// in want ("" to not wait).
func (s *secureConductor) provision(t *testing.T, node, target, want string) map[string]any {
	t.Helper()
	if r := s.do(t, "PUT", "/v1/nodes/"+node+"/states/provision", map[string]any{"target": target}, secAdmin); r.status != http.StatusAccepted {
		t.Fatalf("provision %s %s: %d %s", node, target, r.status, r.body)
	}
	if want == "" {
		return nil
	}
	return s.waitState(t, node, want)
}

func (s *secureConductor) waitState(t *testing.T, node, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := s.node(t, node)
		if n["provision_state"] == want {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s is %v (last_error %v), want %s", node, n["provision_state"], n["last_error"], want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cacheFiles lists the image cache but its naming key.
func (s *secureConductor) cacheFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.stateDir, "image-cache"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != ".name-key" {
			out = append(out, e.Name())
		}
	}
	return out
}

// vmHWM is the conductor's peak resident set size (VmHWM) in bytes.
func (s *secureConductor) vmHWM(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmHWM in %s", b)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// leaked reports whether an answer shows a secret of the host or the
// database.
func leaked(b []byte) bool {
	return bytes.Contains(b, []byte("SQLite format 3")) || bytes.Contains(b, []byte("root:")) ||
		bytes.Contains(b, []byte(secAdminPass)) || bytes.Contains(b, []byte("$2y$"))
}

// TestAttacker plays the attacker against one conductor.
func TestAttacker(t *testing.T) {
	s := newSecureConductor(t, "--image-cache-max-size", "32MiB")
	allowed := filepath.Join(s.stateDir, "images") // the default allowed directory
	db := filepath.Join(s.stateDir, "rivet.db")
	uuid := s.enroll(t, "n1", "52:54:00:5e:c0:01")

	t.Run("unauthenticated", func(t *testing.T) {
		// Every route but the public ones needs a user.
		for _, rt := range [][2]string{
			{"GET", "/v1/nodes"}, {"GET", "/v1/nodes/detail"}, {"POST", "/v1/nodes"}, {"GET", "/v1/nodes/n1"},
			{"PATCH", "/v1/nodes/n1"}, {"DELETE", "/v1/nodes/n1"}, {"GET", "/v1/nodes/n1/states"},
			{"PUT", "/v1/nodes/n1/states/provision"}, {"GET", "/v1/nodes/n1/ports"}, {"PUT", "/v1/nodes/n1/states/power"},
			{"GET", "/v1/nodes/n1/management/boot_device"}, {"PUT", "/v1/nodes/n1/management/boot_device"},
			{"GET", "/v1/nodes/n1/management/boot_device/supported"}, {"PUT", "/v1/nodes/n1/maintenance"},
			{"DELETE", "/v1/nodes/n1/maintenance"}, {"GET", "/v1/nodes/n1/validate"}, {"GET", "/v1/nodes/n1/inventory"},
			{"GET", "/v1/ports"}, {"GET", "/v1/ports/detail"}, {"POST", "/v1/ports"}, {"GET", "/v1/ports/x"},
			{"PATCH", "/v1/ports/x"}, {"DELETE", "/v1/ports/x"}, {"GET", "/metrics"}, {"GET", "/v1/nope"},
			{"POST", "/v1/lookup"}, {"GET", "/v1/heartbeat/" + uuid}, {"PUT", "/images/x"}, {"DELETE", "/boot/boot.ipxe"},
			{"GET", "/v1/../v1/nodes"}, {"GET", "/images/../v1/nodes"},
		} {
			r := s.do(t, rt[0], rt[1], []byte(`{}`), "")
			if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != `Basic realm="Baremetal API"` ||
				r.fault() != "Authorization required" {
				t.Errorf("%s %s without credentials: %d %q", rt[0], rt[1], r.status, r.body)
			}
			if leaked(r.body) || bytes.Contains(r.body, []byte("n1")) {
				t.Errorf("%s %s without credentials leaked %q", rt[0], rt[1], r.body)
			}
		}
		// Wrong passwords are told apart from no credentials, not from
		// unknown users.
		for _, u := range [][2]string{{secAdmin, "guess"}, {"nobody", "guess"}} {
			req, _ := http.NewRequest("GET", s.url+"/v1/nodes", nil)
			req.SetBasicAuth(u[0], u[1])
			resp, err := s.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 || !bytes.Contains(b, []byte("Incorrect username or password")) {
				t.Errorf("user %s with a wrong password: %d %s", u[0], resp.StatusCode, b)
			}
		}
		// Plain HTTP on the TLS port gets nothing of the API.
		resp, err := http.Get("http://" + s.addr + "/v1/nodes")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || bytes.Contains(b, []byte("n1")) {
				t.Errorf("plain HTTP: %d %q", resp.StatusCode, b)
			}
		}
	})

	t.Run("reader cannot write", func(t *testing.T) {
		for _, rt := range [][2]string{
			{"POST", "/v1/nodes"}, {"PATCH", "/v1/nodes/n1"}, {"DELETE", "/v1/nodes/n1"},
			{"PUT", "/v1/nodes/n1/states/provision"}, {"PUT", "/v1/nodes/n1/states/power"},
			{"PUT", "/v1/nodes/n1/management/boot_device"}, {"PUT", "/v1/nodes/n1/maintenance"},
			{"DELETE", "/v1/nodes/n1/maintenance"}, {"POST", "/v1/ports"}, {"PATCH", "/v1/ports/x"}, {"DELETE", "/v1/ports/x"},
		} {
			r := s.do(t, rt[0], rt[1], map[string]any{"target": "deleted"}, secReader)
			if r.status != http.StatusForbidden || !strings.Contains(r.fault(), "Access was denied") {
				t.Errorf("reader %s %s: %d %s", rt[0], rt[1], r.status, r.body)
			}
		}
		if r := s.do(t, "GET", "/v1/nodes/n1", nil, secReader); r.status != 200 {
			t.Errorf("reader reads: %d", r.status)
		}
		if n := s.node(t, "n1"); n["provision_state"] != "available" {
			t.Errorf("after the reader's attempts the node is %v", n["provision_state"])
		}
	})

	t.Run("host files through deploy_kernel", func(t *testing.T) {
		for _, tc := range []struct{ path, value, want string }{
			{"/driver_info/deploy_kernel", "/etc/shadow", "not in a directory allowed"},
			{"/driver_info/deploy_kernel", "file:///etc/shadow", "not in a directory allowed"},
			{"/driver_info/deploy_ramdisk", db, "not in a directory allowed"},
			{"/driver_info/deploy_ramdisk", allowed + "/../rivet.db", "not in a directory allowed"},
			{"/driver_info/deploy_kernel", "/proc/self/environ", "not in a directory allowed"},
			{"/driver_info/deploy_kernel", "/dev/zero", "not in a directory allowed"},
		} {
			r := s.patch(t, "n1", tc.path, tc.value)
			if r.status != http.StatusBadRequest || !strings.Contains(r.fault(), tc.want) || leaked(r.body) {
				t.Errorf("PATCH %s=%s: %d %s", tc.path, tc.value, r.status, r.body)
			}
		}
		r := s.do(t, "POST", "/v1/nodes", map[string]any{"name": "evil", "driver": "fake-hardware",
			"driver_info": map[string]any{"deploy_kernel": db}}, secAdmin)
		if r.status != http.StatusBadRequest {
			t.Errorf("create with deploy_kernel=the database: %d %s", r.status, r.body)
		}
		if di, _ := s.node(t, "n1")["driver_info"].(map[string]any); di["deploy_kernel"] != nil || di["deploy_ramdisk"] != nil {
			t.Fatalf("a refused path was stored: %v", di)
		}
		// Files in the allowed directory work; a symbolic link out, or
		// one put there after the path was set, never serves.
		os.WriteFile(filepath.Join(allowed, "kernel"), []byte("NODE KERNEL"), 0o644)
		os.WriteFile(filepath.Join(allowed, "ramdisk"), []byte("NODE RAMDISK"), 0o644)
		os.Symlink(db, filepath.Join(allowed, "db-link"))
		if r := s.patch(t, "n1", "/driver_info/deploy_kernel", filepath.Join(allowed, "db-link")); r.status != http.StatusBadRequest ||
			!strings.Contains(r.fault(), "leads out of its allowed directory") {
			t.Errorf("PATCH deploy_kernel=a link to the database: %d %s", r.status, r.body)
		}
		for k, f := range map[string]string{"deploy_kernel": "kernel", "deploy_ramdisk": "ramdisk"} {
			if r := s.patch(t, "n1", "/driver_info/"+k, filepath.Join(allowed, f)); r.status != 200 {
				t.Fatalf("PATCH %s in the allowed directory: %d %s", k, r.status, r.body)
			}
		}
		if resp, err := s.hc.Get(s.url + "/boot/" + uuid + "/deploy_kernel"); err != nil {
			t.Fatal(err)
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "NODE KERNEL" {
				t.Fatalf("allowed kernel: %d %q", resp.StatusCode, b)
			}
		}
		os.Remove(filepath.Join(allowed, "kernel"))
		os.Symlink(db, filepath.Join(allowed, "kernel"))
		resp, err := s.hc.Get(s.url + "/boot/" + uuid + "/deploy_kernel")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || leaked(b) {
			t.Errorf("GET /boot/…/deploy_kernel after the swap: %d, %d bytes", resp.StatusCode, len(b))
		}
		r = s.do(t, "GET", "/v1/nodes/n1/validate", nil, secAdmin)
		var v map[string]map[string]any
		json.Unmarshal(r.body, &v)
		if v["boot"]["result"] != false || !strings.Contains(fmt.Sprint(v["boot"]["reason"]), "leads out of") {
			t.Errorf("validate after the swap: %s", r.body)
		}
		r = s.do(t, "PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "active"}, secAdmin)
		if r.status != http.StatusBadRequest {
			t.Errorf("deploy after the swap: %d %s", r.status, r.body)
		}
		// Back to the conductor's own deploy files.
		for _, k := range []string{"deploy_kernel", "deploy_ramdisk"} {
			s.do(t, "PATCH", "/v1/nodes/n1", []map[string]any{{"op": "remove", "path": "/driver_info/" + k}}, secAdmin)
		}
	})

	t.Run("file:// image sources", func(t *testing.T) {
		for _, src := range []string{"file:///dev/zero", "file:///etc/shadow", "file://" + db,
			"file://" + filepath.Join(allowed, "db-link"), "file://other.host/srv/x.img"} {
			r := s.patch(t, "n1", "/instance_info/image_source", src)
			if r.status != http.StatusBadRequest || leaked(r.body) {
				t.Errorf("PATCH image_source=%s: %d %s", src, r.status, r.body)
			}
		}
		// A file that says it is 1 TiB is refused before a byte is copied.
		sparse := filepath.Join(allowed, "huge.img")
		f, _ := os.Create(sparse)
		f.Truncate(1 << 40)
		f.Close()
		defer os.Remove(sparse)
		s.deployImage(t, "n1", map[string]any{"image_source": "file://" + sparse}, "more than the conductor's image cache holds")
		if left := s.cacheFiles(t); len(left) != 0 {
			t.Errorf("cache after a refused file source: %v", left)
		}
	})

	t.Run("hostile image servers", func(t *testing.T) {
		srv := newHostileServer(t)
		for path, want := range map[string]string{
			"/claims-1TiB": "more than the conductor's image cache holds",
			"/endless":     "sent more than",
		} {
			s.deployImage(t, "n1", map[string]any{"image_source": srv.url + path, "image_download_source": "http"}, want)
			if left := s.cacheFiles(t); len(left) != 0 {
				t.Errorf("%s: cache holds %v", path, left)
			}
		}
		if sent := srv.sent(); sent > 128<<20 {
			t.Errorf("the endless server sent %d bytes to a 32 MiB cache", sent)
		}
	})

	t.Run("request bodies", func(t *testing.T) {
		big := bytes.Repeat([]byte(" "), 2<<20)
		r, err := s.try("POST", "/v1/nodes", bytes.NewReader(big), secAdmin, int64(len(big)))
		if err != nil || r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.fault(), "larger than the limit of 1048576 bytes") {
			t.Errorf("2 MiB declared: %d %s %v", r.status, r.body, err)
		}
		r, err = s.try("POST", "/v1/nodes", io.MultiReader(bytes.NewReader(big)), secAdmin, -1)
		if err != nil || r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("2 MiB chunked: %d %s %v", r.status, r.body, err)
		}
		for path, body := range map[string]string{
			"/v1/nodes":    `{"name":"trailing","driver":"fake-hardware"}{"name":"second"}`,
			"/v1/ports":    `{"address":"52:54:00:00:00:09","node_uuid":"` + uuid + `"} x`,
			"/v1/nodes/n1": `[{"op":"add","path":"/extra/a","value":1}][]`,
		} {
			method := "POST"
			if path == "/v1/nodes/n1" {
				method = "PATCH"
			}
			r := s.do(t, method, path, []byte(body), secAdmin)
			if r.status != http.StatusBadRequest || !strings.Contains(r.fault(), "unexpected data after the JSON value") {
				t.Errorf("%s %s with trailing data: %d %s", method, path, r.status, r.body)
			}
		}
		if r := s.do(t, "GET", "/v1/nodes/trailing", nil, secAdmin); r.status != http.StatusNotFound {
			t.Errorf("a body with trailing data was applied: %d", r.status)
		}
		if extra, _ := s.node(t, "n1")["extra"].(map[string]any); extra["a"] != nil {
			t.Errorf("a patch with trailing data was applied: %v", extra)
		}
	})

	t.Run("config drive bombs", func(t *testing.T) {
		s.patch(t, "n1", "/instance_info", map[string]any{"image_source": "http://127.0.0.1:9/disk.raw",
			"image_checksum": strings.Repeat("0", 64)})
		many := map[string]any{}
		for i := 0; i <= 100_000; i++ {
			many["k"+strconv.Itoa(i)] = i
		}
		deep := any("x")
		for i := 0; i < 40; i++ {
			deep = map[string]any{"a": deep}
		}
		for name, tc := range map[string]struct {
			cd   any
			want string
		}{
			"gzip bomb (65 KiB to 1 GiB)": {gzipBomb(t, 1<<30), "larger than 64 MiB once decoded"},
			"64 MiB + 1":                  {gzipBomb(t, 64<<20+1), "larger than 64 MiB once decoded"},
			"100,001 values":              {map[string]any{"meta_data": many}, "more than 100000 values"},
			"40 levels":                   {map[string]any{"meta_data": deep}, "deeper than 32"},
			"user_data over 32 MiB":       {map[string]any{"user_data": strings.Repeat("x", 33<<20)}, "metadata versions"},
		} {
			r := s.do(t, "PUT", "/v1/nodes/n1/states/provision", map[string]any{"target": "active", "configdrive": tc.cd}, secAdmin)
			if r.status != http.StatusBadRequest || !strings.Contains(r.fault(), tc.want) {
				t.Errorf("%s: %d %.300s", name, r.status, r.body)
			}
		}
		if n := s.node(t, "n1"); n["provision_state"] != "available" {
			t.Errorf("after the bombs the node is %v", n["provision_state"])
		}
		if left, _ := filepath.Glob(filepath.Join(s.stateDir, "conductor", "rivet-configdrive-*")); len(left) != 0 {
			t.Errorf("config drive scratch files left: %v", left)
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		// Connects and says nothing: no TLS handshake.
		raw, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		// Shakes hands, then sends headers that never end.
		tc, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		fmt.Fprint(tc, "GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
		for name, c := range map[string]net.Conn{"silent TCP": raw, "slow headers": tc} {
			c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s: the conductor kept the connection open for 2 minutes", name)
			}
		}
		if r := s.do(t, "GET", "/v1/nodes", nil, secReader); r.status != 200 {
			t.Errorf("API after the slow clients: %d", r.status)
		}
	})
}

// TestAttackerMemory: the conductor's peak RSS (VmHWM) under requests of
// 100 MiB that it must refuse, from the unauthenticated to the admin's
// largest route, each measured on the same fresh process (VmHWM only
// grows, so the cheapest come first).
func TestAttackerMemory(t *testing.T) {
	s := newSecureConductor(t)
	uuid := s.enroll(t, "n1", "52:54:00:5e:c0:03")
	s.patch(t, "n1", "/instance_info", map[string]any{"image_source": "http://127.0.0.1:9/disk.raw",
		"image_checksum": strings.Repeat("0", 64)})
	base := s.vmHWM(t)
	t.Logf("baseline VmHWM %.1f MiB", mib(base))
	const hundred = 100 << 20
	steps := []struct {
		name, method, path, user string
		body                     func() *sizedReader
		declared                 bool
		want                     int
	}{
		{"unauthenticated, declared, node create", "POST", "/v1/nodes", "", jsonString, true, 401},
		{"unauthenticated, chunked, heartbeat (public)", "POST", "/v1/heartbeat/" + uuid, "", jsonString, false, 413},
		{"unauthenticated, chunked, inspection callback (public)", "POST", "/v1/continue_inspection", "", jsonString, false, 413},
		{"admin, chunked, node create", "POST", "/v1/nodes", secAdmin, jsonString, false, 413},
		{"admin, declared, provision", "PUT", "/v1/nodes/n1/states/provision", secAdmin, jsonString, true, 413},
		{"admin, chunked, provision, 100 MiB config drive", "PUT", "/v1/nodes/n1/states/provision", secAdmin,
			func() *sizedReader { return configdriveBody(hundred) }, false, 413},
		{"admin, declared, provision, 95 MiB config drive > 64 MiB decoded", "PUT", "/v1/nodes/n1/states/provision", secAdmin,
			func() *sizedReader { return configdriveBody(95 << 20) }, true, 400},
	}
	for _, st := range steps {
		body := st.body()
		length := int64(-1)
		if st.declared {
			length = body.size
		}
		r, err := s.try(st.method, st.path, body, st.user, length)
		status := r.status
		if err != nil {
			// The conductor may close the connection on a body it does
			// not read once it has answered.
			status = -1
		}
		hwm := s.vmHWM(t)
		t.Logf("%-66s -> %4d  VmHWM %6.1f MiB (+%5.1f)  %.70s", st.name, status, mib(hwm), mib(hwm-base), r.fault())
		if status != -1 && status != st.want {
			t.Errorf("%s: status %d, want %d: %.300s", st.name, status, st.want, r.body)
		}
	}
	if r := s.do(t, "GET", "/v1/nodes/n1", nil, secReader); r.status != 200 {
		t.Fatalf("API after the hostile requests: %d", r.status)
	}
	// The stated ceiling: the largest body a route takes (96 MiB, a
	// config drive in base64) once, plus 48 MiB, over the baseline.
	const ceiling = 144 << 20
	if hwm := s.vmHWM(t); hwm-base > ceiling {
		t.Errorf("VmHWM grew by %.1f MiB, over the ceiling of %d MiB", mib(hwm-base), ceiling>>20)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// sizedReader is a body of known size.
type sizedReader struct {
	io.Reader
	size int64
}

// jsonString is a 100 MiB JSON object whose one value is a string of
// "x": valid as far as it goes, so a decoder buffers it.
func jsonString() *sizedReader {
	head, tail := `{"a":"`, `"}`
	n := int64(100<<20 - len(head) - len(tail))
	return &sizedReader{io.MultiReader(strings.NewReader(head), io.LimitReader(xReader{}, n), strings.NewReader(tail)), 100 << 20}
}

type xReader struct{}

func (xReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// configdriveBody is a provision request of size bytes whose config drive
// is base64 text (of random bytes: it decodes to 3/4 of its length, not
// gzip), streamed without being held.
func configdriveBody(size int64) *sizedReader {
	head := `{"target":"active","configdrive":"`
	tail := `"}`
	n := (size - int64(len(head)+len(tail))) / 4 * 4
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 3<<16)
		enc := make([]byte, 4<<16)
		left := n
		for left > 0 {
			rand.Read(buf)
			base64.StdEncoding.Encode(enc, buf)
			k := min(int64(len(enc)), left)
			if _, err := pw.Write(enc[:k]); err != nil {
				return
			}
			left -= k
		}
		pw.Close()
	}()
	return &sizedReader{io.MultiReader(strings.NewReader(head), pr, strings.NewReader(tail)), int64(len(head)+len(tail)) + n}
}

// gzipBomb is base64 of n zero bytes gzipped.
func gzipBomb(t *testing.T, n int64) string {
	t.Helper()
	var b bytes.Buffer
	z, err := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(chunk)) {
		z.Write(chunk[:min(int64(len(chunk)), left)])
	}
	z.Close()
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// deployImage deploys a node with instance_info ii (a wrong checksum is
// added: nothing must get that far) and waits for the deploy to fail with
// want in last_error; the node is made available again.
func (s *secureConductor) deployImage(t *testing.T, node string, ii map[string]any, want string) {
	t.Helper()
	ii["image_checksum"] = strings.Repeat("0", 64)
	if r := s.patch(t, node, "/instance_info", ii); r.status != 200 {
		t.Fatalf("PATCH instance_info %v: %d %s", ii, r.status, r.body)
	}
	n := s.provision(t, node, "active", "deploy failed")
	if le := fmt.Sprint(n["last_error"]); !strings.Contains(le, want) {
		t.Errorf("deploy of %v: last_error %q, want %q", ii["image_source"], le, want)
	}
	s.provision(t, node, "deleted", "available")
}

// hostileServer serves images that lie: one claims 1 TiB, one never ends.
type hostileServer struct {
	url  string
	mu   sync.Mutex
	body int64
}

func newHostileServer(t *testing.T) *hostileServer {
	t.Helper()
	h := &hostileServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/claims-1TiB":
			w.Header().Set("Content-Length", strconv.FormatInt(1<<40, 10))
			w.WriteHeader(200)
			if r.Method == http.MethodGet {
				w.Write(make([]byte, 64<<10)) // then the connection drops
			}
		case "/endless":
			if r.Method == http.MethodHead {
				w.WriteHeader(200)
				return
			}
			w.WriteHeader(200)
			buf := make([]byte, 64<<10)
			for {
				n, err := w.Write(buf)
				h.mu.Lock()
				h.body += int64(n)
				h.mu.Unlock()
				if err != nil {
					return
				}
			}
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
	})
	h.url = "http://" + ln.Addr().String()
	return h
}

func (h *hostileServer) sent() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.body
}

// TestAttackerCacheAcrossRestarts: a download stopped by a shutdown
// leaves nothing in the cache, and one cut by a crash is removed at the
// next start.
func TestAttackerCacheAcrossRestarts(t *testing.T) {
	s := newSecureConductor(t)
	s.enroll(t, "n1", "52:54:00:5e:c0:02")
	trickle := newTrickleServer(t)
	r := s.patch(t, "n1", "/instance_info", map[string]any{"image_source": trickle.url + "/slow.img",
		"image_download_source": "http", "image_checksum": strings.Repeat("0", 64)})
	if r.status != 200 {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	waitPart := func() {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			for _, f := range s.cacheFiles(t) {
				if strings.HasSuffix(f, ".part") {
					if st, err := os.Stat(filepath.Join(s.stateDir, "image-cache", f)); err == nil && st.Size() > 0 {
						return
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no download in the cache after 2 minutes:\n%s", s.logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	s.provision(t, "n1", "active", "")
	waitPart()
	s.stop(t, syscall.SIGTERM)
	if left := s.cacheFiles(t); len(left) != 0 {
		t.Errorf("after a shutdown during a download the cache holds %v", left)
	}
	// The restarted conductor resumes the deploy, which downloads again;
	// a crash leaves its partial file, the next start removes it.
	s.start(t)
	waitPart()
	s.stop(t, syscall.SIGKILL)
	if left := s.cacheFiles(t); len(left) == 0 {
		t.Fatal("a crash left no partial file to test with")
	}
	s.start(t)
	if !strings.Contains(s.logs.String(), "partial file left by an earlier run removed from the image cache") {
		t.Errorf("the restart did not remove the crash's partial file:\n%s", s.logs)
	}
	s.stop(t, syscall.SIGTERM)
	if left := s.cacheFiles(t); len(left) != 0 {
		t.Errorf("after the last shutdown the cache holds %v", left)
	}
}

// TestAttackerDeleteStopsDownload: a node deleted (in maintenance) while
// the conductor caches its image stops the download, and its partial
// file goes.
func TestAttackerDeleteStopsDownload(t *testing.T) {
	s := newSecureConductor(t)
	s.enroll(t, "n1", "52:54:00:5e:c0:04")
	trickle := newTrickleServer(t)
	if r := s.patch(t, "n1", "/instance_info", map[string]any{"image_source": trickle.url + "/slow.img",
		"image_download_source": "http", "image_checksum": strings.Repeat("0", 64)}); r.status != 200 {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	s.provision(t, "n1", "active", "")
	deadline := time.Now().Add(2 * time.Minute)
	for len(s.cacheFiles(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no download started:\n%s", s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := s.do(t, "PUT", "/v1/nodes/n1/maintenance", map[string]any{"reason": "attacker test"}, secAdmin); r.status != http.StatusAccepted {
		t.Fatalf("maintenance: %d %s", r.status, r.body)
	}
	if r := s.do(t, "DELETE", "/v1/nodes/n1", nil, secAdmin); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	// Stopping the deploy's job on delete is the engine's (per-node job
	// cancellation); the cache's part is to stop a download nobody waits
	// for and remove its file (conductor/images tests).
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(s.logs.String(), "node job cancelled") {
		if time.Now().After(deadline) {
			t.Skip("this conductor does not cancel a deleted node's job (per-node job cancellation comes with the secstate work); the cache's own part is tested in conductor/images")
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline = time.Now().Add(30 * time.Second)
	for len(s.cacheFiles(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the delete the cache holds %v", s.cacheFiles(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// trickleServer sends an image of 1 GiB slowly: 256 KiB at once, then
// 64 KiB every 100 ms.
type trickleServer struct{ url string }

func newTrickleServer(t *testing.T) *trickleServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(1<<30, 10))
		w.WriteHeader(200)
		if r.Method == http.MethodHead {
			return
		}
		bw := bufio.NewWriter(w)
		bw.Write(make([]byte, 256<<10))
		bw.Flush()
		w.(http.Flusher).Flush()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := w.Write(make([]byte, 64<<10)); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &trickleServer{url: "http://" + ln.Addr().String()}
}
