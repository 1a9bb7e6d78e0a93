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
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/api"
	"github.com/rivetmetal/rivet/conductor/boot"
	"github.com/rivetmetal/rivet/conductor/cluster"
	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/backend"
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
	// http://<listen address>, with 127.0.0.1 for a wildcard host.
	APIURL string
	// ImageDir, when set, is served read-only under /images/.
	ImageDir string
	// ImageCacheDir, when set, holds the conductor's image cache: images
	// nodes must not fetch from their source themselves (file:// sources,
	// image_download_source "http"/"local") are downloaded there once,
	// verified, and served under /agent_images/. Empty refuses them.
	ImageCacheDir string
	// Drivers are the enabled power drivers.
	Drivers []power.Driver
	// Provision configures the engine (deploy ramdisk defaults, timeouts);
	// its APIURL, Conductor and Logger are filled in by New.
	Provision provision.Config
	// Agent configures the agent client.
	Agent agentclient.Config
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
	srv    *http.Server
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
	c.ln = cfg.Listener
	if c.ln == nil {
		if c.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("conductor: listen %s: %w", cfg.Listen, err)
		}
	}
	c.url = cfg.APIURL
	if c.url == "" {
		c.url = urlOf(c.ln.Addr())
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
	var agentImages http.Handler
	if cfg.ImageCacheDir != "" {
		if c.cache, err = images.NewCache(cfg.ImageCacheDir, log); err != nil {
			return nil, fmt.Errorf("conductor: %w", err)
		}
		pc.ImageCache, agentImages = c.cache, c.cache
	}
	bootHandler, err := boot.New(boot.Config{Nodes: st, APIURL: c.url,
		DeployKernel: pc.DeployKernel, DeployRamdisk: pc.DeployRamdisk, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	ac := cfg.Agent
	ac.Logger = log
	c.agents = agentclient.New(ac)
	if c.engine, err = provision.New(st, cfg.Drivers, c.agents, pc); err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	var imgs http.Handler
	if cfg.ImageDir != "" {
		if c.images, err = images.New(cfg.ImageDir, log); err != nil {
			return nil, fmt.Errorf("conductor: %w", err)
		}
		imgs = c.images
	}
	handler := api.New(api.Config{Store: st, Provisioner: c.engine.Provisioning(), Power: c.engine.Power(),
		Ramdisk: c.engine.Ramdisk(), Inspector: c.engine.Inspection(), Drivers: c.engine,
		Conductor: host, Images: imgs, AgentImages: agentImages, Boot: bootHandler, Logger: log})
	c.srv = &http.Server{
		Handler:           accessLog(log, handler),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ok = true
	return c, nil
}

// URL is the conductor's API URL (as nodes use it).
func (c *Conductor) URL() string { return c.url }

// Addr is the address the API listens on.
func (c *Conductor) Addr() net.Addr { return c.ln.Addr() }

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
		return fmt.Errorf("conductor: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.srv.Serve(c.ln) }()
	drivers := make([]string, len(c.cfg.Drivers))
	for i, d := range c.cfg.Drivers {
		drivers[i] = d.Name()
	}
	c.log.Info("conductor serving", "listen", c.ln.Addr().String(), "api_url", c.url,
		"db", backend.Describe(c.cfg.DBPath), "drivers", drivers, "image_dir", c.cfg.ImageDir)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
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

func (c *Conductor) close() {
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
	if c.images != nil {
		c.images.Close()
	}
	if c.cache != nil {
		c.cache.Close()
	}
	if c.st != nil {
		if err := c.st.Close(); err != nil {
			c.log.Warn("closing the store failed", "error", err)
		}
	}
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

// urlOf is the http URL of a listen address, 127.0.0.1 standing for a
// wildcard host.
func urlOf(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}

// accessLog logs each request at debug level (method, path and status;
// never the query string or body, which may carry secrets).
func accessLog(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"api_version", r.Header.Get(wire.APIVersionHeader),
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
