package loadtest

import (
	"fmt"
	"math"
	rtmetrics "runtime/metrics"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// The conductor's histograms that say where a request's time went
// (conductor/metrics): its handlers' times by route, and its goroutines'
// waits to run.
const (
	requestMetric  = "rivet_conductor_http_request_duration_seconds"
	lookupRoute    = "GET /v1/lookup"
	heartbeatRoute = "POST /v1/heartbeat/{ident}"
	schedMetric    = "rivet_conductor_sched_latencies_seconds"
)

// Range is the histogram bucket a percentile falls in: Lo < p ≤ Hi, Hi
// infinite (math.MaxInt64) past the last bound.
type Range struct {
	Lo, Hi time.Duration
}

// String is "100–250 ms", "≤ 0.1 ms", "> 2.5 s", or "none" for the zero
// Range.
func (r Range) String() string {
	if r == (Range{}) {
		return "none"
	}
	unit := func(d time.Duration) (float64, string) {
		if d >= time.Second {
			return d.Seconds(), "s"
		}
		return float64(d) / float64(time.Millisecond), "ms"
	}
	hi, hiUnit := unit(r.Hi)
	lo, loUnit := unit(r.Lo)
	switch {
	case r.Hi == math.MaxInt64:
		return fmt.Sprintf("> %.3g %s", lo, loUnit)
	case r.Lo <= 0:
		return fmt.Sprintf("≤ %.3g %s", hi, hiUnit)
	case loUnit == hiUnit:
		return fmt.Sprintf("%.3g–%.3g %s", lo, hi, hiUnit)
	}
	return fmt.Sprintf("%.3g %s–%.3g %s", lo, loUnit, hi, hiUnit)
}

// WaitStats says where the boot storm's request times went, from
// histograms (so each p99 is a bucket's range): the conductor's handling
// of lookups and heartbeats, from the request read to the answer written
// (what the agents measured beyond it was spent in connections, queues
// and the two processes' scheduling), and how long goroutines waited,
// ready, for a CPU, in the conductor and in the load generator.
type WaitStats struct {
	// LookupHandler and HeartbeatHandler are the p99 of the conductor's
	// handlers for GET /v1/lookup and POST /v1/heartbeat/{ident}.
	LookupHandler, HeartbeatHandler Range
	// ConductorSched and GeneratorSched are the p99 of the conductor's
	// and the load generator's goroutines' waits to run.
	ConductorSched, GeneratorSched Range
}

// histogram is a cumulative histogram: cum[i] observations ≤ upper[i],
// count in all.
type histogram struct {
	upper []float64
	cum   []uint64
	count uint64
}

// since is the observations from a to h (same bounds; a may be empty,
// read before the conductor had any series of the family).
func (h histogram) since(a histogram) (histogram, error) {
	if len(a.upper) == 0 && a.count == 0 {
		return h, nil
	}
	if len(a.upper) != len(h.upper) {
		return histogram{}, fmt.Errorf("histogram bounds changed between samples (%d, then %d)", len(a.upper), len(h.upper))
	}
	d := histogram{upper: h.upper, cum: make([]uint64, len(h.cum)), count: h.count - a.count}
	for i := range h.cum {
		if a.upper[i] != h.upper[i] {
			return histogram{}, fmt.Errorf("histogram bound %d changed between samples (%g, then %g)", i, a.upper[i], h.upper[i])
		}
		d.cum[i] = h.cum[i] - a.cum[i]
	}
	return d, nil
}

// percentile is the bucket holding the p-quantile (0 < p ≤ 1); the zero
// Range when nothing was observed.
func (h histogram) percentile(p float64) Range {
	if h.count == 0 {
		return Range{}
	}
	rank := uint64(math.Ceil(p * float64(h.count)))
	lo := 0.0
	for i, c := range h.cum {
		if c >= rank {
			return Range{Lo: seconds(lo), Hi: seconds(h.upper[i])}
		}
		lo = h.upper[i]
	}
	return Range{Lo: seconds(lo), Hi: math.MaxInt64}
}

func seconds(s float64) time.Duration {
	if math.IsInf(s, 1) || s >= float64(math.MaxInt64)/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s * float64(time.Second))
}

// promHistogram adds up the histograms of family name whose labels
// include every pair of want (all of them when want is empty). With no
// such series yet it is empty, with the bounds of the family's others.
func promHistogram(fams map[string]*dto.MetricFamily, name string, want map[string]string) (histogram, error) {
	f, ok := fams[name]
	if !ok || f.GetType() != dto.MetricType_HISTOGRAM {
		return histogram{}, fmt.Errorf("the conductor's metrics have no histogram %s (a build without it?)", name)
	}
	series := f.GetMetric()
	if len(series) == 0 {
		return histogram{}, nil
	}
	var h histogram
	for _, b := range series[0].GetHistogram().GetBucket() {
		h.upper = append(h.upper, b.GetUpperBound())
	}
	h.cum = make([]uint64, len(h.upper))
	for _, m := range series {
		if !hasLabels(m, want) {
			continue
		}
		buckets := m.GetHistogram().GetBucket()
		if len(buckets) != len(h.upper) {
			return histogram{}, fmt.Errorf("%s: series with different buckets", name)
		}
		for i, b := range buckets {
			if b.GetUpperBound() != h.upper[i] {
				return histogram{}, fmt.Errorf("%s: series with different buckets", name)
			}
			h.cum[i] += b.GetCumulativeCount()
		}
		h.count += m.GetHistogram().GetSampleCount()
	}
	return h, nil
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// waitSample is the conductor's wait histograms at one moment.
type waitSample struct {
	lookup, heartbeat, sched histogram
}

// waitsFrom reads the conductor's wait histograms from parsed metrics.
func waitsFrom(fams map[string]*dto.MetricFamily) (waitSample, error) {
	var s waitSample
	var err error
	if s.lookup, err = promHistogram(fams, requestMetric, map[string]string{"route": lookupRoute}); err != nil {
		return waitSample{}, err
	}
	if s.heartbeat, err = promHistogram(fams, requestMetric, map[string]string{"route": heartbeatRoute}); err != nil {
		return waitSample{}, err
	}
	if s.sched, err = promHistogram(fams, schedMetric, nil); err != nil {
		return waitSample{}, err
	}
	return s, nil
}

// since is what happened from a to b, with gen the load generator's own
// waits to run over the same time.
func (b waitSample) since(a waitSample, gen histogram) (*WaitStats, error) {
	var d waitSample
	var err error
	if d.lookup, err = b.lookup.since(a.lookup); err != nil {
		return nil, fmt.Errorf("lookups: %w", err)
	}
	if d.heartbeat, err = b.heartbeat.since(a.heartbeat); err != nil {
		return nil, fmt.Errorf("heartbeats: %w", err)
	}
	if d.sched, err = b.sched.since(a.sched); err != nil {
		return nil, fmt.Errorf("waits to run: %w", err)
	}
	return &WaitStats{LookupHandler: d.lookup.percentile(.99), HeartbeatHandler: d.heartbeat.percentile(.99),
		ConductorSched: d.sched.percentile(.99), GeneratorSched: gen.percentile(.99)}, nil
}

// ownSchedWaits is this process's histogram of goroutines' waits to run
// (runtime/metrics /sched/latencies:seconds, which samples one goroutine
// in eight), cumulative by the runtime's bucket upper edges.
func ownSchedWaits() (histogram, error) {
	s := []rtmetrics.Sample{{Name: "/sched/latencies:seconds"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return histogram{}, fmt.Errorf("this Go runtime has no /sched/latencies:seconds")
	}
	rh := s[0].Value.Float64Histogram()
	h := histogram{upper: slices.Clone(rh.Buckets[1:]), cum: make([]uint64, len(rh.Counts))}
	for i, n := range rh.Counts {
		h.count += n
		h.cum[i] = h.count
	}
	return h, nil
}
