// Package servercert serves a TLS server certificate and key from PEM
// files and swaps them on Reload (SIGHUP), so a renewed certificate is
// used without a restart. A new pair that does not load (unreadable, not
// matching, malformed) leaves the old one in use.
package servercert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// maxPEM caps each file: a certificate chain or a key is a few KiB.
const maxPEM = 1 << 20

// Pair is a certificate and key loaded from files.
type Pair struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time
	cur               atomic.Pointer[tls.Certificate]
}

// Load reads a PEM certificate (chain) and its private key; log (nil for
// slog.Default()) receives warnings about the certificate's validity
// period.
func Load(certFile, keyFile string, log *slog.Logger) (*Pair, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("servercert: both a certificate file and a key file are needed")
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Pair{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	if err := p.Reload(); err != nil {
		return nil, err
	}
	return p, nil
}

// Reload reads the files again and, if they hold a usable pair, serves it
// from the next handshake on. On error the pair in use stays.
func (p *Pair) Reload() error {
	certPEM, err := readCapped(p.certFile)
	if err != nil {
		return fmt.Errorf("servercert: certificate: %w", err)
	}
	keyPEM, err := readCapped(p.keyFile)
	if err != nil {
		return fmt.Errorf("servercert: key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("servercert: %s and %s: %w", p.certFile, p.keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("servercert: %s: %w", p.certFile, err)
		}
		cert.Leaf = leaf
	}
	now := p.now()
	switch {
	case now.After(leaf.NotAfter):
		p.log.Warn("the API's TLS certificate has expired", "file", p.certFile, "not_after", leaf.NotAfter)
	case now.Before(leaf.NotBefore):
		p.log.Warn("the API's TLS certificate is not valid yet", "file", p.certFile, "not_before", leaf.NotBefore)
	}
	p.cur.Store(&cert)
	p.log.Info("API TLS certificate loaded", "file", p.certFile, "subject", leaf.Subject.String(),
		"dns_names", leaf.DNSNames, "ip_addresses", len(leaf.IPAddresses), "not_after", leaf.NotAfter)
	return nil
}

// Certificate is the pair in use.
func (p *Pair) Certificate() *tls.Certificate { return p.cur.Load() }

// GetCertificate is a tls.Config.GetCertificate returning the pair in use.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.cur.Load(), nil
}

// TLSConfig is a server configuration serving the pair in use, TLS 1.2
// or newer.
func (p *Pair) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: p.GetCertificate, MinVersion: tls.VersionTLS12}
}

func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxPEM {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPEM)
	}
	return b, nil
}
