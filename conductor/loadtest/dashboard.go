package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DashboardConfig configures a dashboard measurement: Subscribers browsers'
// event streams (/dashboard/api/events) kept open on the conductor while
// the load runs, and a probe write every ProbeInterval — a node's
// maintenance set with a unique reason through the API, then cleared —
// timed from the moment the write was sent until each subscriber received
// the change. Zero values take the defaults.
type DashboardConfig struct {
	// Subscribers is the number of event streams (default 100).
	Subscribers int
	// ProbeInterval is the time between probes (default 1 s).
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe may take to reach a subscriber
	// before it counts as missed (default 30 s).
	ProbeTimeout time.Duration
	// Nodes are the UUIDs of the nodes probes use, in turn (required).
	Nodes []string
}

// DashboardReport is what a dashboard measurement saw.
type DashboardReport struct {
	Subscribers int
	// Probes counts the probe writes made; Latency is, over every
	// subscriber and probe, the time from sending the write until the
	// change arrived (its Errors count the receptions missed).
	Probes  int
	Latency Stats
	// Writes is the latency of the probe writes themselves (the API call).
	Writes Stats
	// Snapshots counts full snapshots received during the measurement
	// (a subscriber that fell behind is sent the fleet again).
	Snapshots int64
	// Bytes counts the event-stream bytes received by all subscribers in
	// the window, after their first snapshot; BytesPerSec is per second.
	Bytes       int64
	BytesPerSec float64
}

// MeasureDashboard opens the subscribers on the conductor at base, probes
// for window and reports, stopping everything it started.
func MeasureDashboard(ctx context.Context, base string, cfg DashboardConfig, window time.Duration) (*DashboardReport, error) {
	d, err := OpenDashboard(ctx, base, cfg)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Probe(ctx, window)
}

// Dashboard is a set of open event streams on a conductor.
type Dashboard struct {
	cfg    DashboardConfig
	base   string
	client *http.Client
	subs   []*subscriber
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// OpenDashboard opens cfg.Subscribers event streams on the conductor at
// base and returns once each has received its first snapshot, so that a
// measurement can start in the steady state.
func OpenDashboard(ctx context.Context, base string, cfg DashboardConfig) (*Dashboard, error) {
	if cfg.Subscribers <= 0 {
		cfg.Subscribers = 100
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 30 * time.Second
	}
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("loadtest: dashboard: no nodes to probe")
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d := &Dashboard{cfg: cfg, base: base, stop: stop,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Subscribers + 8}}}
	ready := make(chan error, cfg.Subscribers)
	for range cfg.Subscribers {
		s := &subscriber{seen: map[int]time.Time{}}
		d.subs = append(d.subs, s)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			s.run(sctx, d.client, base+"/dashboard/api/events", ready)
		}()
	}
	for range d.subs {
		select {
		case err := <-ready:
			if err != nil {
				d.Close()
				return nil, fmt.Errorf("loadtest: dashboard: %w", err)
			}
		case <-ctx.Done():
			d.Close()
			return nil, ctx.Err()
		}
	}
	return d, nil
}

// Close ends the event streams and waits for their readers.
func (d *Dashboard) Close() {
	d.stop()
	d.wg.Wait()
	d.client.CloseIdleConnections()
}

// Probe makes a probe write every ProbeInterval for window, waits for the
// last ones to arrive (at most ProbeTimeout), and reports what the
// streams saw meanwhile.
func (d *Dashboard) Probe(ctx context.Context, window time.Duration) (*DashboardReport, error) {
	cfg, subs := d.cfg, d.subs
	for _, s := range subs {
		s.reset()
	}
	api := &apiClient{base: d.base, c: d.client}
	var (
		writes recorder
		sent   []time.Time
	)
	start := time.Now()
	t := time.NewTicker(cfg.ProbeInterval)
	defer t.Stop()
	// Probes go round a few nodes, each keeping its maintenance (with a
	// new reason each probe) until the end, so that no probe is undone
	// within a stream's coalescing window. Heartbeat processing ignores
	// maintenance; the load measured is unchanged.
	probeNodes := cfg.Nodes[:min(len(cfg.Nodes), maxProbeNodes)]
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, node := range probeNodes {
			_ = api.do(lctx, http.MethodDelete, "/v1/nodes/"+node+"/maintenance", "1.82", nil, nil, http.StatusAccepted)
		}
	}()
	for n := 0; time.Since(start) < window; n++ {
		node := probeNodes[n%len(probeNodes)]
		t0 := time.Now()
		err := api.do(ctx, http.MethodPut, "/v1/nodes/"+node+"/maintenance", "1.82", map[string]any{"reason": probeReason(n)}, nil, http.StatusAccepted)
		writes.add(time.Since(t0), err)
		sent = append(sent, t0)
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	elapsed := time.Since(start)
	// Let the last probes arrive.
	deadline := time.Now().Add(cfg.ProbeTimeout)
	for time.Now().Before(deadline) && !allSeen(subs, len(sent)) {
		if !sleep(ctx, 50*time.Millisecond) {
			return nil, ctx.Err()
		}
	}

	rep := &DashboardReport{Subscribers: len(subs), Probes: len(sent), Writes: writes.stats(elapsed)}
	var lat recorder
	for _, s := range subs {
		s.mu.Lock()
		for n, t0 := range sent {
			if at, ok := s.seen[n]; ok {
				lat.add(at.Sub(t0), nil)
			} else {
				lat.add(cfg.ProbeTimeout, fmt.Errorf("probe %d not received", n))
			}
		}
		s.mu.Unlock()
		rep.Snapshots += s.snapshots.Load()
		rep.Bytes += s.bytes.Load()
	}
	rep.Latency = lat.stats(0)
	rep.BytesPerSec = float64(rep.Bytes) / elapsed.Seconds()
	return rep, nil
}

// maxProbeNodes bounds the nodes probes put in maintenance.
const maxProbeNodes = 10

// probePrefix marks the probes' maintenance reasons.
const probePrefix = "loadtest-dashboard-probe-"

func probeReason(n int) string { return probePrefix + strconv.Itoa(n) }

func allSeen(subs []*subscriber, probes int) bool {
	for _, s := range subs {
		s.mu.Lock()
		n := len(s.seen)
		s.mu.Unlock()
		if n < probes {
			return false
		}
	}
	return true
}

// subscriber is one browser's event stream.
type subscriber struct {
	snapshots atomic.Int64
	bytes     atomic.Int64

	mu   sync.Mutex
	seen map[int]time.Time // probe → first arrival
}

// run reads the stream until ctx ends, reporting on ready once the first
// snapshot arrived (or the stream failed before).
func (s *subscriber) run(ctx context.Context, c *http.Client, url string, ready chan<- error) {
	reported := false
	report := func(err error) {
		if !reported {
			reported = true
			ready <- err
		}
	}
	defer report(errors.New("event stream ended before its first snapshot"))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		report(err)
		return
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		report(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		report(fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode))
		return
	}
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	var event string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		s.bytes.Add(int64(len(line)))
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimSpace(line[len("event: "):])
		case strings.HasPrefix(line, "data: "):
			at := time.Now()
			if event == "snapshot" {
				s.snapshots.Add(1)
				report(nil)
			}
			if strings.Contains(line, probePrefix) {
				s.note(line[len("data: "):], at)
			}
		}
	}
}

// reset starts a measurement: counts from zero, no probe seen.
func (s *subscriber) reset() {
	s.snapshots.Store(0)
	s.bytes.Store(0)
	s.mu.Lock()
	clear(s.seen)
	s.mu.Unlock()
}

// note records the probes an event carries.
func (s *subscriber) note(data string, at time.Time) {
	var ev struct {
		Nodes []struct {
			MaintenanceReason string `json:"maintenance_reason"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range ev.Nodes {
		if rest, ok := strings.CutPrefix(n.MaintenanceReason, probePrefix); ok {
			if k, err := strconv.Atoi(rest); err == nil {
				if _, dup := s.seen[k]; !dup {
					s.seen[k] = at
				}
			}
		}
	}
}
