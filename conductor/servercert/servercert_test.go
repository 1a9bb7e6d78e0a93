package servercert

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testpki"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve accepts TLS connections with the pair until the test ends.
func serve(t *testing.T, p *Pair) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", p.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// served is the serial number of the certificate a real handshake gets,
// verified against ca.
func served(t *testing.T, addr string, ca *testpki.CA) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	first := ca.Issue(t, dir, "api", "127.0.0.1")
	var logs bytes.Buffer
	p, err := Load(first.CertFile, first.KeyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, p)
	if got := served(t, addr, ca); got != first.Cert.SerialNumber.String() {
		t.Fatalf("served serial %s, want %s", got, first.Cert.SerialNumber)
	}

	// A renewed pair written over the files is served after Reload.
	other := t.TempDir()
	renewed := ca.Issue(t, other, "api", "127.0.0.1")
	copyFile(t, renewed.CertFile, first.CertFile)
	copyFile(t, renewed.KeyFile, first.KeyFile)
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr, ca); got != renewed.Cert.SerialNumber.String() {
		t.Fatalf("after reload: serial %s, want %s", got, renewed.Cert.SerialNumber)
	}

	// A bad new pair leaves the one in use.
	third := ca.Issue(t, t.TempDir(), "api", "127.0.0.1")
	for _, tc := range []struct {
		name       string
		cert, key  []byte
		wantErrSub string
	}{
		{"key of another certificate", third.CertPEM, renewed.KeyPEM, "private key does not match"},
		{"not PEM", []byte("hello"), renewed.KeyPEM, "failed to find any PEM data"},
		{"empty key", renewed.CertPEM, nil, "failed to find any PEM data"},
	} {
		writeFile(t, first.CertFile, tc.cert)
		writeFile(t, first.KeyFile, tc.key)
		if err := p.Reload(); err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
			t.Errorf("%s: Reload = %v, want %q", tc.name, err, tc.wantErrSub)
		}
		if got := served(t, addr, ca); got != renewed.Cert.SerialNumber.String() {
			t.Errorf("%s: serial %s served, want the one in use %s", tc.name, got, renewed.Cert.SerialNumber)
		}
	}
	if err := os.Remove(first.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing key: %v", err)
	}
	if got := served(t, addr, ca); got != renewed.Cert.SerialNumber.String() {
		t.Errorf("missing key: serial %s served", got)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	l := ca.Issue(t, dir, "api", "127.0.0.1")
	big := filepath.Join(dir, "big.pem")
	writeFile(t, big, bytes.Repeat([]byte("A"), maxPEM+1))
	for _, tc := range []struct{ cert, key, want string }{
		{"", l.KeyFile, "both a certificate file and a key file"},
		{l.CertFile, "", "both a certificate file and a key file"},
		{filepath.Join(dir, "missing"), l.KeyFile, "no such file"},
		{big, l.KeyFile, "larger than"},
		{l.KeyFile, l.CertFile, "servercert:"},
	} {
		if _, err := Load(tc.cert, tc.key, discard()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q, %q) = %v, want %q", tc.cert, tc.key, err, tc.want)
		}
	}
}

func TestExpiredCertificateIsLoggedButServed(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	l := ca.Issue(t, dir, "api", "127.0.0.1")
	var logs bytes.Buffer
	p := &Pair{certFile: l.CertFile, keyFile: l.KeyFile, log: slog.New(slog.NewTextHandler(&logs, nil)),
		now: func() time.Time { return time.Now().Add(48 * time.Hour) }}
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "has expired") || p.Certificate() == nil {
		t.Errorf("expired certificate: logs %q, certificate %v", logs.String(), p.Certificate() != nil)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, b)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
