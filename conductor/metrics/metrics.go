// Package metrics is the conductor's Prometheus instrumentation
// (prometheus/client_golang): one registry holding the Go and process
// collectors and Rivet's metric families, the /metrics handler, an HTTP
// middleware that times API requests by route pattern and status (and
// counts ramdisk heartbeats and lookups), the goroutines' waits to run, a
// gauge of nodes by provision and power state kept from the change feed,
// and Recorder, the small API through which the provision engine reports
// phase durations, agent-call errors, image-cache use and lease takeovers.
//
// Every label takes values from a bounded set: route patterns (never raw
// paths), status codes, state names, and the phase, command and result
// names the callers pass as constants. docs/metrics.md lists the metrics.
package metrics

import (
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every conductor metric.
const Namespace = "rivet_conductor"

// Phase kinds of PhaseDone.
const (
	KindDeploy = "deploy"
	KindClean  = "clean"
)

// DeployPhases are the deploy timing phases the engine records (see
// conductor/provision's timings); their series exist from the start.
var DeployPhases = []string{"boot_to_lookup", "download_write", "bootloader", "power", "total"}

// Metrics is the conductor's registry and metric families.
type Metrics struct {
	reg *prometheus.Registry

	requests   *prometheus.HistogramVec
	heartbeats *prometheus.CounterVec
	lookups    *prometheus.CounterVec

	phases          *prometheus.HistogramVec
	agentErrors     *prometheus.CounterVec
	imageCacheBytes prometheus.Gauge
	imageCacheReqs  *prometheus.CounterVec
	leaseTakeovers  prometheus.Counter
}

// gcRuntimeMetrics are the runtime/metrics the Go collector exports
// beside its defaults: the garbage collector's completed cycles
// (go_gc_cycles_total_gc_cycles_total) and the runtime's estimate of the
// CPU time they took (go_cpu_classes_gc_total_cpu_seconds_total; its
// workers' wall time, so an overestimate when the machine is short of
// CPU). Under load the conductor's latency tail follows its collector's
// marking (docs/conductor-scaling.md).
var gcRuntimeMetrics = regexp.MustCompile(`^/(gc/cycles/total:gc-cycles|cpu/classes/gc/total:cpu-seconds)$`)

// New returns a registry with the Go and process collectors and every
// conductor family registered.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: gcRuntimeMetrics})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newSchedCollector())
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "http_request_duration_seconds",
			Help:    "API request latency by route pattern (method and path pattern; \"other\" for unrouted paths) and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "code"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "heartbeats_total",
			Help: "Ramdisk heartbeats received, by result (accepted: 2xx; rejected: any other status).",
		}, []string{"result"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "lookups_total",
			Help: "Ramdisk lookups received, by result (found, not_found, error).",
		}, []string{"result"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "phase_duration_seconds",
			Help:    "Duration of the phases of deploys and cleanings, by kind (deploy, clean) and phase (agent_decode_input_wait, agent_decode_output_wait and agent_decode_cpu: where the agent's decoder spent agent_decode).",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 15), // 0.5 s … 2.3 h
		}, []string{"kind", "phase"}),
		agentErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "agent_call_errors_total",
			Help: "Failed calls to agents' command API, by command.",
		}, []string{"command"}),
		imageCacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "image_cache_bytes",
			Help: "Bytes held by the conductor's image cache.",
		}),
		imageCacheReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "image_cache_requests_total",
			Help: "Image-cache lookups, by result (hit, miss).",
		}, []string{"result"}),
		leaseTakeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "lease_takeovers_total",
			Help: "Node leases this conductor took over from another conductor.",
		}),
	}
	reg.MustRegister(m.requests, m.heartbeats, m.lookups, m.phases, m.agentErrors,
		m.imageCacheBytes, m.imageCacheReqs, m.leaseTakeovers)
	// Series that exist before their first event, so that dashboards and
	// alerts see zeros rather than nothing.
	for _, r := range []string{"accepted", "rejected"} {
		m.heartbeats.WithLabelValues(r)
	}
	for _, r := range []string{"found", "not_found", "error"} {
		m.lookups.WithLabelValues(r)
	}
	for _, r := range []string{"hit", "miss"} {
		m.imageCacheReqs.WithLabelValues(r)
	}
	for _, p := range DeployPhases {
		m.phases.WithLabelValues(KindDeploy, p)
	}
	return m
}

// Registry is the registry, for collectors registered elsewhere.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: 4})
}

// GaugeFunc registers a gauge (Namespace_name) whose value fn returns at
// scrape time.
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, fn))
}

// Recorder is what the provision engine reports, in calls it makes as
// things happen. Arguments that become labels must come from bounded sets
// (constants): phase names, agent command names.
type Recorder interface {
	// PhaseDone records that a phase of a deploy or a cleaning (kind
	// KindDeploy or KindClean) took d.
	PhaseDone(kind, phase string, d time.Duration)
	// AgentCallError counts a failed call of an agent command (e.g.
	// "standby.get_partition_uuids").
	AgentCallError(command string)
	// ImageCacheLookup counts an image-cache lookup that found the image
	// cached (hit) or had to download it.
	ImageCacheLookup(hit bool)
	// ImageCacheSize sets the bytes the image cache holds.
	ImageCacheSize(bytes int64)
	// LeaseTakeover counts a node lease taken over from another
	// conductor.
	LeaseTakeover()
}

// Nop is a Recorder that records nothing.
type Nop struct{}

// PhaseDone implements Recorder.
func (Nop) PhaseDone(string, string, time.Duration) {}

// AgentCallError implements Recorder.
func (Nop) AgentCallError(string) {}

// ImageCacheLookup implements Recorder.
func (Nop) ImageCacheLookup(bool) {}

// ImageCacheSize implements Recorder.
func (Nop) ImageCacheSize(int64) {}

// LeaseTakeover implements Recorder.
func (Nop) LeaseTakeover() {}

var (
	_ Recorder = Nop{}
	_ Recorder = (*Metrics)(nil)
)

// PhaseDone implements Recorder.
func (m *Metrics) PhaseDone(kind, phase string, d time.Duration) {
	m.phases.WithLabelValues(kind, phase).Observe(d.Seconds())
}

// AgentCallError implements Recorder.
func (m *Metrics) AgentCallError(command string) { m.agentErrors.WithLabelValues(command).Inc() }

// ImageCacheLookup implements Recorder.
func (m *Metrics) ImageCacheLookup(hit bool) {
	r := "miss"
	if hit {
		r = "hit"
	}
	m.imageCacheReqs.WithLabelValues(r).Inc()
}

// ImageCacheSize implements Recorder.
func (m *Metrics) ImageCacheSize(bytes int64) { m.imageCacheBytes.Set(float64(bytes)) }

// LeaseTakeover implements Recorder.
func (m *Metrics) LeaseTakeover() { m.leaseTakeovers.Inc() }
