package conductor_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/httpbasic"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/ports"
	"golang.org/x/crypto/bcrypt"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/auth"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/internal/conductortest"
	"github.com/rivetmetal/rivet/internal/syncbuf"
	"github.com/rivetmetal/rivet/internal/testpki"
	"github.com/rivetmetal/rivet/wire"
)

// Users of the secured conductors in these tests.
const (
	adminUser, adminPass   = "admin", "admin-secret"
	readerUser, readerPass = "viewer", "viewer-secret"
)

// secureSetup is what a conductor with TLS and http_basic needs: a CA and
// a server certificate for 127.0.0.1, a user file written with bcrypt and
// a roles file.
type secureSetup struct {
	ca                  *testpki.CA
	leaf                *testpki.Leaf
	caFile              string
	userFile, rolesFile string
}

func newSecureSetup(t *testing.T) *secureSetup {
	t.Helper()
	dir := t.TempDir()
	s := &secureSetup{ca: testpki.NewCA(t, "rivet test CA")}
	s.leaf = s.ca.Issue(t, dir, "conductor", "127.0.0.1", "localhost")
	s.caFile = s.ca.WriteCA(t, dir, "ca.pem")
	s.userFile = filepath.Join(dir, "htpasswd")
	s.rolesFile = filepath.Join(dir, "roles")
	writeUserFile(t, s.userFile, adminUser, adminPass, readerUser, readerPass)
	replaceFile(t, s.rolesFile, []byte(adminUser+":admin\n"+readerUser+":reader\n"))
	return s
}

// apply turns a harness config into a TLS + http_basic one.
func (s *secureSetup) apply(cfg *conductor.Config) {
	cfg.TLSCertFile, cfg.TLSKeyFile = s.leaf.CertFile, s.leaf.KeyFile
	cfg.Auth = auth.Config{Strategy: auth.HTTPBasic, UserFile: s.userFile, RolesFile: s.rolesFile}
}

// httpClient trusts only the test CA.
func (s *secureSetup) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: s.ca.Pool()}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// writeUserFile writes an htpasswd file of name, password pairs with
// bcrypt's lowest cost.
func writeUserFile(t *testing.T, path string, pairs ...string) {
	t.Helper()
	var b bytes.Buffer
	for i := 0; i+1 < len(pairs); i += 2 {
		h, err := bcrypt.GenerateFromPassword([]byte(pairs[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", pairs[i], h)
	}
	replaceFile(t, path, b.Bytes())
}

// replaceFile writes a file and renames it into place, as tools that
// rotate credentials do.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) fault(t *testing.T) wire.IronicFault {
	t.Helper()
	var e wire.IronicError
	if err := json.Unmarshal(a.body, &e); err != nil || e.ErrorMessage == "" {
		t.Fatalf("not an Ironic error body (status %d): %q", a.status, a.body)
	}
	return e.Fault()
}

// send does one API request with microversion 1.89; user "" sends no
// credentials.
func send(t *testing.T, hc *http.Client, method, url string, body any, user, pass string) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(wire.APIVersionHeader, "1.89")
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, data}
}

// servedSerial is the serial of the certificate a TLS handshake with the
// conductor gets, verified with the test CA.
func servedSerial(t *testing.T, s *secureSetup, addr string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: s.ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestAPIAuthenticationOverTLS runs a conductor with TLS and http_basic on
// a real listener: the public routes answer without credentials, every
// other needs a user, readers only read, the user file and the
// certificate are re-read without a restart.
func TestAPIAuthenticationOverTLS(t *testing.T) {
	s := newSecureSetup(t)
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	s.apply(&cfg)
	c := h.Start(cfg)
	base := h.URL()
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("API URL %q, want https://127.0.0.1:…", base)
	}
	hc := s.httpClient()

	// Without the CA the certificate is refused; plain HTTP gets no API.
	if _, err := http.Get(base + "/v1"); err == nil || !errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Errorf("GET with the system CAs: %v, want a certificate verification error", err)
	}
	if a := send(t, http.DefaultClient, "GET", "http"+strings.TrimPrefix(base, "https")+"/v1/nodes", nil, "", ""); a.status != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS port: %d %q", a.status, a.body)
	}

	// Public routes: version documents, ramdisk endpoints, files.
	root := send(t, hc, "GET", base+"/", nil, "", "")
	if root.status != http.StatusOK || !bytes.Contains(root.body, []byte(`"href":"`+base+`/v1/"`)) {
		t.Errorf("GET /: %d %s", root.status, root.body)
	}
	if a := send(t, hc, "GET", base+"/v1", nil, "", ""); a.status != http.StatusOK {
		t.Errorf("GET /v1: %d %s", a.status, a.body)
	}
	if a := send(t, hc, "GET", base+"/v1/lookup?addresses="+conductortest.MAC, nil, "", ""); a.status != http.StatusNotFound {
		t.Errorf("lookup of an unknown MAC: %d %s, want 404 (not 401)", a.status, a.body)
	}
	if a := send(t, hc, "POST", base+"/v1/heartbeat/1be26c0b-03f2-4d2e-ae87-c02d7f33c123",
		map[string]any{"callback_url": "https://127.0.0.1:9999", "agent_token": "x", "agent_version": "9.0.0"}, "", ""); a.status != http.StatusNotFound {
		t.Errorf("heartbeat of an unknown node: %d %s, want 404 (not 401)", a.status, a.body)
	}
	if a := send(t, hc, "GET", base+"/images/disk.raw", nil, "", ""); a.status != http.StatusOK || !bytes.Equal(a.body, h.Image()) {
		t.Errorf("image download: %d, %d bytes", a.status, len(a.body))
	}
	if a := send(t, hc, "GET", base+"/boot/boot.ipxe", nil, "", ""); a.status != http.StatusOK || !bytes.HasPrefix(a.body, []byte("#!ipxe")) {
		t.Errorf("boot.ipxe: %d %q", a.status, a.body)
	}

	// Everything else needs a user.
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/nodes", nil}, {"GET", "/v1/ports/detail", nil},
		{"POST", "/v1/nodes", map[string]any{"driver": "fake-hardware"}},
		{"DELETE", "/v1/nodes/n1", nil}, {"GET", "/v1/nodes/n1/inventory", nil}, {"GET", "/nope", nil},
	} {
		a := send(t, hc, tc.method, base+tc.path, tc.body, "", "")
		if a.status != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") != `Basic realm="Baremetal API"` {
			t.Errorf("%s %s without credentials: %d, WWW-Authenticate %q", tc.method, tc.path, a.status, a.header.Get("WWW-Authenticate"))
			continue
		}
		if f := a.fault(t); f.FaultCode != "Client" || f.FaultString != "Authorization required" {
			t.Errorf("%s %s: fault %+v", tc.method, tc.path, f)
		}
	}
	a := send(t, hc, "GET", base+"/v1/nodes", nil, adminUser, "wrong")
	if f := a.fault(t); a.status != http.StatusUnauthorized || f.FaultString != "Incorrect username or password" {
		t.Errorf("wrong password: %d %+v", a.status, f)
	}

	// The admin writes, the reader reads and is refused writes.
	a = send(t, hc, "POST", base+"/v1/nodes", map[string]any{"driver": "fake-hardware", "name": "n1"}, adminUser, adminPass)
	if a.status != http.StatusCreated {
		t.Fatalf("admin creates a node: %d %s", a.status, a.body)
	}
	if a := send(t, hc, "GET", base+"/v1/nodes/n1", nil, readerUser, readerPass); a.status != http.StatusOK ||
		!bytes.Contains(a.body, []byte(`"name":"n1"`)) {
		t.Errorf("reader reads the node: %d %s", a.status, a.body)
	}
	a = send(t, hc, "PUT", base+"/v1/nodes/n1/states/power", map[string]any{"target": "power on"}, readerUser, readerPass)
	if f := a.fault(t); a.status != http.StatusForbidden || !strings.Contains(f.FaultString, "Access was denied") {
		t.Errorf("reader powers a node on: %d %+v", a.status, f)
	}
	if a := send(t, hc, "DELETE", base+"/v1/nodes/n1", nil, readerUser, readerPass); a.status != http.StatusForbidden {
		t.Errorf("reader deletes a node: %d %s", a.status, a.body)
	}

	// A rotated password takes effect without a restart or SIGHUP.
	writeUserFile(t, s.userFile, adminUser, "rotated", readerUser, readerPass)
	if a := send(t, hc, "GET", base+"/v1/nodes", nil, adminUser, adminPass); a.status != http.StatusUnauthorized {
		t.Errorf("old password after rotation: %d", a.status)
	}
	if a := send(t, hc, "GET", base+"/v1/nodes", nil, adminUser, "rotated"); a.status != http.StatusOK {
		t.Errorf("new password after rotation: %d %s", a.status, a.body)
	}

	// Reload (SIGHUP) serves a renewed certificate from the next
	// handshake; a broken one is refused and the one in use stays.
	addr := c.Addr().String()
	if got := servedSerial(t, s, addr); got != s.leaf.Cert.SerialNumber.String() {
		t.Fatalf("serial %s served, want %s", got, s.leaf.Cert.SerialNumber)
	}
	renewed := s.ca.Issue(t, t.TempDir(), "renewed", "127.0.0.1")
	replaceFile(t, s.leaf.CertFile, renewed.CertPEM)
	replaceFile(t, s.leaf.KeyFile, renewed.KeyPEM)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, s, addr); got != renewed.Cert.SerialNumber.String() {
		t.Errorf("after Reload serial %s served, want %s", got, renewed.Cert.SerialNumber)
	}
	replaceFile(t, s.leaf.KeyFile, s.leaf.KeyPEM) // not the certificate's key
	if err := c.Reload(); err == nil {
		t.Error("Reload of a mismatched pair succeeded")
	}
	if got := servedSerial(t, s, addr); got != renewed.Cert.SerialNumber.String() {
		t.Errorf("after a failed Reload serial %s served, want %s", got, renewed.Cert.SerialNumber)
	}
	if a := send(t, hc, "GET", base+"/v1/nodes", nil, adminUser, "rotated"); a.status != http.StatusOK {
		t.Errorf("API after a failed reload: %d", a.status)
	}
}

// addrListener is a real loopback listener that reports another address,
// so that the default strategy of a network-reachable conductor can be
// tested without listening on one.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

func lanListener(t *testing.T) addrListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The conductor given it closes it, also when New fails.
	return addrListener{Listener: ln, addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 6385}}
}

// TestAuthDefaultsOffLoopback: a conductor reachable from the network
// requires http_basic unless noauth is allowed explicitly, which is
// logged as a warning.
func TestAuthDefaultsOffLoopback(t *testing.T) {
	s := newSecureSetup(t)
	h := conductortest.New(t, fakeagent.Config{})

	cfg := h.Config()
	lan := lanListener(t)
	cfg.Listener = lan
	if _, err := conductor.New(context.Background(), cfg); err == nil ||
		!strings.Contains(err.Error(), "192.0.2.10:6385, which is not loopback, so it requires http_basic") {
		t.Fatalf("New without a user file off loopback: %v", err)
	}
	cfg.Auth = auth.Config{Strategy: auth.NoAuth}
	if _, err := conductor.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--insecure-allow-noauth") {
		t.Fatalf("New with noauth off loopback: %v", err)
	}

	// With a user file it is http_basic by default. (A failed New
	// closes the listener it was given.)
	lan = lanListener(t)
	cfg.Listener = lan
	cfg.Auth = auth.Config{UserFile: s.userFile}
	h.Start(cfg)
	base := "http://" + lan.Listener.Addr().String()
	if a := send(t, http.DefaultClient, "GET", base+"/v1/nodes", nil, "", ""); a.status != http.StatusUnauthorized {
		t.Errorf("default strategy off loopback: GET /v1/nodes without credentials = %d", a.status)
	}
	if a := send(t, http.DefaultClient, "GET", base+"/v1/nodes", nil, readerUser, readerPass); a.status != http.StatusOK {
		t.Errorf("with credentials: %d %s", a.status, a.body)
	}
	h.Stop()

	// noauth allowed explicitly: served, with a warning.
	var logs syncbuf.Buffer
	cfg = h.Config()
	lan = lanListener(t)
	cfg.Listener = lan
	cfg.Auth = auth.Config{Strategy: auth.NoAuth, AllowInsecureNoAuth: true}
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h.Start(cfg)
	base = "http://" + lan.Listener.Addr().String()
	if a := send(t, http.DefaultClient, "GET", base+"/v1/nodes", nil, "", ""); a.status != http.StatusOK {
		t.Errorf("allowed noauth: %d", a.status)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="API AUTHENTICATION IS OFF on a network-reachable address`) {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
}

// TestTLSConfigErrors: a TLS pair that does not load stops the start.
func TestTLSConfigErrors(t *testing.T) {
	s := newSecureSetup(t)
	h := conductortest.New(t, fakeagent.Config{})
	for _, tc := range []struct{ cert, key, want string }{
		{s.leaf.CertFile, "", "both a certificate file and a key file"},
		{s.leaf.KeyFile, s.leaf.CertFile, "API TLS"},
	} {
		cfg := h.Config()
		cfg.TLSCertFile, cfg.TLSKeyFile = tc.cert, tc.key
		if _, err := conductor.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(cert %q, key %q) = %v, want %q", tc.cert, tc.key, err, tc.want)
		}
	}
}

// TestRequireAgentTLS: with RequireAgentTLS, heartbeats whose callback URL
// is http:// are refused as Ironic's [agent]require_tls does; an agent
// serving https deploys.
func TestRequireAgentTLS(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	cfg.Provision.RequireAgentTLS = true
	h.Start(cfg)
	uuid := h.EnrollNode()
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "wait call-back", 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for h.Agent() == nil || len(h.Agent().HeartbeatStatuses()) == 0 || h.Agent().Token() == "" {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat sent")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, st := range h.Agent().HeartbeatStatuses() {
		if st != http.StatusBadRequest {
			t.Errorf("plain-http agent's heartbeat answered %d, want 400", st)
		}
	}
	var errBody map[string]any
	st := h.CallVersion("1.68", "POST", "/v1/heartbeat/"+uuid, map[string]any{
		"callback_url": h.Agent().URL(), "agent_token": h.Agent().Token(), "agent_version": "9.0.0"}, &errBody)
	if f := conductortest.IronicFault(t, errBody); st != http.StatusBadRequest || f.FaultString != "TLS is required by configuration" {
		t.Errorf("http callback heartbeat: %d %+v", st, f)
	}
	if n := h.Node("n1"); conductortest.Internal(n)["agent_url"] != nil {
		t.Errorf("the http callback URL was recorded: %v", conductortest.Internal(n)["agent_url"])
	}

	// The same deploy with an agent serving https goes through.
	h.Provision("n1", "deleted", nil)
	h.WaitState("n1", "available", 20*time.Second)
	h.Machines().SetConfig(fakeagent.Config{TLS: true})
	h.SetImage("n1")
	h.Provision("n1", "active", nil)
	h.WaitState("n1", "active", 30*time.Second)
	if u := h.Agent().URL(); !strings.HasPrefix(u, "https://") {
		t.Errorf("agent URL %q", u)
	}
}

// runBaremetal runs Debian's baremetal CLI with http_basic credentials
// (user "" for none) against a TLS endpoint it verifies with caFile.
func runBaremetal(t *testing.T, bm *baremetalCLI, caFile, user, pass string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := []string{"--os-endpoint", bm.endpoint, "--os-cacert", caFile}
	if user != "" {
		full = append(full, "--os-auth-type", "http_basic", "--os-username", user, "--os-password", pass)
	} else {
		full = append(full, "--os-auth-type", "none")
	}
	cmd := exec.CommandContext(ctx, bm.bin, append(full, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + bm.home, "LANG=C.UTF-8"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestBaremetalCLIHTTPBasicOverTLS drives a TLS + http_basic conductor
// with Debian's baremetal CLI (--os-auth-type http_basic, --os-cacert), as
// an Ironic operator would.
func TestBaremetalCLIHTTPBasicOverTLS(t *testing.T) {
	s := newSecureSetup(t)
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	s.apply(&cfg)
	h.Start(cfg)
	bm := newBaremetalCLI(t, h.URL())
	admin := func(args ...string) string {
		t.Helper()
		out, stderr, err := runBaremetal(t, bm, s.caFile, adminUser, adminPass, args...)
		if err != nil {
			t.Fatalf("baremetal %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}

	var created map[string]any
	if err := json.Unmarshal([]byte(admin("node", "create", "--driver", "fake-hardware", "--name", "bm1", "-f", "json")), &created); err != nil ||
		created["name"] != "bm1" || created["provision_state"] != "enroll" {
		t.Fatalf("node create: %v %v", created, err)
	}
	admin("port", "create", conductortest.MAC, "--node", created["uuid"].(string))
	admin("node", "manage", "bm1", "--wait", "30")

	// The reader lists and shows, and is refused changes with the API's
	// message.
	out, stderr, err := runBaremetal(t, bm, s.caFile, readerUser, readerPass, "node", "show", "bm1", "-f", "json")
	var shown map[string]any
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown["provision_state"] != "manageable" {
		t.Fatalf("reader node show: %v %q %s", err, out, stderr)
	}
	_, stderr, err = runBaremetal(t, bm, s.caFile, readerUser, readerPass, "node", "maintenance", "set", "bm1")
	if err == nil || !strings.Contains(stderr, "Access was denied to the following resource") || !strings.Contains(stderr, "HTTP 403") {
		t.Errorf("reader maintenance set: err %v, stderr %q", err, stderr)
	}

	// A wrong password and no credentials are refused.
	_, stderr, err = runBaremetal(t, bm, s.caFile, adminUser, "wrong", "node", "list")
	if err == nil || !strings.Contains(stderr, "HTTP 401") {
		t.Errorf("wrong password: err %v, stderr %q", err, stderr)
	}
	_, stderr, err = runBaremetal(t, bm, s.caFile, "", "", "node", "list")
	if err == nil || !strings.Contains(stderr, "HTTP 401") {
		t.Errorf("no credentials: err %v, stderr %q", err, stderr)
	}
	// Without the CA the conductor's certificate is refused.
	_, stderr, err = runBaremetal(t, bm, "", adminUser, adminPass, "node", "list")
	if err == nil || !strings.Contains(stderr, "CERTIFICATE_VERIFY_FAILED") {
		t.Errorf("no CA: err %v, stderr %q", err, stderr)
	}

	admin("node", "delete", "bm1")
	if out := admin("node", "list", "-f", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("node list after delete: %q", out)
	}
}

// TestGophercloudHTTPBasicOverTLS drives a TLS + http_basic conductor with
// gophercloud's http_basic baremetal client, as Metal3's
// baremetal-operator does.
func TestGophercloudHTTPBasicOverTLS(t *testing.T) {
	s := newSecureSetup(t)
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	s.apply(&cfg)
	h.Start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := func(user, pass string) *gophercloud.ServiceClient {
		t.Helper()
		c, err := httpbasic.NewBareMetalHTTPBasic(httpbasic.EndpointOpts{IronicEndpoint: h.URL() + "/v1/",
			IronicUser: user, IronicUserPassword: pass})
		if err != nil {
			t.Fatal(err)
		}
		c.HTTPClient = *s.httpClient()
		c.Microversion = "1.89"
		return c
	}
	admin, reader := client(adminUser, adminPass), client(readerUser, readerPass)

	node, err := nodes.Create(ctx, admin, nodes.CreateOpts{Name: "gc1", Driver: "fake-hardware",
		DriverInfo: map[string]any{"fake_password": "not-shown"}}).Extract()
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	if _, err := ports.Create(ctx, admin, ports.CreateOpts{NodeUUID: node.UUID, Address: conductortest.MAC}).Extract(); err != nil {
		t.Fatalf("create port: %v", err)
	}
	if _, err := nodes.Update(ctx, admin, node.UUID, nodes.UpdateOpts{
		nodes.UpdateOperation{Op: nodes.AddOp, Path: "/extra/rack", Value: "r3"}}).Extract(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := nodes.ChangeProvisionState(ctx, admin, node.UUID, nodes.ProvisionStateOpts{Target: nodes.TargetManage}).ExtractErr(); err != nil {
		t.Fatalf("manage: %v", err)
	}
	for {
		n, err := nodes.Get(ctx, admin, node.UUID).Extract()
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if n.ProvisionState == "manageable" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node still %q", n.ProvisionState)
		case <-time.After(20 * time.Millisecond):
		}
	}

	// The reader reads (secrets masked) and is refused a change with 403.
	got, err := nodes.Get(ctx, reader, "gc1").Extract()
	if err != nil || got.UUID != node.UUID || got.Extra["rack"] != "r3" || got.DriverInfo["fake_password"] != "******" {
		t.Fatalf("reader get: %+v %v", got, err)
	}
	pages, err := nodes.ListDetail(reader, nodes.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatalf("reader list: %v", err)
	}
	if listed, err := nodes.ExtractNodes(pages); err != nil || len(listed) != 1 {
		t.Fatalf("reader list: %v %v", listed, err)
	}
	err = nodes.ChangePowerState(ctx, reader, node.UUID, nodes.PowerStateOpts{Target: nodes.PowerOn}).ExtractErr()
	var refused gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &refused) || refused.Actual != http.StatusForbidden {
		t.Errorf("reader power on: %v", err)
	}

	// A wrong password gets 401.
	_, err = nodes.Get(ctx, client(adminUser, "wrong"), node.UUID).Extract()
	if !errors.As(err, &refused) || refused.Actual != http.StatusUnauthorized {
		t.Errorf("wrong password: %v", err)
	}

	if err := nodes.Delete(ctx, admin, node.UUID).ExtractErr(); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// TestDashboardUsesAPIUsers: behind http_basic the dashboard is not open:
// its pages send a browser to its login form, the API's users log in
// there (a wrong password is refused), and /metrics needs a user.
func TestDashboardUsesAPIUsers(t *testing.T) {
	s := newSecureSetup(t)
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	s.apply(&cfg)
	h.Start(cfg)
	base := h.URL()
	hc := s.httpClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	if a := send(t, hc, "GET", base+"/dashboard/", nil, "", ""); a.status != http.StatusSeeOther ||
		!strings.HasPrefix(a.header.Get("Location"), "/dashboard/login") {
		t.Fatalf("GET /dashboard/ without a session: %d, Location %q; want a redirect to the login form", a.status, a.header.Get("Location"))
	}
	if a := send(t, hc, "GET", base+"/dashboard/api/events", nil, "", ""); a.status != http.StatusUnauthorized {
		t.Errorf("event stream without a session: %d, want 401", a.status)
	}
	if a := send(t, hc, "GET", base+"/metrics", nil, "", ""); a.status != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials: %d, want 401", a.status)
	}
	if a := send(t, hc, "GET", base+"/metrics", nil, readerUser, readerPass); a.status != http.StatusOK ||
		!bytes.Contains(a.body, []byte("rivet_conductor_http_request_duration_seconds")) {
		t.Errorf("/metrics as a reader: %d", a.status)
	}

	login := func(user, pass string) *http.Response {
		t.Helper()
		form := url.Values{"username": {user}, "password": {pass}, "next": {"/dashboard/"}}
		resp, err := hc.PostForm(base+"/dashboard/login", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login(adminUser, "wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with a wrong password: %d, want 401", resp.StatusCode)
	}
	resp := login(readerUser, readerPass)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
		t.Fatalf("login as %s: %d, cookies %v", readerUser, resp.StatusCode, resp.Cookies())
	}
	req, err := http.NewRequest("GET", base+"/dashboard/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	page, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != http.StatusOK {
		t.Errorf("GET /dashboard/ with the session: %d", page.StatusCode)
	}
}
