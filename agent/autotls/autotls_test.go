package autotls

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCertificateShape(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	c, err := Generate(Options{IP: net.ParseIP("192.0.2.10"), Hostname: "node-17", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	l := c.TLS.Leaf
	if l.Subject.CommonName != "node-17" || l.Issuer.String() != l.Subject.String() {
		t.Errorf("subject %s issuer %s", l.Subject, l.Issuer)
	}
	if len(l.IPAddresses) != 1 || !l.IPAddresses[0].Equal(net.ParseIP("192.0.2.10")) || len(l.DNSNames) != 0 {
		t.Errorf("SANs %v %v", l.IPAddresses, l.DNSNames)
	}
	critical := false
	for _, e := range l.Extensions {
		if e.Id.Equal(oidSAN) {
			critical = e.Critical
		}
	}
	if !critical || l.BasicConstraintsValid {
		t.Errorf("SAN critical %v, basicConstraints %v", critical, l.BasicConstraintsValid)
	}
	if l.SignatureAlgorithm != x509.ECDSAWithSHA512 || l.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("algorithms %v %v", l.SignatureAlgorithm, l.PublicKeyAlgorithm)
	}
	if !l.NotBefore.Equal(now.Add(-time.Hour)) || !l.NotAfter.Equal(now.Add(90*24*time.Hour)) {
		t.Errorf("validity %v – %v", l.NotBefore, l.NotAfter)
	}
	if _, err := Generate(Options{IP: net.ParseIP("192.0.2.10"), Curve: "p999"}); err == nil {
		t.Error("unknown curve accepted")
	}
}

// TestVerifiedLikeIronic serves HTTPS with the certificate and connects the
// way Ironic does: the PEM as the only CA, the URL's IP checked against the
// SAN.
func TestVerifiedLikeIronic(t *testing.T) {
	c, err := Generate(Options{IP: net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{c.TLS}}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.PEM) {
		t.Fatal("PEM not parsable")
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := cl.Get(srv.URL)
	if err != nil {
		t.Fatalf("verified GET: %v", err)
	}
	resp.Body.Close()
	// Another certificate's PEM does not verify it.
	other, _ := Generate(Options{IP: net.ParseIP("127.0.0.1")})
	pool2 := x509.NewCertPool()
	pool2.AppendCertsFromPEM(other.PEM)
	cl2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool2}}}
	if resp, err := cl2.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("verified against the wrong certificate")
	}
}
