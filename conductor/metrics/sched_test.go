package metrics

import (
	"math"
	rtmetrics "runtime/metrics"
	"testing"
)

func TestFoldHistogram(t *testing.T) {
	h := &rtmetrics.Float64Histogram{
		// [-Inf,0) [0,0.0001) [0.0001,0.0003) [0.0003,0.001) [0.001,0.3) [0.3,+Inf)
		Buckets: []float64{math.Inf(-1), 0, 0.0001, 0.0003, 0.001, 0.3, math.Inf(1)},
		Counts:  []uint64{0, 10, 4, 2, 1, 3},
	}
	count, sum, got := foldHistogram(h, []float64{.0001, .00025, .0005, .001, .5})
	if count != 20 {
		t.Errorf("count %d, want 20", count)
	}
	want := map[float64]uint64{
		.0001: 10, // [0,0.0001) only
		// [0.0001,0.0003) straddles 0.00025: counted above it, never below.
		.00025: 10,
		.0005:  14,
		.001:   16,
		.5:     17, // [0.001,0.3); [0.3,+Inf) has no finite upper edge
	}
	for b, n := range want {
		if got[b] != n {
			t.Errorf("bucket le=%g: %d, want %d", b, got[b], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d buckets, want %d", len(got), len(want))
	}
	wantSum := 10*0.00005 + 4*0.0002 + 2*0.00065 + 1*0.1505 + 3*0.3
	if math.Abs(sum-wantSum) > 1e-12 {
		t.Errorf("sum %g, want %g", sum, wantSum)
	}
}

func TestFoldHistogramEmptyBucketsStillListed(t *testing.T) {
	h := &rtmetrics.Float64Histogram{Buckets: []float64{0, 1}, Counts: []uint64{0}}
	count, sum, got := foldHistogram(h, SchedBuckets)
	if count != 0 || sum != 0 || len(got) != len(SchedBuckets) {
		t.Errorf("count %d sum %g buckets %d, want 0, 0, %d", count, sum, len(got), len(SchedBuckets))
	}
}
