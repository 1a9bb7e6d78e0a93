package agent

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"

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
	if a.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCertFile, a.cfg.TLSKeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("agent TLS certificate: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, "", nil
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
	return &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12}, string(cert.PEM), nil
}
