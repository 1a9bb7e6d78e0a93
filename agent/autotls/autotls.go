// Package autotls makes the agent's self-signed TLS certificate, as IPA's
// auto-TLS does (contract §1.7): CN = the host name, issuer = subject, one
// IP subject-alternative name marked critical, no basicConstraints, an EC
// key (P-384 by default), an ECDSA-SHA512 signature, valid from an hour ago
// (clock skew) for 90 days. The agent serves its API with it and sends the
// PEM to Ironic as agent_verify_ca, and Ironic verifies the agent against
// it.
package autotls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// Defaults of IPA's auto-TLS.
const (
	DefaultValidity  = 90 * 24 * time.Hour
	DefaultClockSkew = time.Hour
	DefaultCurve     = "p384"
)

// Options configure a certificate; zero values mean IPA's defaults.
type Options struct {
	// IP is the advertised address, the certificate's only SAN. Required.
	IP net.IP
	// Hostname is the subject CN; "" means the IP's text.
	Hostname string
	// Curve is "p256", "p384" or "p521" (ipa-tls-certificate-curve).
	Curve string
	// Now is the issue time; zero means time.Now().
	Now       time.Time
	Validity  time.Duration
	ClockSkew time.Duration
}

// Certificate is a generated certificate.
type Certificate struct {
	// PEM is the certificate in PEM form (agent_verify_ca).
	PEM []byte
	// TLS is the certificate and key for the server.
	TLS tls.Certificate
}

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// Generate makes a self-signed certificate for opts.IP.
func Generate(opts Options) (*Certificate, error) {
	if opts.IP == nil {
		return nil, fmt.Errorf("autotls: no IP address to certify")
	}
	var curve elliptic.Curve
	switch strings.ToLower(opts.Curve) {
	case "", "p384", "secp384r1":
		curve = elliptic.P384()
	case "p256", "secp256r1":
		curve = elliptic.P256()
	case "p521", "secp521r1":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("autotls: unknown curve %q (want p256, p384 or p521)", opts.Curve)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultValidity
	}
	if opts.ClockSkew == 0 {
		opts.ClockSkew = DefaultClockSkew
	}
	if opts.Hostname == "" {
		opts.Hostname = opts.IP.String()
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("autotls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("autotls: serial: %w", err)
	}
	ip := opts.IP
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	// The SAN extension is written by hand so that it can be critical
	// (Go marks it critical only when the subject is empty).
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: ip}})
	if err != nil {
		return nil, fmt.Errorf("autotls: SAN: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       serial,
		Subject:            pkix.Name{CommonName: opts.Hostname},
		NotBefore:          opts.Now.Add(-opts.ClockSkew),
		NotAfter:           opts.Now.Add(opts.Validity),
		SignatureAlgorithm: x509.ECDSAWithSHA512,
		ExtraExtensions:    []pkix.Extension{{Id: oidSAN, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("autotls: sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("autotls: %w", err)
	}
	return &Certificate{
		PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		TLS: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
	}, nil
}
