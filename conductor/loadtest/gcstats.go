package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The conductor's garbage-collection counters in its /metrics
// (conductor/metrics).
const (
	gcCyclesMetric = "go_gc_cycles_total_gc_cycles_total"
	gcCPUMetric    = "go_cpu_classes_gc_total_cpu_seconds_total"
)

// GCStats is what the conductor's garbage collector did over a phase of
// the run.
type GCStats struct {
	// Cycles is the number of collections completed.
	Cycles int
	// CPU is the Go runtime's estimate of the CPU time they took: its
	// collector workers' wall time, so more than they ran when the
	// machine is short of CPU.
	CPU time.Duration
}

// gcSample is the conductor's garbage-collection counters at one moment.
type gcSample struct {
	cycles, cpuSeconds float64
}

// since is what the collector did from a to b.
func (b gcSample) since(a gcSample) GCStats {
	return GCStats{Cycles: int(b.cycles - a.cycles), CPU: time.Duration((b.cpuSeconds - a.cpuSeconds) * float64(time.Second))}
}

// maxMetricsBody bounds what is read of a /metrics answer.
const maxMetricsBody = 8 << 20

// scrapeMetrics reads and parses the Prometheus /metrics text at url.
func scrapeMetrics(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the conductor's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the conductor's metrics: %s: HTTP %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsBody))
	if err != nil {
		return nil, fmt.Errorf("parse the conductor's metrics: %w", err)
	}
	return fams, nil
}

// gcFrom reads the garbage-collection counters from parsed metrics.
func gcFrom(fams map[string]*dto.MetricFamily) (gcSample, error) {
	value := func(name string) (float64, error) {
		f, ok := fams[name]
		if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetCounter() == nil {
			return 0, fmt.Errorf("the conductor's metrics have no counter %s (a build without it?)", name)
		}
		return f.GetMetric()[0].GetCounter().GetValue(), nil
	}
	var s gcSample
	var err error
	if s.cycles, err = value(gcCyclesMetric); err != nil {
		return gcSample{}, err
	}
	if s.cpuSeconds, err = value(gcCPUMetric); err != nil {
		return gcSample{}, err
	}
	return s, nil
}
