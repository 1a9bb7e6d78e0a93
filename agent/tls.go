package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/rivetmetal/rivet/agent/autotls"
	"github.com/rivetmetal/rivet/wire"
)

// autoTLSVersion is the Ironic API version from which Ironic accepts
// agent_verify_ca (and so can verify an auto-TLS agent).
const autoTLSVersion = "1.68"

// serverTLS returns the API's TLS configuration (nil: plain HTTP) and,
// under auto-TLS, the PEM to send as agent_verify_ca. Static certificate
// files win; auto-TLS needs Ironic ≥ 1.68 and an IP to certify.
func (a *Agent) serverTLS(advertiseHost, apiMaxVersion string) (*tls.Config, string, error) {
	base, err := tlsBase(&a.cfg)
	if err != nil {
		return nil, "", err
	}
	if a.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCertFile, a.cfg.TLSKeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("agent TLS certificate: %w", err)
		}
		base.Certificates = []tls.Certificate{cert}
		return base, "", nil
	}
	if !a.cfg.EnableAutoTLS || apiMaxVersion == "" {
		return nil, "", nil
	}
	max, err := wire.ParseMicroversion(apiMaxVersion)
	want, _ := wire.ParseMicroversion(autoTLSVersion)
	if err != nil || max.Less(want) {
		a.log.Info("auto-TLS off: Ironic's API is older than "+autoTLSVersion, "api_version", apiMaxVersion)
		return nil, "", nil
	}
	ip := net.ParseIP(advertiseHost)
	if ip == nil {
		a.log.Warn("auto-TLS off: the advertised host is not an IP address", "host", advertiseHost)
		return nil, "", nil
	}
	host, _ := os.Hostname()
	cert, err := autotls.Generate(autotls.Options{IP: ip, Hostname: host, Curve: a.cfg.TLSCertificateCurve})
	if err != nil {
		return nil, "", err
	}
	a.log.Info("auto-TLS: serving the API over HTTPS with a self-signed certificate", "ip", ip.String(), "curve", a.cfg.TLSCertificateCurve,
		"not_after", cert.TLS.Leaf.NotAfter)
	base.Certificates = []tls.Certificate{cert.TLS}
	return base, string(cert.PEM), nil
}

// tlsBase is what every TLS configuration of the agent shares:
// ipa-tls-min-version and ipa-tls-cipher-suites.
func tlsBase(cfg *Config) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSMinVersion == "1.3" {
		c.MinVersion = tls.VersionTLS13
	}
	if cfg.TLSCipherSuites != "" {
		ids, err := ParseCipherSuites(cfg.TLSCipherSuites)
		if err != nil {
			return nil, fmt.Errorf("ipa-tls-cipher-suites: %w", err)
		}
		c.CipherSuites = ids
	}
	return c, nil
}

// clientTLS is the TLS configuration of the agent's own requests: to the
// Ironic API (lookup, heartbeat), the inspection callback and image,
// checksum and config drive downloads. Server certificates are verified
// against the system's roots plus the CA bundle of ipa-cafile, or of
// RamdiskCAFile when the ramdisk carries one; ipa-insecure turns
// verification off (IPA's semantics), with a warning.
func clientTLS(cfg *Config, ramdiskCA string, log *slog.Logger) (*tls.Config, error) {
	c, err := tlsBase(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("ipa-certfile: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if cfg.Insecure {
		c.InsecureSkipVerify = true //nolint:gosec // ipa-insecure is the operator's explicit choice
		log.Warn("ipa-insecure: the TLS certificates of the Ironic API, the inspection callback and image servers are NOT verified")
		return c, nil
	}
	caFile, source := cfg.CAFile, "ipa-cafile"
	if caFile == "" {
		if _, err := os.Stat(ramdiskCA); err != nil {
			return c, nil // the system's roots
		}
		caFile, source = ramdiskCA, "the ramdisk's CA"
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool() // a ramdisk has no system roots
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", source, caFile)
	}
	c.RootCAs = pool
	log.Info("TLS: trusting the system roots and a CA bundle", "ca_file", caFile, "from", source)
	return c, nil
}

// ironicClient is the HTTP client for lookup, heartbeat and the
// inspection callback.
func (a *Agent) ironicClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = a.tlsClient.Clone()
	return &http.Client{Transport: tr, Timeout: a.cfg.HTTPRequestTimeout}
}

// openSSLSuites maps OpenSSL's names of the TLS 1.2 suites Go implements
// securely to the IANA names Go uses.
var openSSLSuites = map[string]string{
	"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-ECDSA-AES128-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
	"ECDHE-ECDSA-AES256-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
	"ECDHE-RSA-AES128-SHA":          "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
	"ECDHE-RSA-AES256-SHA":          "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
}

// ParseCipherSuites reads an ipa-tls-cipher-suites value: suite names
// (OpenSSL's, as IPA takes them, or IANA's) separated by colons, commas or
// spaces. OpenSSL keywords and suites Go does not offer are skipped, as
// OpenSSL skips what it does not know; a list naming no usable suite is
// an error. The suites apply to TLS 1.2; TLS 1.3 chooses its own.
func ParseCipherSuites(v string) ([]uint16, error) {
	byName := map[string]uint16{}
	for _, s := range tls.CipherSuites() {
		byName[s.Name] = s.ID
	}
	var ids []uint16
	for _, name := range strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		if iana, ok := openSSLSuites[strings.ToUpper(name)]; ok {
			name = iana
		}
		if id, ok := byName[strings.ToUpper(name)]; ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("no cipher suite in the list is one this agent offers (e.g. ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384)")
	}
	return ids, nil
}
