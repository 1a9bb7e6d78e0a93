// Package conductor wires the Rivet conductor together: the store, the
// provision engine with its power drivers and agent client, the Ironic
// dialect REST API and the image file server, on one HTTP listener.
// cmd/rivet-conductor parses flags into a Config and calls Run.
package conductor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/api"
	"github.com/rivetmetal/rivet/conductor/auth"
	"github.com/rivetmetal/rivet/conductor/boot"
	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/cluster"
	"github.com/rivetmetal/rivet/conductor/dashboard"
	"github.com/rivetmetal/rivet/conductor/hostpath"
	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/metrics"
	"github.com/rivetmetal/rivet/conductor/netboot"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/conductor/servercert"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/backend"
	"github.com/rivetmetal/rivet/conductor/store/postgres"
	"github.com/rivetmetal/rivet/wire"
)

// Config configures a conductor.
type Config struct {
	// Listen is the API's TCP address (e.g. "127.0.0.1:6385"); ignored
	// when Listener is set.
	Listen string
	// Listener, when set, is used instead of listening on Listen.
	Listener net.Listener
	// DBPath is the SQLite database file (created if missing), or a
	// postgres:// URL for the PostgreSQL store, which several conductors
	// can share (see Cluster).
	DBPath string
	// Cluster configures this conductor's membership of the conductors
	// sharing a PostgreSQL store (conductor/cluster); unused with SQLite.
	// Its Name defaults to the host name, its APIURL to the API URL, and
	// its Logger to Logger.
	Cluster cluster.Config
	// APIURL is the API URL as nodes should use it; empty means
	// http://<listen address> (https:// with TLS), with 127.0.0.1 for a
	// wildcard host.
	APIURL string
	// Auth configures the API's authentication (conductor/auth). Its
	// zero Strategy means noauth on a loopback listen address and
	// http_basic (which needs Auth.UserFile) on any other; its Logger
	// defaults to Logger.
	Auth auth.Config
	// TLSCertFile and TLSKeyFile, when set, serve the API over HTTPS
	// with this PEM certificate (chain) and key; Reload re-reads them.
	TLSCertFile, TLSKeyFile string
	// ImageDir, when set, is served read-only under /images/.
	ImageDir string
	// ImageCacheDir, when set, holds the conductor's image cache: images
	// nodes must not fetch from their source themselves (file:// sources,
	// image_download_source "http"/"local") are downloaded there once,
	// verified, and served under /agent_images/. Empty refuses them.
	ImageCacheDir string
	// ImageCacheMaxSize caps the image cache's bytes (0: 20 GiB) and
	// ImageCacheTTL removes images unused that long (0: 7 days; negative:
	// never), as Ironic's [pxe]image_cache_size and image_cache_ttl.
	ImageCacheMaxSize int64
	ImageCacheTTL     time.Duration
	// FileURLAllowedPaths are the host directories in which the API may
	// name files: file:// image sources and driver_info
	// deploy_kernel/deploy_ramdisk (Ironic's
	// [conductor]file_url_allowed_paths; conductor/hostpath). Empty
	// allows none. The conductor's own files (database, state, image
	// cache, TLS key, user files, ProtectedPaths) can never be in one.
	FileURLAllowedPaths []string
	// ProtectedPaths are more of the conductor's own files and
	// directories that no allowed path may reach (the drivers' state).
	ProtectedPaths []string
	// Timeouts bounds the API's connections (zero fields: the defaults
	// of DefaultTimeouts).
	Timeouts Timeouts
	// Drivers are the enabled power drivers.
	Drivers []power.Driver
	// Provision configures the engine (deploy ramdisk defaults, timeouts);
	// its APIURL, Conductor and Logger are filled in by New.
	Provision provision.Config
	// Agent configures the agent client.
	Agent agentclient.Config
	// NetBoot, when set, runs the network boot services (DHCP, TFTP, HTTP
	// boot) on its Interface; its Nodes is the store, its HTTPURL defaults
	// to the API URL and its Logger to Logger.
	NetBoot *netboot.Config
	// MetricsListen, when set, also serves /metrics (and nothing else) on
	// this address, which must be a loopback one: it has neither TLS nor
	// authentication. The API listener always serves /metrics.
	MetricsListen string
	// DashboardAuth checks the dashboard's logins; nil means the API's
	// own users with http_basic, and no login with noauth (the dashboard
	// is then as open as the API).
	DashboardAuth dashboard.Authenticator
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown
	// (default 10 s).
	ShutdownTimeout time.Duration
	// Logger receives all logs (default slog.Default()).
	Logger *slog.Logger
}

// Conductor is a configured conductor, listening but not yet serving.
type Conductor struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	url    string
	st     store.Store
	member *cluster.Member
	engine *provision.Engine
	agents *agentclient.Client
	images *images.Handler
	cache  *images.Cache
	files  *hostpath.Confiner
	guard  *auth.Guard
	cert   *servercert.Pair
	srv    *http.Server
	boot   *netboot.Service
	bootLn *netboot.Listeners

	feed       *changefeed.Feed
	metrics    *metrics.Metrics
	nodeStates *metrics.NodeStates
	dash       *dashboard.Dashboard
	metricsLn  net.Listener
	views      sync.WaitGroup
}

// New opens the store and the listener and builds the engine and the API.
func New(ctx context.Context, cfg Config) (*Conductor, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.DBPath == "" {
		return nil, errors.New("conductor: no database path")
	}
	if len(cfg.Drivers) == 0 {
		return nil, errors.New("conductor: no power drivers")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	c := &Conductor{cfg: cfg, log: log}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()

	st, err := backend.Open(ctx, cfg.DBPath)
	if err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	c.st = st
	// Everything but the cluster registry writes through the change feed.
	c.feed = changefeed.New(st, changefeed.Config{Logger: log})
	fed := c.feed.Store()
	c.ln = cfg.Listener
	if c.ln == nil {
		if c.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("conductor: listen %s: %w", cfg.Listen, err)
		}
	}
	scheme := "http"
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		if c.cert, err = servercert.Load(cfg.TLSCertFile, cfg.TLSKeyFile, log); err != nil {
			return nil, fmt.Errorf("conductor: API TLS: %w", err)
		}
		scheme = "https"
	}
	authCfg := cfg.Auth
	if authCfg.Logger == nil {
		authCfg.Logger = log
	}
	if c.guard, err = auth.New(authCfg, c.ln.Addr()); err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	c.url = cfg.APIURL
	if c.url == "" {
		c.url = urlOf(scheme, c.ln.Addr())
	} else if c.cert != nil && !strings.HasPrefix(strings.ToLower(c.url), "https://") {
		log.Warn("the API serves TLS but the API URL given to nodes is not https", "api_url", c.url)
	}
	host, _ := os.Hostname()

	pc := cfg.Provision
	pc.APIURL, pc.Conductor, pc.Logger = c.url, host, log
	if reg, ok := st.(cluster.Registry); ok {
		cc := cfg.Cluster
		if cc.Name == "" {
			cc.Name = host
		}
		if cc.APIURL == "" {
			cc.APIURL = c.url
		}
		if cc.Logger == nil {
			cc.Logger = log
		}
		if c.member, err = cluster.New(reg, cc); err != nil {
			return nil, fmt.Errorf("conductor: %w", err)
		}
		pc.Ownership = c.member
	}
	if c.files, err = hostpath.New(hostpath.Config{Allowed: cfg.FileURLAllowedPaths, Protected: c.protectedPaths()}); err != nil {
		return nil, fmt.Errorf("conductor: --file-url-allowed-paths: %w", err)
	}
	pc.HostFiles = c.files
	var agentImages http.Handler
	if cfg.ImageCacheDir != "" {
		if c.cache, err = images.NewCache(images.CacheConfig{Dir: cfg.ImageCacheDir, MaxSize: cfg.ImageCacheMaxSize,
			TTL: cfg.ImageCacheTTL, Files: c.files, Logger: log}); err != nil {
			return nil, fmt.Errorf("conductor: %w", err)
		}
		pc.ImageCache, agentImages = c.cache, downloads(c.cache, cfg.Timeouts.download())
	}
	var firmware http.Handler
	if cfg.NetBoot != nil {
		if firmware, err = c.openNetBoot(*cfg.NetBoot, st); err != nil {
			return nil, err
		}
	}
	bootHandler, err := boot.New(boot.Config{Nodes: fed, APIURL: c.url,
		DeployKernel: pc.DeployKernel, DeployRamdisk: pc.DeployRamdisk, Files: c.files, Firmware: firmware, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	ac := cfg.Agent
	ac.Logger = log
	if ac.UserAgent == "" {
		// Agents log the caller: name this conductor.
		name := host
		if c.member != nil {
			name = c.member.Name()
		}
		ac.UserAgent = "rivet-conductor (" + name + ")"
	}
	c.agents = agentclient.New(ac)
	if c.engine, err = provision.New(fed, cfg.Drivers, c.agents, pc); err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	var imgs http.Handler
	if cfg.ImageDir != "" {
		if c.images, err = images.New(cfg.ImageDir, log); err != nil {
			return nil, fmt.Errorf("conductor: %w", err)
		}
		imgs = downloads(c.images, cfg.Timeouts.download())
	}
	handler := api.New(api.Config{Store: fed, Provisioner: c.engine.Provisioning(), Power: c.engine.Power(),
		Ramdisk: c.engine.Ramdisk(), Inspector: c.engine.Inspection(), Drivers: c.engine,
		HostPaths: c.engine.Provisioning(), Conductor: host, Images: imgs, AgentImages: agentImages,
		Boot: downloads(bootHandler, cfg.Timeouts.download()), Logger: log})
	dashAuth := cfg.DashboardAuth
	if dashAuth == nil && c.guard.Strategy() == auth.HTTPBasic {
		// The dashboard logs browsers in with the API's users and roles.
		dashAuth = c.guard
	}
	if c.dash, err = dashboard.New(dashboard.Config{Store: fed, Feed: c.feed, Auth: dashAuth,
		Conductor: host, Logger: log}); err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	c.metrics = metrics.New()
	c.nodeStates = metrics.NewNodeStates(fed)
	c.metrics.Registry().MustRegister(c.nodeStates)
	c.metrics.GaugeFunc("dashboard_clients", "Open dashboard event streams.", func() float64 { return float64(c.dash.Clients()) })
	c.metrics.GaugeFunc("changefeed_subscribers", "Open change-feed subscriptions.", func() float64 { return float64(c.feed.Subscribers()) })
	if cfg.MetricsListen != "" {
		if c.metricsLn, err = listenLoopback(cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("conductor: metrics: %w", err)
		}
	}
	top := http.NewServeMux()
	top.Handle("/dashboard/", c.dash)
	top.Handle("GET /metrics", c.metrics.Handler())
	top.Handle("/", handler)
	c.srv = &http.Server{
		Handler:  c.guard.Wrap(accessLog(log, c.metrics.Middleware(top))),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	cfg.Timeouts.apply(c.srv)
	if c.cert != nil {
		c.srv.TLSConfig = c.cert.TLSConfig()
	}
	ok = true
	return c, nil
}

// Reload re-reads the API's TLS certificate and key and its user and
// roles files (SIGHUP). What fails to load is logged and returned, and
// the version in use stays.
func (c *Conductor) Reload() error {
	var errs []error
	if c.cert != nil {
		if err := c.cert.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.guard.Reload(); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err != nil {
		c.log.Error("reload failed; what was in use stays in use", "error", err)
	}
	return err
}

// URL is the conductor's API URL (as nodes use it).
func (c *Conductor) URL() string { return c.url }

// Addr is the address the API listens on.
func (c *Conductor) Addr() net.Addr { return c.ln.Addr() }

// MetricsAddr is the address of the separate metrics listener, nil when
// there is none.
func (c *Conductor) MetricsAddr() net.Addr {
	if c.metricsLn == nil {
		return nil
	}
	return c.metricsLn.Addr()
}

// Run resumes interrupted work, serves until ctx ends, then shuts down:
// in-flight requests finish, background work stops (its state is
// persisted for the next run), and the store is closed.
func (c *Conductor) Run(ctx context.Context) error {
	defer c.close()
	if c.member != nil {
		// Join the cluster first: the engine's recovery asks it which
		// nodes are this conductor's.
		if err := c.member.Start(ctx); err != nil {
			return fmt.Errorf("conductor: %w", err)
		}
	}
	if err := c.engine.Start(ctx); err != nil {
		if ctx.Err() != nil {
			// Stopped (SIGTERM) while resuming work: not a failure.
			return nil
		}
		return fmt.Errorf("conductor: %w", err)
	}
	vctx, stopViews := context.WithCancel(ctx)
	defer func() {
		stopViews()
		c.views.Wait()
		c.feed.Close()
	}()
	c.feed.Start(vctx)
	c.views.Add(2)
	go func() {
		defer c.views.Done()
		c.dash.Run(vctx)
	}()
	go func() {
		defer c.views.Done()
		c.feed.Follow(vctx, c.nodeStates, changefeed.FollowOptions{Reload: 5 * time.Minute})
	}()
	if c.metricsLn != nil {
		mm := http.NewServeMux()
		mm.Handle("GET /metrics", c.metrics.Handler())
		msrv := &http.Server{Handler: mm}
		c.cfg.Timeouts.apply(msrv)
		go msrv.Serve(c.metricsLn) //nolint:errcheck // ends with Close
		defer msrv.Close()
	}
	errc := make(chan error, 2)
	go func() {
		if c.cert != nil {
			errc <- c.srv.ServeTLS(c.ln, "", "")
			return
		}
		errc <- c.srv.Serve(c.ln)
	}()
	bootDone := make(chan struct{})
	bootCtx, stopBoot := context.WithCancel(ctx)
	defer func() { stopBoot(); <-bootDone }()
	if c.boot != nil {
		ln := c.bootLn
		c.bootLn = nil // Serve owns it now
		go func() {
			defer close(bootDone)
			if err := c.boot.Serve(bootCtx, ln); err != nil {
				errc <- fmt.Errorf("boot services: %w", err)
			}
		}()
	} else {
		close(bootDone)
	}
	drivers := make([]string, len(c.cfg.Drivers))
	for i, d := range c.cfg.Drivers {
		drivers[i] = d.Name()
	}
	c.log.Info("conductor serving", "listen", c.ln.Addr().String(), "api_url", c.url, "dashboard", c.url+"/dashboard/",
		"db", backend.Describe(c.cfg.DBPath), "drivers", drivers, "image_dir", c.cfg.ImageDir,
		"auth_strategy", string(c.guard.Strategy()), "tls", c.cert != nil,
		"file_url_allowed_paths", c.files.Allowed())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	// Event streams end first, so that the shutdown need not wait for them.
	stopViews()
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
	defer cancel()
	if err := c.srv.Shutdown(sctx); err != nil {
		c.log.Warn("API shutdown incomplete", "error", err)
	}
	c.engine.Close()
	c.leaveCluster()
	c.log.Info("conductor stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("conductor: serve: %w", serveErr)
	}
	return nil
}

// Run builds a conductor from cfg and runs it until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	c, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// openNetBoot prepares the network boot services and opens their sockets,
// so that a conductor that cannot serve them fails at start.
func (c *Conductor) openNetBoot(nc netboot.Config, st store.Store) (http.Handler, error) {
	nc.Nodes = st
	if nc.HTTPURL == "" {
		nc.HTTPURL = c.url
	}
	if nc.Logger == nil {
		nc.Logger = c.log
	}
	var err error
	if c.boot, err = netboot.New(nc); err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	if c.bootLn, err = c.boot.Listen(); err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	return c.boot.Firmware(), nil
}

func (c *Conductor) close() {
	if c.bootLn != nil {
		c.bootLn.Close()
	}
	if c.boot != nil {
		c.boot.Close()
	}
	if c.engine != nil {
		c.engine.Close()
	}
	if c.agents != nil {
		c.agents.Close()
	}
	c.leaveCluster()
	if c.ln != nil {
		c.ln.Close()
	}
	if c.metricsLn != nil {
		c.metricsLn.Close()
	}
	if c.images != nil {
		c.images.Close()
	}
	if c.cache != nil {
		c.cache.Close()
	}
	if c.files != nil {
		c.files.Close()
	}
	if c.st != nil {
		if err := c.st.Close(); err != nil {
			c.log.Warn("closing the store failed", "error", err)
		}
	}
}

// protectedPaths are the conductor's own files and directories, which no
// allowed host path may reach.
func (c *Conductor) protectedPaths() []string {
	cfg := c.cfg
	p := append([]string{}, cfg.ProtectedPaths...)
	if cfg.DBPath != "" && !postgres.IsDSN(cfg.DBPath) {
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			p = append(p, cfg.DBPath+suffix)
		}
	}
	return append(p, cfg.ImageCacheDir, cfg.Provision.StateDir, cfg.TLSCertFile, cfg.TLSKeyFile,
		cfg.Auth.UserFile, cfg.Auth.RolesFile)
}

// leaveCluster releases this conductor's node leases, once its engine has
// stopped, so that the other conductors take its nodes over at once.
func (c *Conductor) leaveCluster() {
	if c.member == nil {
		return
	}
	if err := c.member.Close(); err != nil {
		c.log.Warn("leaving the conductor cluster failed; peers take over when the leases expire", "error", err)
	}
}

// listenLoopback listens on addr, which must name a loopback address.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("listen %s: not a loopback address (this listener has no TLS or authentication; scrape the API's /metrics instead)", addr)
	}
	return net.Listen("tcp", addr)
}

// urlOf is the URL of a listen address, 127.0.0.1 standing for a
// wildcard host.
func urlOf(scheme string, a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return scheme + "://" + a.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return scheme + "://" + net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}

// accessLog logs each request at debug level (method, path, status and
// the authenticated user; never the query string, body or credentials,
// which may carry secrets).
func accessLog(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		var user string
		if id, ok := auth.IdentityFrom(r.Context()); ok {
			user = id.Name
		}
		log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"api_version", r.Header.Get(wire.APIVersionHeader), "user", user,
			"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the status.
func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// ReadFrom keeps the underlying writer's zero-copy path (sendfile) for
// image downloads.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
