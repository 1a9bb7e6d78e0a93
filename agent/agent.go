package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/rivetmetal/rivet/internal/pause"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/manager"
	"github.com/rivetmetal/rivet/heartbeat"
	"github.com/rivetmetal/rivet/lookup"
	"github.com/rivetmetal/rivet/wire"
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
// (the host's network is used as it is), the agent's own log not kept.
type Options struct {
	Logger  *slog.Logger
	Power   PowerController
	Network NetworkConfigurator
	// LogBuffer holds the agent's recent log lines for
	// log.collect_system_logs; the caller tees the logger's output into it.
	LogBuffer *LogBuffer
	// Managers are hardware managers (vendor or site ones) consulted
	// with the generic manager, by their support level; none: the generic
	// manager alone (docs/hardware-managers.md).
	Managers []manager.Manager
}

// stopReason says why the API was stopped while the agent stays up.
type stopReason string

const (
	stopRescue   stopReason = "rescue"
	stopLockdown stopReason = "lockdown"
)

// Agent is a running rivet-agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	power   PowerController
	network NetworkConfigurator
	logs    *LogBuffer
	started time.Time

	nodes  nodeCache
	images imageState
	tokens tokenGate
	// tlsClient verifies the servers the agent calls (tls.go).
	tlsClient *tls.Config

	extraManagers []manager.Manager
	managers      *manager.Set // selected at the start of Run

	mu         sync.Mutex
	addr       net.Addr
	ready      chan struct{}
	beater     *heartbeat.Beater
	runner     *runner
	lookupMACs []string

	stopOnce sync.Once
	stopCh   chan struct{}
	stopWhy  stopReason
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
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("ipa-certfile and ipa-keyfile go together")
	}
	if cfg.TLSCertFile != "" {
		cfg.AdvertiseProtocol = "https"
	}
	if cfg.SysRoot == "" {
		cfg.SysRoot = "/"
	}
	a := &Agent{cfg: cfg, log: opts.Logger, power: opts.Power, network: opts.Network, logs: opts.LogBuffer,
		extraManagers: opts.Managers, ready: make(chan struct{}), stopCh: make(chan struct{})}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.power == nil {
		a.power = NewSystemPower(a.log)
	}
	if cfg.AgentToken != "" {
		a.tokens.set(cfg.AgentToken)
	}
	var err error
	if a.tlsClient, err = clientTLS(&a.cfg, RamdiskCAFile, a.log); err != nil {
		return nil, err
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

// stopServing asks Run to stop the API and the heartbeats (rescue,
// lockdown) while the process stays up.
func (a *Agent) stopServing(why stopReason) {
	a.stopOnce.Do(func() {
		a.mu.Lock()
		a.stopWhy = why
		a.mu.Unlock()
		close(a.stopCh)
	})
}

// Run brings the agent up and serves until ctx ends: network, hardware
// (NIC and disk waits, inventory, inspection), lookup, the API (HTTPS under
// auto-TLS), heartbeats, and a new lookup whenever Ironic stops accepting
// the token. It returns nil after a clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	a.log.Info("rivet-agent starting", "version", Version, "api_urls", a.cfg.APIURLs, "standalone", a.cfg.Standalone,
		"block_devices", a.cfg.BlockDevices, "ramdisk", InRamdisk())
	if a.network != nil {
		if err := a.network.Configure(ctx, a.cfg.IPConfig); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	if a.cfg.HardwareInitDelay > 0 {
		a.log.Info("waiting before reading the hardware (ipa-hardware-initialization-delay)", "seconds", a.cfg.HardwareInitDelay.Seconds())
		if err := pause.For(ctx, a.cfg.HardwareInitDelay); err != nil {
			return nil
		}
	}
	a.ensureEFIVars()
	if err := a.selectManagers(ctx); err != nil {
		return err
	}
	client := a.ironicClient()

	var lk *lookup.Result
	if !a.cfg.Standalone {
		macs, err := a.macs(ctx)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.lookupMACs = macs
		a.mu.Unlock()
		a.waitForDisks(ctx)
		nodeUUID := ""
		if inv, err := a.collectInventory(ctx); err != nil {
			a.log.Warn("hardware inventory failed; carrying on", "error", err)
		} else if a.cfg.InspectionCallbackURL != "" {
			nodeUUID = a.inspect(ctx, client, inv)
		}
		lk, err = lookup.Lookup(ctx, lookup.Config{
			APIURLs: a.cfg.APIURLs, MACs: macs, NodeUUID: nodeUUID, APIVersion: a.cfg.APIVersion,
			Timeout: a.cfg.LookupTimeout, Interval: a.cfg.LookupInterval,
			Client: client, RequestID: a.cfg.RequestID, Logger: a.log,
		})
		if err != nil {
			return err
		}
		a.nodes.setLookup(lk.Node, lk.Config)
		a.tokens.set(lk.Token())
	}

	var host, apiMax string
	var err error
	if lk != nil {
		if host, err = a.advertiseHost(ctx, lk.APIURL); err != nil {
			return err
		}
		apiMax = lk.MaxVersion
	}
	tlsCfg, verifyCA, err := a.serverTLS(host, apiMax)
	if err != nil {
		return err
	}
	ln, err := a.listen()
	if err != nil {
		return err
	}
	srvCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	r, err := newRunner(srvCtx, a.log, []Extension{standby{a}, deploy{a}, clean{a}, service{a}, imageExt{a}, logExt{a}, rescue{a}, system{a}, poll{a}},
		a.triggerHeartbeat)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.runner = r
	a.mu.Unlock()
	streams := make(chan struct{}) // closed when the API shuts down: log streams end
	srv := &http.Server{
		Handler: (&api{runner: r, version: Version, started: a.started, tokens: &a.tokens, log: a.log,
			logs: a.logs, stop: streams}).handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	var endStreams sync.Once
	srv.RegisterOnShutdown(func() { endStreams.Do(func() { close(streams) }) })
	serveErr := make(chan error, 1)
	go func() {
		var err error
		if tlsCfg != nil {
			err = srv.ServeTLS(ln, "", "")
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
	a.log.Info("agent API listening", "address", ln.Addr().String(), "tls", tlsCfg != nil)

	beatCtx, stopBeats := context.WithCancel(srvCtx)
	defer stopBeats()
	var beatDone chan struct{}
	if lk != nil {
		scheme := a.cfg.AdvertiseProtocol
		if tlsCfg != nil {
			scheme = "https"
		}
		cb := fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(host, strconv.Itoa(a.cfg.AdvertisePort)))
		beatDone = make(chan struct{})
		go func() {
			defer close(beatDone)
			a.heartbeatLoop(beatCtx, lk, cb, verifyCA, client)
		}()
	}

	shutdown := func() error {
		stopBeats()
		if beatDone != nil {
			<-beatDone
		}
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutCtx)
	}
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil {
			stopWork()
			shutdown()
			r.wg.Wait()
			return fmt.Errorf("agent API: %w", err)
		}
	case <-a.stopCh:
		a.mu.Lock()
		why := a.stopWhy
		a.mu.Unlock()
		if err := shutdown(); err != nil {
			a.log.Warn("agent API shutdown", "error", err)
		}
		if why == stopLockdown {
			a.linksDown()
		}
		a.log.Warn("agent API and heartbeats stopped; the agent idles until it is stopped", "reason", string(why))
		<-ctx.Done()
	}
	stopWork()
	err = shutdown()
	r.wg.Wait()
	a.log.Info("rivet-agent stopped")
	return err
}

// heartbeatLoop heartbeats with the lookup's token; when Ironic stops
// accepting it (it wipes the token when a deploy or clean ends, and a host
// or fast-track agent outlives that), it looks the node up again until a
// new operation hands out a new token, and carries on. The API stays up
// throughout and keeps its command results.
func (a *Agent) heartbeatLoop(ctx context.Context, lk *lookup.Result, callbackURL, verifyCA string, client *http.Client) {
	for {
		b := heartbeat.New(heartbeat.Config{
			APIURL: lk.APIURL, APIVersion: heartbeatVersion(lk.MaxVersion), NodeUUID: lk.Node.UUID,
			CallbackURL: callbackURL, Token: lk.Token(), AgentVersion: Version, VerifyCA: verifyCA,
			Timeout: time.Duration(lk.Config.HeartbeatTimeout * float64(time.Second)),
			Client:  client, RequestID: a.cfg.RequestID, Logger: a.log,
		})
		a.mu.Lock()
		a.beater = b
		a.mu.Unlock()
		a.log.Info("heartbeating", "node", lk.Node.UUID, "callback_url", callbackURL, "auto_tls", verifyCA != "")
		err := b.Run(ctx)
		a.mu.Lock()
		a.beater = nil
		a.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("looking the node up again for a new agent token; the API stays up", "node", lk.Node.UUID, "reason", err)
		next, err := a.relookup(ctx, lk.Node.UUID, client)
		if err != nil {
			return
		}
		a.nodes.setLookup(next.Node, next.Config)
		a.tokens.set(next.Token())
		lk = next
	}
}

// relookupMaxInterval caps the backoff of a new lookup, so that the next
// operation on the node finds this agent within seconds.
const relookupMaxInterval = 10 * time.Second

// relookup repeats lookup until it hands out a token or ctx ends: until
// Ironic starts another operation on the node, lookups get 404.
func (a *Agent) relookup(ctx context.Context, nodeUUID string, client *http.Client) (*lookup.Result, error) {
	a.mu.Lock()
	macs := a.lookupMACs
	a.mu.Unlock()
	for {
		lk, err := lookup.Lookup(ctx, lookup.Config{
			APIURLs: a.cfg.APIURLs, MACs: macs, NodeUUID: nodeUUID, APIVersion: a.cfg.APIVersion,
			Timeout: a.cfg.LookupTimeout, Interval: a.cfg.LookupInterval, MaxInterval: relookupMaxInterval,
			Client: client, RequestID: a.cfg.RequestID, Logger: a.log,
		})
		if err == nil {
			a.log.Info("new agent token received; heartbeating again", "node", lk.Node.UUID)
			return lk, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		a.log.Warn("still no new agent token; looking the node up again (the next deploy, clean or rescue of this node hands one out)",
			"node", nodeUUID, "error", err)
	}
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
	host := a.cfg.EffectiveListenHost()
	if host != a.cfg.ListenHost {
		a.log.Info("no ipa-listen-host given: listening on "+host, "standalone", a.cfg.Standalone, "token", a.cfg.AgentToken != "")
	}
	addr := net.JoinHostPort(host, strconv.Itoa(a.cfg.ListenPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil && host == "::" {
		addr = net.JoinHostPort("0.0.0.0", strconv.Itoa(a.cfg.ListenPort))
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// advertiseHost is the address the conductor reaches this agent at:
// ipa-advertise-host, else the source of the route to the API.
func (a *Agent) advertiseHost(ctx context.Context, apiURL string) (string, error) {
	if a.cfg.AdvertiseHost != "" {
		return a.cfg.AdvertiseHost, nil
	}
	if a.cfg.NetworkInterface != "" {
		return interfaceAddress(a.cfg.NetworkInterface)
	}
	return a.routeSource(ctx, apiURL)
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
