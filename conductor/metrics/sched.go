package metrics

import (
	"math"
	rtmetrics "runtime/metrics"

	"github.com/prometheus/client_golang/prometheus"
)

// schedLatencies is the runtime's histogram of the time goroutines spent
// ready to run before they ran.
const schedLatencies = "/sched/latencies:seconds"

// SchedBuckets are the bucket bounds (seconds) of
// rivet_conductor_sched_latencies_seconds: the API latency's, from 0.1 ms,
// so that a goroutine's wait to run reads beside the requests it delays.
var SchedBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// schedCollector exports the runtime's /sched/latencies:seconds in
// SchedBuckets. The Go collector can export it too, but folds its
// buckets by a factor of about 11 (10 ms, 117 ms, then +Inf), too coarse
// to tell a conductor short of CPU (waits of tens to hundreds of
// milliseconds) from one that is not.
type schedCollector struct {
	desc *prometheus.Desc
}

func newSchedCollector() *schedCollector {
	return &schedCollector{desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "sched_latencies_seconds"),
		"Time goroutines spent ready to run before they ran (runtime/metrics "+schedLatencies+
			"; the sum is estimated from the runtime's bucket edges). Long waits mean the conductor is short of CPU.",
		nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *schedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *schedCollector) Collect(ch chan<- prometheus.Metric) {
	s := []rtmetrics.Sample{{Name: schedLatencies}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return // a runtime without it
	}
	count, sum, buckets := foldHistogram(s[0].Value.Float64Histogram(), SchedBuckets)
	ch <- prometheus.MustNewConstHistogram(c.desc, count, sum, buckets)
}

// foldHistogram folds a runtime histogram into cumulative buckets with
// the given upper bounds. A runtime bucket counts below a bound only when
// its whole range does, so a wait is never reported shorter than it was.
// The sum takes each runtime bucket's middle (its finite edge when the
// other is infinite).
func foldHistogram(h *rtmetrics.Float64Histogram, bounds []float64) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(bounds))
	for _, b := range bounds {
		buckets[b] = 0
	}
	for i, n := range h.Counts {
		if n == 0 {
			continue
		}
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		count += n
		switch {
		case math.IsInf(lo, -1) && math.IsInf(hi, 1):
		case math.IsInf(lo, -1):
			sum += float64(n) * hi
		case math.IsInf(hi, 1):
			sum += float64(n) * lo
		default:
			sum += float64(n) * (lo + hi) / 2
		}
		for _, b := range bounds {
			if hi <= b {
				buckets[b] += n
			}
		}
	}
	return count, sum, buckets
}
