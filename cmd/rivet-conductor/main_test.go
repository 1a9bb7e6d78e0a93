package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/rivetmetal/rivet/conductor/netboot"

	"github.com/rivetmetal/rivet/internal/syncbuf"
	"github.com/rivetmetal/rivet/internal/testpki"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags([]string{"--state-dir", "/tmp/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.1:6385" || o.db != filepath.Join("/tmp/x", "rivet.db") ||
		o.heartbeatTimeout != 300*time.Second || o.callbackTimeout != 1800*time.Second {
		t.Fatalf("defaults = %+v", o)
	}
	if _, err := parseFlags([]string{"extra"}, io.Discard); err == nil {
		t.Fatal("stray argument accepted")
	}
	// Automated cleaning is on unless turned off explicitly (as Ironic).
	if !o.automatedClean {
		t.Fatal("automated cleaning is off by default")
	}
	if off, err := parseFlags([]string{"--automated-clean=false"}, io.Discard); err != nil || off.automatedClean {
		t.Fatalf("--automated-clean=false: %+v, %v", off.automatedClean, err)
	}
}

// TestRelativeDirsGiveAbsoluteAllowedPaths: make demo passes relative
// --state-dir and --image-dir; the default allowed roots for host paths
// are their absolute forms (the confinement refuses relative roots).
func TestRelativeDirsGiveAbsoluteAllowedPaths(t *testing.T) {
	o, err := parseFlags([]string{"--state-dir", "state", "--image-dir", "build/testimage"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(wd, "state", "images"), filepath.Join(wd, "build", "testimage")}
	if !slices.Equal(o.fileURLAllowedPaths, want) {
		t.Fatalf("allowed paths %v, want %v", o.fileURLAllowedPaths, want)
	}
}

func TestRelaySubcommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "echo: "+line)
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := run(ctx, []string{"relay", host, port}, strings.NewReader("ping\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "echo: ping\n" {
		t.Fatalf("relay output %q", out.String())
	}
}

func TestServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", addr, "--state-dir", dir, "--log-level", "warn"},
			strings.NewReader(""), io.Discard, io.Discard)
	}()
	// Cancel once it serves (start-up itself may take a while on a busy
	// machine: the store's migrations run first).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/v1"); err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("conductor stopped before it served: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("conductor did not serve within 60 s")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("conductor did not stop on cancel")
	}
}

func TestNetbootFlags(t *testing.T) {
	parse := func(args ...string) (*netboot.Config, error) {
		t.Helper()
		o, err := parseFlags(append([]string{"--state-dir", "/tmp/x"}, args...), io.Discard)
		if err != nil {
			return nil, err
		}
		return o.netboot.config()
	}
	if c, err := parse(); err != nil || c != nil {
		t.Fatalf("no --boot-interface: %v, %v; want off", c, err)
	}
	c, err := parse("--boot-interface", "br0")
	if err != nil || c.Mode != netboot.ProxyDHCP || c.Interface != "br0" || c.IPXEDir != netboot.DefaultIPXEDir {
		t.Fatalf("proxy default: %+v, %v", c, err)
	}
	c, err = parse("--boot-interface", "br0", "--dhcp-mode", "full", "--dhcp-range", "10.9.0.100,10.9.0.200",
		"--dhcp-router", "10.9.0.1", "--dhcp-dns", "10.9.0.2,10.9.0.3", "--boot-server-address", "10.9.0.1")
	if err != nil || c.Mode != netboot.FullDHCP || c.RangeStart.String() != "10.9.0.100" || c.RangeEnd.String() != "10.9.0.200" ||
		c.Router.String() != "10.9.0.1" || len(c.DNS) != 2 || c.ServerIP.String() != "10.9.0.1" {
		t.Fatalf("full: %+v, %v", c, err)
	}
	for _, bad := range [][]string{
		{"--dhcp-mode", "full", "--dhcp-range", "10.9.0.100,10.9.0.200"},
		{"--boot-interface", "br0", "--dhcp-mode", "relay"},
		{"--boot-interface", "br0", "--dhcp-mode", "full"},
		{"--boot-interface", "br0", "--dhcp-mode", "full", "--dhcp-range", "10.9.0.100"},
		{"--boot-interface", "br0", "--dhcp-mode", "full", "--dhcp-range", "10.9.0.100,fe80::1"},
		{"--boot-interface", "br0", "--dhcp-range", "10.9.0.100,10.9.0.200"},
		{"--boot-interface", "br0", "--boot-server-address", "nope"},
	} {
		if c, err := parse(bad...); err == nil {
			t.Errorf("%v accepted: %+v", bad, c)
		}
	}
}

func TestTLSFlagsGoTogether(t *testing.T) {
	for _, args := range [][]string{{"--tls-cert-file", "c.pem"}, {"--tls-key-file", "k.pem"}} {
		if _, err := parseFlags(args, io.Discard); err == nil || !strings.Contains(err.Error(), "go together") {
			t.Errorf("parseFlags(%v) = %v", args, err)
		}
	}
	o, err := parseFlags([]string{"--auth-strategy", "http_basic", "--http-basic-auth-user-file", "u",
		"--http-basic-auth-roles-file", "r", "--insecure-allow-noauth", "--require-agent-tls",
		"--tls-cert-file", "c", "--tls-key-file", "k"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.authStrategy != "http_basic" || o.userFile != "u" || o.rolesFile != "r" || !o.insecureAllowNoAuth ||
		!o.requireAgentTLS || o.tlsCertFile != "c" || o.tlsKeyFile != "k" {
		t.Errorf("options %+v", o)
	}
}

// TestSIGHUPReloadsCertificate runs the command with TLS and http_basic
// and sends the process SIGHUP: the renewed certificate is served from
// then on.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	leaf := ca.Issue(t, dir, "api", "127.0.0.1")
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(users, []byte("admin:"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--state-dir", dir, "--tls-cert-file", leaf.CertFile,
			"--tls-key-file", leaf.KeyFile, "--auth-strategy", "http_basic", "--http-basic-auth-user-file", users,
			"--require-agent-tls"}, strings.NewReader(""), io.Discard, &logs)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(20 * time.Second):
			t.Error("conductor did not stop on cancel")
		}
	}()
	addr := waitFor(t, &logs, regexp.MustCompile(`msg="conductor serving" listen=(\S+)`))
	if !strings.Contains(logs.String(), "api_url=https://127.0.0.1:") || !strings.Contains(logs.String(), "auth_strategy=http_basic") {
		t.Errorf("serving log line:\n%s", logs.String())
	}
	serial := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := serial(); got != leaf.Cert.SerialNumber.String() {
		t.Fatalf("serial %s, want %s", got, leaf.Cert.SerialNumber)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + addr + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/nodes without credentials: %d", resp.StatusCode)
	}

	renewed := ca.Issue(t, t.TempDir(), "api", "127.0.0.1")
	for from, to := range map[string]string{renewed.CertFile: leaf.CertFile, renewed.KeyFile: leaf.KeyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &logs, regexp.MustCompile(`(?s)SIGHUP: reloading.*msg="API TLS certificate loaded" (file)=`))
	deadline := time.Now().Add(20 * time.Second)
	for serial() != renewed.Cert.SerialNumber.String() {
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served after SIGHUP; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor waits for a log line matching re and returns its first group.
func waitFor(t *testing.T, logs *syncbuf.Buffer, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := re.FindAllStringSubmatch(logs.String(), -1); len(m) > 0 {
			return m[len(m)-1][1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %s:\n%s", re, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHostPathAndCacheFlags(t *testing.T) {
	o, err := parseFlags([]string{"--state-dir", "/srv/rivet", "--image-dir", "/srv/images"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.fileURLAllowedPaths, ",") != "/srv/rivet/images,/srv/images" || o.imageCacheMaxSize != 20<<30 ||
		o.imageCacheTTL != 7*24*time.Hour || o.qemuFilesDir != "/srv/rivet/qemu/files" {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"--file-url-allowed-paths", "/a, /b/", "--image-cache-max-size", "512", "--image-cache-ttl", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.fileURLAllowedPaths, ",") != "/a,/b" || o.imageCacheMaxSize != 512<<20 || o.imageCacheTTL >= 0 {
		t.Fatalf("set: %+v", o)
	}
	if o, err = parseFlags([]string{"--file-url-allowed-paths", ""}, io.Discard); err != nil || len(o.fileURLAllowedPaths) != 0 {
		t.Fatalf("empty list: %v %v", o.fileURLAllowedPaths, err)
	}
	for _, bad := range [][]string{{"--file-url-allowed-paths", "relative/dir"}, {"--image-cache-max-size", "lots"},
		{"--image-cache-max-size", "-1"}, {"--image-cache-max-size", "3XB"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	for in, want := range map[string]int64{"20GiB": 20 << 30, "1.5G": 3 << 29, "100MB": 100 << 20, "4096B": 4096, "2 TiB": 2 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	// The conductor refuses an allowed path that holds its database.
	dir := t.TempDir()
	err = run(t.Context(), []string{"--listen", "127.0.0.1:0", "--state-dir", dir, "--file-url-allowed-paths", dir},
		strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "holds the conductor's own") {
		t.Fatalf("state dir allowed: %v", err)
	}
}
