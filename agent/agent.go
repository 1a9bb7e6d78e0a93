package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/agent/wire"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/heartbeat"
	"github.com/rivetmetal/rivet/lookup"
)

// Version is the agent version reported to Ironic (agent_version and
// /v1/status). Ironic records it; it is the IPA feature level Rivet
// implements. Set at build time with -ldflags "-X …/agent.Version=…".
var Version = "10.0.0"

// NetworkConfigurator brings up the machine's network ("ip=" semantics).
type NetworkConfigurator interface {
	Configure(ctx context.Context, spec string) error
}

// Options are the agent's collaborators. Zero values mean: log to
// slog.Default(), the system's power controller, no network configuration
// (the host's network is used as it is).
type Options struct {
	Logger  *slog.Logger
	Power   PowerController
	Network NetworkConfigurator
}

// Agent is a running rivet-agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	power   PowerController
	network NetworkConfigurator
	started time.Time

	nodes  nodeCache
	images imageState
	tokens tokenGate

	mu     sync.Mutex
	addr   net.Addr
	ready  chan struct{}
	beater *heartbeat.Beater
}

// New validates cfg and returns an agent ready to Run.
func New(cfg Config, opts Options) (*Agent, error) {
	if !cfg.Standalone && len(cfg.APIURLs) == 0 {
		return nil, errors.New("no Ironic API URL: set ipa-api-url (or run --ipa-standalone)")
	}
	if cfg.ListenPort <= 0 || cfg.ListenPort > 65535 {
		return nil, fmt.Errorf("invalid listen port %d", cfg.ListenPort)
	}
	if cfg.AdvertisePort == 0 {
		cfg.AdvertisePort = cfg.ListenPort
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("ipa-tls-cert-file and ipa-tls-key-file go together")
	}
	if cfg.TLSCertFile != "" {
		cfg.AdvertiseProtocol = "https"
	}
	if cfg.SysRoot == "" {
		cfg.SysRoot = "/"
	}
	a := &Agent{cfg: cfg, log: opts.Logger, power: opts.Power, network: opts.Network, ready: make(chan struct{})}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.power == nil {
		a.power = NewSystemPower(a.log)
	}
	if cfg.AgentToken != "" {
		a.tokens.set(cfg.AgentToken)
	}
	return a, nil
}

// Addr returns the address the API listens on, once Ready is closed.
func (a *Agent) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addr
}

// Ready is closed when the API is listening.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run brings the agent up and serves until ctx ends: network, lookup, the
// API, heartbeats. It returns nil after a clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	a.log.Info("rivet-agent starting", "version", Version, "api_urls", a.cfg.APIURLs, "standalone", a.cfg.Standalone,
		"block_devices", a.cfg.BlockDevices, "ramdisk", InRamdisk())
	if a.network != nil {
		if err := a.network.Configure(ctx, a.cfg.IPConfig); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	client, err := a.ironicClient()
	if err != nil {
		return err
	}

	var lk *lookup.Result
	if !a.cfg.Standalone {
		macs, err := a.macs(ctx)
		if err != nil {
			return err
		}
		lk, err = lookup.Lookup(ctx, lookup.Config{
			APIURLs: a.cfg.APIURLs, MACs: macs, APIVersion: a.cfg.APIVersion,
			Timeout: a.cfg.LookupTimeout, Interval: a.cfg.LookupInterval,
			Client: client, RequestID: a.cfg.RequestID, Logger: a.log,
		})
		if err != nil {
			return err
		}
		a.nodes.setLookup(lk.Node, lk.Config)
		a.tokens.set(lk.Token())
	}

	ln, err := a.listen()
	if err != nil {
		return err
	}
	srvCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	r, err := newRunner(srvCtx, a.log, []Extension{standby{a}, deploy{a}}, a.triggerHeartbeat)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           (&api{runner: r, version: Version, started: a.started, tokens: &a.tokens}).handler(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() {
		var err error
		if a.cfg.TLSCertFile != "" {
			err = srv.ServeTLS(ln, a.cfg.TLSCertFile, a.cfg.TLSKeyFile)
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
	}()
	a.mu.Lock()
	a.addr = ln.Addr()
	a.mu.Unlock()
	close(a.ready)
	a.log.Info("agent API listening", "address", ln.Addr().String(), "tls", a.cfg.TLSCertFile != "")

	var beatDone chan error
	if lk != nil {
		cb, err := a.callbackURL(ctx, lk.APIURL)
		if err != nil {
			srv.Close()
			return err
		}
		b := heartbeat.New(heartbeat.Config{
			APIURL: lk.APIURL, APIVersion: heartbeatVersion(lk.MaxVersion), NodeUUID: lk.Node.UUID,
			CallbackURL: cb, Token: lk.Token(), AgentVersion: Version,
			Timeout: time.Duration(lk.Config.HeartbeatTimeout * float64(time.Second)),
			Client:  client, RequestID: a.cfg.RequestID, Logger: a.log,
		})
		a.mu.Lock()
		a.beater = b
		a.mu.Unlock()
		a.log.Info("heartbeating", "node", lk.Node.UUID, "callback_url", cb)
		beatDone = make(chan error, 1)
		go func() { beatDone <- b.Run(srvCtx) }()
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil {
			return fmt.Errorf("agent API: %w", err)
		}
	}
	stopWork()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	if beatDone != nil {
		<-beatDone
	}
	r.wg.Wait()
	a.log.Info("rivet-agent stopped")
	return err
}

func (a *Agent) triggerHeartbeat() {
	a.mu.Lock()
	b := a.beater
	a.mu.Unlock()
	if b != nil {
		b.Trigger()
	}
}

// heartbeatVersion is the microversion to declare on heartbeats:
// min(server max, 1.68); "" lets the heartbeat package use 1.68.
func heartbeatVersion(serverMax string) string {
	if serverMax == "" {
		return ""
	}
	return wire.NegotiateVersion(serverMax, wire.HeartbeatAPIVersion)
}

// macs returns the MACs to look up: the configured ones, or every NIC's,
// waiting up to a minute for a NIC to appear (drivers load late).
func (a *Agent) macs(ctx context.Context) ([]string, error) {
	if len(a.cfg.LookupMACs) > 0 {
		var out []string
		for _, m := range a.cfg.LookupMACs {
			n, err := hardware.NormalizeMAC(m)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ifs, err := hardware.ListInterfaces(a.cfg.SysRoot)
		if err != nil {
			return nil, err
		}
		if len(ifs) > 0 {
			out := make([]string, len(ifs))
			for i, it := range ifs {
				out[i] = it.MACAddress
			}
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("no network interface with a MAC address after 60 s")
		}
		a.log.Info("waiting for a network interface")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

// listen opens the API socket; "::" falls back to 0.0.0.0 when the ramdisk
// has no IPv6.
func (a *Agent) listen() (net.Listener, error) {
	addr := net.JoinHostPort(a.cfg.ListenHost, strconv.Itoa(a.cfg.ListenPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil && a.cfg.ListenHost == "::" {
		addr = net.JoinHostPort("0.0.0.0", strconv.Itoa(a.cfg.ListenPort))
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// callbackURL builds the URL the conductor uses to reach this agent. Without
// ipa-advertise-host, the address is the source of the route to the API.
func (a *Agent) callbackURL(ctx context.Context, apiURL string) (string, error) {
	host := a.cfg.AdvertiseHost
	if host == "" {
		var err error
		host, err = a.routeSource(ctx, apiURL)
		if err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%s://%s", a.cfg.AdvertiseProtocol, net.JoinHostPort(host, strconv.Itoa(a.cfg.AdvertisePort))), nil
}

// routeSource finds the local address the kernel would use to reach the
// API (what IPA gets from "ip route get"); a UDP connect sends nothing.
func (a *Agent) routeSource(ctx context.Context, apiURL string) (string, error) {
	u, err := url.Parse(apiURL)
	if err != nil {
		return "", fmt.Errorf("advertise address: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443"}[u.Scheme]
		if port == "" {
			port = "80"
		}
	}
	var last error
	for i := 0; i < max(a.cfg.IPLookupAttempts, 1); i++ {
		conn, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), port))
		if err == nil {
			ip := conn.LocalAddr().(*net.UDPAddr).IP
			conn.Close()
			if !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
				return ip.String(), nil
			}
			err = fmt.Errorf("only a link-local source address %s", ip)
		}
		last = err
		a.log.Warn("cannot find the advertise address yet", "api", apiURL, "error", err)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(a.cfg.IPLookupTimeout):
		}
	}
	return "", fmt.Errorf("no route to the Ironic API %s to advertise an address on (set ipa-advertise-host): %w", apiURL, last)
}

// ironicClient is the HTTP client for lookup and heartbeat.
func (a *Agent) ironicClient() (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: a.cfg.Insecure} //nolint:gosec // ipa-insecure is the operator's explicit choice
	if a.cfg.CAFile != "" {
		pem, err := os.ReadFile(a.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ipa-cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ipa-cafile %s holds no PEM certificate", a.cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}
