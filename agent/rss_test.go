package agent

import "testing"

func TestPeakRSS(t *testing.T) {
	if got := peakRSS(); got < 1<<20 || got > 64<<30 {
		t.Fatalf("peakRSS = %d bytes, not a plausible RSS", got)
	}
}
