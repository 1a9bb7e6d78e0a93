package loadtest

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rivetmetal/rivet/conductor/metrics"
)

// histogramText is one series of a Prometheus histogram in text form:
// labels (without braces, "" for none) and the cumulative counts at
// bounds 0.1, 0.25, 0.5 s and +Inf.
func histogramText(name, labels string, cum [4]uint64) string {
	sep := ""
	if labels != "" {
		sep = ","
	}
	var b strings.Builder
	for i, le := range []string{"0.1", "0.25", "0.5", "+Inf"} {
		fmt.Fprintf(&b, "%s_bucket{%s%sle=%q} %d\n", name, labels, sep, le, cum[i])
	}
	suffix := ""
	if labels != "" {
		suffix = "{" + labels + "}"
	}
	fmt.Fprintf(&b, "%s_sum%s 1\n%s_count%s %d\n", name, suffix, name, suffix, cum[3])
	return b.String()
}

// requestsText is a /metrics page with lookups answered 200 and 404 and
// another route, no heartbeat yet, and the goroutines' waits to run, in
// the conductor's buckets (shortened).
var requestsText = "# TYPE " + requestMetric + " histogram\n" +
	histogramText(requestMetric, `code="200",route="GET /v1/lookup"`, [4]uint64{90, 97, 98, 98}) +
	histogramText(requestMetric, `code="404",route="GET /v1/lookup"`, [4]uint64{0, 0, 0, 2}) +
	histogramText(requestMetric, `code="200",route="GET /v1/nodes"`, [4]uint64{0, 0, 0, 50}) +
	"# TYPE " + schedMetric + " histogram\n" +
	histogramText(schedMetric, "", [4]uint64{10, 10, 10, 10})

func TestWaitHistograms(t *testing.T) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(requestsText))
	if err != nil {
		t.Fatal(err)
	}
	w, err := waitsFrom(fams)
	if err != nil {
		t.Fatal(err)
	}
	// Both codes of the lookup route, no other route.
	if w.lookup.count != 100 || w.lookup.cum[0] != 90 || w.lookup.cum[2] != 98 {
		t.Errorf("lookups: %+v, want 100 with 90 ≤ 0.1 s and 98 ≤ 0.5 s", w.lookup)
	}
	if r := w.lookup.percentile(.97); r != (Range{100 * time.Millisecond, 250 * time.Millisecond}) || r.String() != "100–250 ms" {
		t.Errorf("lookup p97 %+v (%s), want 100–250 ms", r, r)
	}
	// The p99 is past the last finite bound.
	if r := w.lookup.percentile(.99); r.Lo != 500*time.Millisecond || r.Hi != math.MaxInt64 || r.String() != "> 500 ms" {
		t.Errorf("lookup p99 %+v (%s), want > 500 ms", r, r)
	}
	// No heartbeat yet: empty, with the family's bounds.
	if w.heartbeat.count != 0 || len(w.heartbeat.upper) != 4 {
		t.Errorf("heartbeats: %+v, want none in 4 buckets", w.heartbeat)
	}
	if r := w.sched.percentile(.99); r.String() != "≤ 100 ms" {
		t.Errorf("sched p99 %s, want ≤ 100 ms", r)
	}

	// Differences: what happened between two samples.
	later := w.lookup
	later.cum = []uint64{190, 197, 198, 200}
	later.count = 200
	d, err := later.since(w.lookup)
	if err != nil || d.count != 100 || d.cum[0] != 100 || d.percentile(.99).String() != "≤ 100 ms" {
		t.Errorf("difference %+v, %v: want 100 lookups ≤ 100 ms", d, err)
	}
	if _, err := w.lookup.since(w.heartbeat); err != nil {
		t.Errorf("same bounds: %v", err)
	}
	if _, err := w.lookup.since(histogram{upper: []float64{1}, cum: []uint64{0}}); err == nil {
		t.Error("different bounds: no error")
	}
	// A sample taken before the family had any series.
	if d, err := w.lookup.since(histogram{}); err != nil || d.count != 100 {
		t.Errorf("since an empty sample: %+v, %v; want the 100 lookups", d, err)
	}
	// Nothing observed: no percentile.
	if r := w.heartbeat.percentile(.99); r != (Range{}) || r.String() != "none" {
		t.Errorf("p99 of no heartbeats: %+v (%s), want none", r, r)
	}

	// A conductor without the wait histograms.
	delete(fams, schedMetric)
	if _, err := waitsFrom(fams); err == nil || !strings.Contains(err.Error(), schedMetric) {
		t.Errorf("no %s: error %v", schedMetric, err)
	}
	if _, err := stormWaits(fams, fams, histogram{}, nil); err == nil {
		t.Error("stormWaits without the histograms: no error")
	}
}

// TestConductorSchedWaits reads the conductor's own /metrics handler
// over HTTP: its waits to run come in the API's buckets and count this
// process's goroutines.
func TestConductorSchedWaits(t *testing.T) {
	srv := httptest.NewServer(metrics.New().Handler())
	defer srv.Close()
	fams, err := scrapeMetrics(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	h, err := promHistogram(fams, schedMetric, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The API's bounds, then +Inf.
	if len(h.upper) != len(metrics.SchedBuckets)+1 || h.upper[0] != metrics.SchedBuckets[0] || !math.IsInf(h.upper[len(h.upper)-1], 1) || h.count == 0 {
		t.Errorf("waits to run: bounds %v, %d counted; want %v then +Inf, and some", h.upper, h.count, metrics.SchedBuckets)
	}
}

func TestOwnSchedWaits(t *testing.T) {
	a, err := ownSchedWaits()
	if err != nil {
		t.Fatal(err)
	}
	// The runtime times one goroutine's waits in eight.
	done := make(chan struct{})
	for range 1000 {
		go func() { done <- struct{}{} }()
	}
	for range 1000 {
		<-done
	}
	b, err := ownSchedWaits()
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.since(a)
	if err != nil {
		t.Fatal(err)
	}
	if d.count < 10 {
		t.Errorf("%d waits counted around 1,000 goroutines started, want at least 10", d.count)
	}
	if r := d.percentile(.99); r.Hi <= 0 || r.Hi < r.Lo {
		t.Errorf("p99 %+v", r)
	}
}
