// Package metrics is the agent's Prometheus instrumentation
// (prometheus/client_golang): the Go and process collectors, and the
// progress of the image write running or last run — bytes read, written
// and skipped, the expected total, the rate, the estimated time left, the
// phase and, once phases have ended, their timings (with how the decode
// stage spent a compressed image's write) — read at scrape time from a
// snapshot function, so the write path pays nothing for it. The agent's
// API serves Handler at /metrics.
//
// The byte counts are gauges, not counters: they are the counts of one
// write, and start again at zero with the next.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rivetmetal/rivet/wire"
)

// Namespace prefixes every agent metric.
const Namespace = "rivet_agent"

// ProgressFunc returns the progress of the image write running or last
// run, nil when there has been none. It is called at every scrape and
// must be safe to call from any goroutine.
type ProgressFunc func() *wire.Progress

// Metrics is the agent's registry.
type Metrics struct {
	reg *prometheus.Registry
}

// New returns a registry with the Go and process collectors and the write
// progress read through progress.
func New(progress ProgressFunc) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newProgressCollector(progress))
	return &Metrics{reg: reg}
}

// Registry is the registry, for collectors registered elsewhere.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: 2})
}

// progressCollector exposes a wire.Progress.
type progressCollector struct {
	progress ProgressFunc
	read, written, skipped, total, rate, eta, started, updated,
	phase, timing *prometheus.Desc
}

func newProgressCollector(progress ProgressFunc) *progressCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "image_write", name), help, labels, nil)
	}
	return &progressCollector{progress: progress,
		read:    d("bytes_read", "Image bytes received from the source by the current or last write."),
		written: d("bytes_written", "Bytes written to the target disk (the slowest, when several) by the current or last write."),
		skipped: d("bytes_skipped", "Zero bytes not written (the device zeroed them) by the current or last write."),
		total:   d("bytes_total", "Size of the image as served (0 when the source did not say)."),
		rate:    d("rate_bytes_per_second", "Average rate at which the image reaches the disk, since the write started."),
		eta:     d("eta_seconds", "Estimated time left of the write (-1 when unknown)."),
		started: d("started_timestamp_seconds", "When the current or last write started (Unix time)."),
		updated: d("updated_timestamp_seconds", "When the write's progress was last updated (Unix time)."),
		phase:   d("phase", "The write's current phase (1 for the phase it is in).", "phase"),
		timing: d("timing_seconds", "Seconds the current or last write spent in each phase that has ended (download, decode "+
			"and write overlap), and how its decoder spent the decode phase: waiting for input (decode_input_wait), "+
			"waiting for the disks (decode_output_wait), and its CPU time summed over its threads, which for an xz image's "+
			"parallel blocks can exceed the phase (decode_cpu).", "timing"),
	}
}

// Describe implements prometheus.Collector.
func (c *progressCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.read, c.written, c.skipped, c.total, c.rate, c.eta, c.started, c.updated, c.phase, c.timing} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: nothing before the first write.
func (c *progressCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.progress()
	if p == nil {
		return
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(c.read, float64(p.BytesRead))
	g(c.written, float64(p.BytesWritten))
	g(c.skipped, float64(p.BytesSkipped))
	g(c.total, float64(p.TotalBytes))
	g(c.rate, p.RateBytesPerSec)
	g(c.eta, p.ETASeconds)
	g(c.started, p.StartedAt)
	g(c.updated, p.UpdatedAt)
	if p.Phase != "" {
		g(c.phase, 1, p.Phase)
	}
	// The names are the writer's own phases and decode timings, a small
	// fixed set, never anything the image or a request names.
	for name, s := range p.Timings {
		g(c.timing, s, name)
	}
}
