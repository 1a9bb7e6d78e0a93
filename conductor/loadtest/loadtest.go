// Package loadtest measures a conductor under the traffic of a fleet of
// deploy ramdisks. It starts a rivet-conductor process on SQLite, enrolls
// N fake-hardware nodes through the API and deploys them all; N simulated
// agents then look their nodes up and heartbeat with rivet-agent's own
// lookup and heartbeat clients (IPA's timing: a heartbeat every
// heartbeat_timeout × U(0.3, 0.6), the cadence compressed by a short
// heartbeat timeout), and answer the conductor's command polling and
// step calls from one HTTP server, with image writes that outlast the run.
// It reports the latency percentiles and errors of lookups and heartbeats,
// the request rate, the CPU used by the conductor and by the machine, the
// conductor's garbage collections during the boot storm, and where the
// storm's request times went: the conductor's handlers and both
// processes' goroutines waiting to run (read from the conductor's /metrics
// and this process's runtime).
package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/rivetmetal/rivet/heartbeat"
	"github.com/rivetmetal/rivet/lookup"
	"github.com/rivetmetal/rivet/wire"
)

// Config configures one run. Zero values take the defaults.
type Config struct {
	// Conductor is the rivet-conductor binary (required).
	Conductor string
	// ConductorArgs are extra flags for the conductor (e.g. to tune or
	// profile it).
	ConductorArgs []string
	// Agents is the number of nodes and simulated agents (default 1000).
	Agents int
	// HeartbeatTimeout is the conductor's ramdisk heartbeat timeout, which
	// sets the agents' cadence (default 30 s: a heartbeat every 9–18 s).
	HeartbeatTimeout time.Duration
	// Boot spreads the agents' first lookup over this long (default one
	// heartbeat interval, 0.45 × HeartbeatTimeout).
	Boot time.Duration
	// StormTimeout bounds the boot storm after the boot window: the run
	// fails if some agent has not heartbeated, or been given its image
	// write, by then (default 10 minutes).
	StormTimeout time.Duration
	// Duration is the measured window (default 60 s). It opens once the
	// boot storm is over: every agent has looked up, heartbeated and been
	// given its image write, so that the window measures the steady state.
	Duration time.Duration
	// AgentTimeout bounds each request of an agent (default 30 s). A
	// lookup the conductor answered after its agent gave up strands the
	// agent: the token was handed out, and later lookups get "******".
	AgentTimeout time.Duration
	// Conns caps the agents' connections to the conductor (default
	// 8192): real agents each hold their own, but 20,000 of them would
	// need more file descriptors than this machine grants a process
	// (20,000); a request waiting for a connection counts that wait in
	// its latency.
	Conns int
	// Seeders is the number of concurrent API clients enrolling nodes
	// (default 16).
	Seeders int
	// Dir holds the conductor's database and logs (default a new
	// temporary directory, removed afterwards).
	Dir string
	// Neighbour, when positive, runs a CPU-bound process (stress-ng) on
	// this many cores beside the conductor from the boot storm to the end.
	Neighbour int
	// StressNG is the stress-ng binary for Neighbour (default stress-ng
	// on PATH).
	StressNG string
	// DashboardSubscribers, when positive, keeps this many dashboard event
	// streams open through the measured window and times probe writes
	// until they reach them (Report.Dashboard; see MeasureDashboard).
	DashboardSubscribers int
	// Logger receives progress messages (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Conductor == "" {
		return errors.New("loadtest: no conductor binary")
	}
	if c.Agents <= 0 {
		c.Agents = 1000
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 30 * time.Second
	}
	if c.Boot <= 0 {
		c.Boot = c.HeartbeatTimeout * 45 / 100
	}
	if c.StormTimeout <= 0 {
		c.StormTimeout = 10 * time.Minute
	}
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.AgentTimeout <= 0 {
		c.AgentTimeout = 30 * time.Second
	}
	if c.Conns <= 0 {
		c.Conns = 8192
	}
	if c.Seeders <= 0 {
		c.Seeders = 16
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Report is the outcome of one run.
type Report struct {
	Agents           int
	HeartbeatTimeout time.Duration
	Window           time.Duration
	Lookups          Stats // every lookup, boot phase included
	Heartbeats       Stats // heartbeats sent in the measured window
	// BootHeartbeats are the heartbeats sent during the boot storm, from
	// the first agent's boot until every agent's write had started, which
	// took BootStorm.
	BootHeartbeats Stats
	BootStorm      time.Duration
	// Polls and Posts count the conductor's calls to the agents' command
	// API in the window.
	Polls, Posts int64
	// ConductorCPU is the conductor process's CPU time over the window,
	// in cores (1.0 = one core busy); MachineCPU is the whole machine's
	// busy fraction of all its cores; Load1 is the 1-minute load average
	// at the end; Cores is the number of CPUs.
	ConductorCPU float64
	MachineCPU   float64
	Load1        float64
	Cores        int
	// ConductorRSS is the conductor's resident memory at the end (bytes),
	// ConductorPeakRSS its peak (VmHWM).
	ConductorRSS, ConductorPeakRSS int64
	// AgentsCPU is the load generator's own CPU (the simulated agents,
	// their command API and this process) over the window, in cores;
	// BootConductorCPU and BootAgentsCPU are the same over the boot
	// storm; BootLoad1 is the load average at the storm's end.
	AgentsCPU, BootConductorCPU, BootAgentsCPU float64
	BootLoad1                                  float64
	// BootLookups are the lookups sent during the boot storm.
	BootLookups Stats
	// BootGC is what the conductor's garbage collector did during the
	// boot storm (nil when its /metrics did not say).
	BootGC *GCStats
	// BootWaits says where the boot storm's request times went (nil when
	// the conductor's /metrics did not say).
	BootWaits *WaitStats
	// BootMachine is who used the machine's CPU during the boot storm.
	BootMachine MachineCPU
	// CoreProbe is how long a fixed piece of conductor-like work took on
	// one core just before the storm, the machine otherwise idle
	// (probeCore): the longer, the slower this machine's cores were then.
	CoreProbe time.Duration
	// Neighbour is the number of cores the CPU-bound neighbour ran on.
	Neighbour int
	// Stuck counts nodes that left wait call-back / deploying (failed).
	Stuck int
	// Dashboard is the dashboard measurement (DashboardSubscribers > 0).
	Dashboard *DashboardReport
}

// Stats summarises requests of one kind.
type Stats struct {
	Count, Errors int
	P50, P99, Max time.Duration
	// Rate is Count per second of the window.
	Rate float64
	// FirstError is an example of the errors.
	FirstError string
}

// recorder collects request latencies.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int
	firstErr string
}

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, d)
	if err != nil {
		r.errs++
		if r.firstErr == "" {
			r.firstErr = err.Error()
		}
	}
}

func (r *recorder) stats(window time.Duration) Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{Count: len(r.lat), Errors: r.errs, FirstError: r.firstErr}
	if len(r.lat) == 0 {
		return s
	}
	l := slices.Clone(r.lat)
	slices.Sort(l)
	pct := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	s.P50, s.P99, s.Max = pct(0.50), pct(0.99), l[len(l)-1]
	if window > 0 {
		s.Rate = float64(len(l)) / window.Seconds()
	}
	return s
}

// conductorLog is the conductor's log file in the run's directory.
const conductorLog = "conductor.log"

// Run performs one load run and stops everything it started before
// returning. A failed run keeps its directory's conductor log (the
// error names it) and removes the rest.
func Run(ctx context.Context, cfg Config) (_ *Report, runErr error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "rivet-loadtest-")
		if err != nil {
			return nil, fmt.Errorf("loadtest: %w", err)
		}
		defer func() {
			if runErr == nil {
				os.RemoveAll(d)
				return
			}
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if e.Name() != conductorLog {
					os.RemoveAll(filepath.Join(d, e.Name()))
				}
			}
		}()
		dir = d
	}

	// The simulated agents' command API.
	agents := newAgentServer(cfg.Agents, 24*time.Hour)
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loadtest: agents listen: %w", err)
	}
	asrv := &http.Server{Handler: agents.handler(), ReadHeaderTimeout: 10 * time.Second}
	go asrv.Serve(aln) //nolint:errcheck // ends with Close
	defer asrv.Close()
	agentURL := func(i int) string { return fmt.Sprintf("http://%s/agent/%d", aln.Addr(), i) }

	cond, err := startConductor(ctx, cfg, dir)
	if err != nil {
		return nil, err
	}
	defer cond.stop()

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, MaxConnsPerHost: cfg.Conns, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	api := &apiClient{base: cond.url, c: client}

	log.Info("enrolling and deploying nodes", "nodes", cfg.Agents)
	start := time.Now()
	if err := seed(ctx, api, cfg); err != nil {
		return nil, fmt.Errorf("loadtest: %w (conductor log %s)", err, cond.logPath)
	}
	log.Info("nodes waiting for their agents", "nodes", cfg.Agents, "took", time.Since(start).Round(time.Second))

	// Boot the agents: lookup, then heartbeat until the run ends, with
	// rivet-agent's own clients; every request is timed on its way out.
	var lookups, bootLookups, heartbeats, bootBeats recorder
	// phase is what a heartbeat is recorded as: during the boot storm,
	// in the measured window, or not at all (between and after).
	var phase atomic.Int32
	record := func(req *http.Request, took time.Duration, err error) {
		switch {
		case strings.HasPrefix(req.URL.Path, "/v1/lookup"):
			lookups.add(took, err)
			if req.Context().Value(phaseKey{}) == phaseBoot {
				bootLookups.add(took, err)
			}
		case strings.HasPrefix(req.URL.Path, "/v1/heartbeat/"):
			switch req.Context().Value(phaseKey{}) {
			case phaseBoot:
				bootBeats.add(took, err)
			case phaseMeasuring:
				heartbeats.add(took, err)
			}
		}
	}
	// The core's speed now: the conductor waits for its agents, the
	// neighbour has not started.
	coreProbe, err := probeCore()
	if err != nil {
		return nil, err
	}
	var nb *neighbourProc
	if cfg.Neighbour > 0 {
		if nb, err = startNeighbour(cfg.StressNG, cfg.Neighbour, dir); err != nil {
			return nil, err
		}
		defer nb.stop()
		log.Info("CPU-bound neighbour running", "cores", cfg.Neighbour)
	}
	boot0, err := takeCPU(cond, nb)
	if err != nil {
		return nil, err
	}
	// The conductor's collector and wait histograms, and the load
	// generator's own waits to run, before the storm and after it.
	fams0, metricsErr := scrapeMetrics(ctx, client, cond.metricsURL)
	gen0, genErr := ownSchedWaits()
	bootStart := time.Now()
	actx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	var wg sync.WaitGroup
	ready := make(chan struct{}, cfg.Agents)
	for i := range cfg.Agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			if !sleep(actx, time.Duration(rng.Float64()*float64(cfg.Boot))) {
				return
			}
			a := agents.agents[i]
			c := &http.Client{Timeout: cfg.AgentTimeout, Transport: &timedTransport{base: client.Transport, phase: &phase, record: record}}
			res, err := lookup.Lookup(actx, lookup.Config{APIURLs: []string{cond.url}, MACs: []string{agentMAC(i)},
				APIVersion: wire.LookupAPIVersion, Interval: 5 * time.Second, MaxInterval: 5 * time.Second,
				Timeout: cfg.Boot + 10*time.Minute, Client: c, Logger: quiet})
			if err != nil {
				return
			}
			a.setToken(res.Token())
			var first sync.Once
			bctx, stop := context.WithCancel(actx)
			defer stop()
			a.onPowerOff(stop)
			err = heartbeat.New(heartbeat.Config{APIURL: cond.url, NodeUUID: res.Node.UUID, CallbackURL: agentURL(i),
				Token: res.Token(), AgentVersion: "10.0.0", Timeout: cfg.HeartbeatTimeout, Client: c, Logger: quiet,
				Rand: rng.Float64, OnBeat: func(int, error) { first.Do(func() { ready <- struct{}{} }) },
			}).Run(bctx)
			if err != nil && actx.Err() == nil && bctx.Err() == nil {
				log.Warn("agent stopped heartbeating", "agent", i, "error", err)
			}
		}()
	}
	stormDeadline := time.NewTimer(time.Until(bootStart.Add(cfg.Boot + cfg.StormTimeout)))
	defer stormDeadline.Stop()
	for i := range cfg.Agents {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-stormDeadline.C:
			return nil, fmt.Errorf("loadtest: only %d of %d agents heartbeated within the boot window and -storm-timeout (conductor log %s)",
				i, cfg.Agents, cond.logPath)
		}
	}
	// The conductor may still be working through the boot storm's backlog
	// (steps to fetch and start on every node): wait until every agent
	// writes its image.
	for agents.writesStarted.Load() < int64(cfg.Agents) {
		if time.Since(bootStart) > cfg.Boot+cfg.StormTimeout {
			return nil, fmt.Errorf("loadtest: only %d of %d agents were given their image write (conductor log %s)",
				agents.writesStarted.Load(), cfg.Agents, cond.logPath)
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	bootTook := time.Since(bootStart)
	phase.Store(phaseSettled)
	boot1, err := takeCPU(cond, nb)
	if err != nil {
		return nil, err
	}
	bootLoad1, _ := loadavg()
	bootGC, bootWaits := stormMetrics(ctx, log, client, cond.metricsURL, fams0, metricsErr, gen0, genErr)
	log.Info("boot storm over: every agent writes its image", "took", bootTook.Round(time.Second))
	var dash *Dashboard
	if cfg.DashboardSubscribers > 0 {
		probe := make([]string, min(cfg.Agents, maxProbeNodes))
		for i := range probe {
			probe[i] = fmt.Sprintf("load-%05d", i)
		}
		if dash, err = OpenDashboard(ctx, cond.url, DashboardConfig{Subscribers: cfg.DashboardSubscribers, Nodes: probe}); err != nil {
			return nil, err
		}
		defer dash.Close()
		log.Info("dashboard streams open", "subscribers", cfg.DashboardSubscribers)
	}
	log.Info("measuring", "window", cfg.Duration)

	win0, err := takeCPU(cond, nb)
	if err != nil {
		return nil, err
	}
	polls0, posts0 := agents.polls.Load(), agents.posts.Load()
	phase.Store(phaseMeasuring)
	t0 := time.Now()
	var dashRep *DashboardReport
	if dash != nil {
		if dashRep, err = dash.Probe(ctx, cfg.Duration); err != nil {
			return nil, err
		}
	} else if !sleep(ctx, cfg.Duration) {
		return nil, ctx.Err()
	}
	phase.Store(phaseDone)
	window := time.Since(t0)
	win1, err := takeCPU(cond, nb)
	if err != nil {
		return nil, err
	}
	rep := &Report{Agents: cfg.Agents, HeartbeatTimeout: cfg.HeartbeatTimeout, Window: window,
		Lookups: lookups.stats(0), Heartbeats: heartbeats.stats(window),
		BootHeartbeats: bootBeats.stats(bootTook), BootStorm: bootTook,
		Polls: agents.polls.Load() - polls0, Posts: agents.posts.Load() - posts0,
		Dashboard:    dashRep,
		ConductorCPU: (win1.conductor - win0.conductor).Seconds() / window.Seconds(),
		MachineCPU:   win1.machine.busyFraction(win0.machine), Cores: win1.machine.cores,
		AgentsCPU:        (win1.generator - win0.generator).Seconds() / window.Seconds(),
		BootConductorCPU: (boot1.conductor - boot0.conductor).Seconds() / bootTook.Seconds(),
		BootAgentsCPU:    (boot1.generator - boot0.generator).Seconds() / bootTook.Seconds(),
		BootLoad1:        bootLoad1, BootLookups: bootLookups.stats(bootTook), BootGC: bootGC, BootWaits: bootWaits,
		BootMachine: boot1.machineSince(boot0), CoreProbe: coreProbe, Neighbour: cfg.Neighbour}
	rep.Load1, _ = loadavg()
	rep.ConductorRSS, _ = cond.memory("VmRSS:")
	rep.ConductorPeakRSS, _ = cond.memory("VmHWM:")
	stopAgents()
	wg.Wait()
	if rep.Stuck, err = api.countOutside(ctx, "wait call-back", "deploying"); err != nil {
		return nil, err
	}
	return rep, nil
}

// stormMetrics reads the conductor's /metrics at the end of the boot
// storm and returns what its collector did and where the requests' times
// went since fams0 (read at its start, or failed with err0), with gen0 the
// load generator's own waits then. Figures it cannot have are nil, with a
// warning: a conductor built without them still gets its run.
func stormMetrics(ctx context.Context, log *slog.Logger, client *http.Client, url string,
	fams0 map[string]*dto.MetricFamily, err0 error, gen0 histogram, genErr error) (*GCStats, *WaitStats) {
	fams1, err := fams0, err0
	if err == nil {
		fams1, err = scrapeMetrics(ctx, client, url)
	}
	if err != nil {
		log.Warn("no figures from the conductor's metrics for the boot storm", "error", err)
		return nil, nil
	}
	var gc *GCStats
	gc0, err := gcFrom(fams0)
	if err == nil {
		var gc1 gcSample
		if gc1, err = gcFrom(fams1); err == nil {
			st := gc1.since(gc0)
			gc = &st
		}
	}
	if err != nil {
		log.Warn("no garbage-collection figures for the boot storm", "error", err)
	}
	waits, err := stormWaits(fams0, fams1, gen0, genErr)
	if err != nil {
		log.Warn("no wait figures for the boot storm", "error", err)
	}
	return gc, waits
}

// stormWaits is where the storm's request times went, from the
// conductor's histograms before and after it and the load generator's own
// waits to run.
func stormWaits(fams0, fams1 map[string]*dto.MetricFamily, gen0 histogram, genErr error) (*WaitStats, error) {
	if genErr != nil {
		return nil, genErr
	}
	w0, err := waitsFrom(fams0)
	if err != nil {
		return nil, err
	}
	w1, err := waitsFrom(fams1)
	if err != nil {
		return nil, err
	}
	gen1, err := ownSchedWaits()
	if err != nil {
		return nil, err
	}
	gen, err := gen1.since(gen0)
	if err != nil {
		return nil, fmt.Errorf("the load generator's waits to run: %w", err)
	}
	return w1.since(w0, gen)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Phases of a run, for the heartbeats sent in them.
const (
	phaseBoot int32 = iota
	phaseSettled
	phaseMeasuring
	phaseDone
)

// phaseKey marks a heartbeat request with the phase it was sent in.
type phaseKey struct{}

// quiet drops the agents' client logs: thousands of agents retrying a
// lookup would drown the report.
var quiet = slog.New(slog.DiscardHandler)

// agentMAC is the MAC of simulated agent i.
func agentMAC(i int) string {
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
}

// timedTransport times every request a simulated agent sends and hands
// its latency and outcome (a transport error, or a status other than 2xx)
// to record; a heartbeat is tagged with the phase it was sent in.
type timedTransport struct {
	base   http.RoundTripper
	phase  *atomic.Int32
	record func(req *http.Request, took time.Duration, err error)
}

// RoundTrip implements http.RoundTripper.
func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.WithContext(context.WithValue(req.Context(), phaseKey{}, t.phase.Load()))
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	outcome := err
	if err == nil && resp.StatusCode/100 != 2 {
		outcome = fmt.Errorf("%s %s: HTTP %d", req.Method, req.URL.Path, resp.StatusCode)
	}
	if req.Context().Err() == nil {
		t.record(req, time.Since(start), outcome)
	}
	return resp, err
}

// startConductor starts the conductor under test on a free 127.0.0.1
// port, its /metrics on another, and waits until it serves.
func startConductor(ctx context.Context, cfg Config, dir string) (*server, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	metricsAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, conductorLog)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	defer logf.Close()
	args := append([]string{"--listen", addr, "--metrics-listen", metricsAddr, "--db", filepath.Join(dir, "rivet.db"),
		"--state-dir", filepath.Join(dir, "state"), "--log-level", "warn",
		"--ramdisk-heartbeat-timeout", cfg.HeartbeatTimeout.String(),
		"--deploy-callback-timeout", "24h",
		// The load test measures deploys: provide goes straight to
		// available (ConductorArgs may turn cleaning back on).
		"--automated-clean=false"}, cfg.ConductorArgs...)
	cmd := exec.Command(cfg.Conductor, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	s, err := startServer(ctx, "conductor", cmd, "http://"+addr, logPath, syscall.SIGTERM, 60*time.Second,
		func(url string) (bool, error) {
			resp, err := http.Get(url + "/")
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			return true, nil
		})
	if err != nil {
		return nil, err
	}
	s.metricsURL = "http://" + metricsAddr + "/metrics"
	return s, nil
}

// freeLoopbackAddr is a 127.0.0.1 address with a port free a moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("loadtest: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func loadavg() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.Fields(string(b))[0], 64)
}

// apiClient speaks the conductor's Ironic API.
type apiClient struct {
	base string
	c    *http.Client
}

// do sends a request and decodes a JSON answer into out; a status other
// than want is an error.
func (a *apiClient) do(ctx context.Context, method, path, version string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set(wire.APIVersionHeader, version)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := a.c.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, strings.SplitN(path, "?", 2)[0], resp.StatusCode, wire.FaultText(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// count is the number of nodes in a provision state.
func (a *apiClient) count(ctx context.Context, state string) (int, error) {
	var list struct {
		Nodes []json.RawMessage `json:"nodes"`
	}
	err := a.do(ctx, http.MethodGet, "/v1/nodes?"+url.Values{"provision_state": {state}, "fields": {"uuid"}, "limit": {"0"}}.Encode(),
		"1.82", nil, &list, http.StatusOK)
	return len(list.Nodes), err
}

// countOutside is the number of nodes in none of the states.
func (a *apiClient) countOutside(ctx context.Context, states ...string) (int, error) {
	var list struct {
		Nodes []struct {
			State string `json:"provision_state"`
		} `json:"nodes"`
	}
	if err := a.do(ctx, http.MethodGet, "/v1/nodes?fields=uuid,provision_state&limit=0", "1.82", nil, &list, http.StatusOK); err != nil {
		return 0, err
	}
	n := 0
	for _, nd := range list.Nodes {
		if !slices.Contains(states, nd.State) {
			n++
		}
	}
	return n, nil
}

// seed enrolls cfg.Agents fake-hardware nodes and deploys them, phase by
// phase, until all wait for their agent's call-back.
func seed(ctx context.Context, api *apiClient, cfg Config) error {
	uuids := make([]string, cfg.Agents)
	each := func(what string, fn func(i int) error) error {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			first error
		)
		next := make(chan int)
		for range cfg.Seeders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if err := fn(i); err != nil {
						mu.Lock()
						if first == nil {
							first = fmt.Errorf("%s node %d: %w", what, i, err)
						}
						mu.Unlock()
					}
				}
			}()
		}
	feed:
		for i := range cfg.Agents {
			select {
			case next <- i:
			case <-ctx.Done():
				break feed
			}
		}
		close(next)
		wg.Wait()
		if first == nil {
			first = ctx.Err()
		}
		return first
	}
	waitAll := func(state string) error {
		for {
			n, err := api.count(ctx, state)
			if err != nil {
				return err
			}
			if n == cfg.Agents {
				return nil
			}
			if !sleep(ctx, 500*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	provision := func(target string) func(i int) error {
		return func(i int) error {
			return api.do(ctx, http.MethodPut, "/v1/nodes/"+uuids[i]+"/states/provision", "1.82",
				map[string]any{"target": target}, nil, http.StatusAccepted)
		}
	}
	err := each("create", func(i int) error {
		var n struct {
			UUID string `json:"uuid"`
		}
		body := map[string]any{"name": fmt.Sprintf("load-%05d", i), "driver": "fake-hardware",
			"instance_info": map[string]any{
				"image_source": "http://127.0.0.1:1/image.raw", "image_os_hash_algo": "sha256",
				"image_os_hash_value": strings.Repeat("ab", 32), "image_disk_format": "raw"}}
		if err := api.do(ctx, http.MethodPost, "/v1/nodes", "1.82", body, &n, http.StatusCreated); err != nil {
			return err
		}
		uuids[i] = n.UUID
		return api.do(ctx, http.MethodPost, "/v1/ports", "1.82", map[string]any{"address": agentMAC(i), "node_uuid": n.UUID}, nil, http.StatusCreated)
	})
	if err != nil {
		return err
	}
	for _, phase := range []struct{ target, state string }{
		{"manage", "manageable"}, {"provide", "available"}, {"active", "wait call-back"},
	} {
		if err := each(phase.target, provision(phase.target)); err != nil {
			return err
		}
		if err := waitAll(phase.state); err != nil {
			return fmt.Errorf("waiting for %s: %w", phase.state, err)
		}
	}
	return nil
}

// neighbourProc is the CPU-bound process run beside the conductor.
type neighbourProc struct {
	cmd  *exec.Cmd
	done chan error
}

// startNeighbour runs stress-ng's CPU stressor on cores workers (a
// tight loop each, at normal priority) until stopped.
func startNeighbour(bin string, cores int, dir string) (*neighbourProc, error) {
	if bin == "" {
		bin = "stress-ng"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("loadtest: CPU-bound neighbour: %w (scripts/install-deps.sh bench installs stress-ng)", err)
	}
	logf, err := os.Create(filepath.Join(dir, "neighbour.log"))
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(path, "--cpu", strconv.Itoa(cores), "--cpu-method", "loop", "--timeout", "0", "--quiet")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = conductorProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: start CPU-bound neighbour: %w", err)
	}
	p := &neighbourProc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// cpuTime is the CPU time so far of the neighbour's process and its
// workers alive now (none without a neighbour). The process itself gone
// is an error: the run is no longer beside a CPU-bound neighbour.
func (p *neighbourProc) cpuTime() (time.Duration, error) {
	if p == nil {
		return 0, nil
	}
	ps, err := processTree(p.cmd.Process.Pid)
	if err != nil {
		return 0, fmt.Errorf("loadtest: CPU-bound neighbour's CPU: %w", err)
	}
	d, err := cpuOf(ps)
	if err != nil {
		return 0, fmt.Errorf("loadtest: CPU-bound neighbour's CPU: %w", err)
	}
	return d, nil
}

// stop ends the neighbour (SIGTERM, which stress-ng passes on to its
// workers, then SIGKILL after 10 s).
func (p *neighbourProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
