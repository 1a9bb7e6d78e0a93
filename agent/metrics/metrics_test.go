package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rivetmetal/rivet/agent/metrics"
	"github.com/rivetmetal/rivet/wire"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// The metrics follow the progress the write publishes, read at scrape
// time from a real HTTP endpoint.
func TestWriteProgressIsExposed(t *testing.T) {
	var (
		mu  sync.Mutex
		cur *wire.Progress
	)
	m := metrics.New(func() *wire.Progress {
		mu.Lock()
		defer mu.Unlock()
		if cur == nil {
			return nil
		}
		p := *cur
		return &p
	})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	before := scrape(t, srv.URL)
	if strings.Contains(before, "rivet_agent_image_write_") {
		t.Fatal("write metrics before any write")
	}
	if !strings.Contains(before, "go_goroutines ") || !strings.Contains(before, "process_resident_memory_bytes ") {
		t.Fatal("Go or process collector missing")
	}

	mu.Lock()
	cur = &wire.Progress{Phase: "write", BytesRead: 3 << 20, BytesWritten: 2 << 20, BytesSkipped: 1 << 20,
		TotalBytes: 8 << 20, RateBytesPerSec: 1.5e6, ETASeconds: 3.5, StartedAt: 1.7e9, UpdatedAt: 1.7e9 + 2}
	mu.Unlock()
	text := scrape(t, srv.URL)
	for _, l := range []string{
		"rivet_agent_image_write_bytes_read 3.145728e+06",
		"rivet_agent_image_write_bytes_written 2.097152e+06",
		"rivet_agent_image_write_bytes_skipped 1.048576e+06",
		"rivet_agent_image_write_bytes_total 8.388608e+06",
		"rivet_agent_image_write_rate_bytes_per_second 1.5e+06",
		"rivet_agent_image_write_eta_seconds 3.5",
		`rivet_agent_image_write_phase{phase="write"} 1`,
		"rivet_agent_image_write_updated_timestamp_seconds 1.700000002e+09",
	} {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("exposition lacks %q", l)
		}
	}
	if strings.Contains(text, "rivet_agent_image_write_timing_seconds{") {
		t.Error("timings exposed before any phase ended")
	}

	// The final progress carries the phases' timings and the decode
	// stage's own.
	mu.Lock()
	cur = &wire.Progress{Phase: "done", Timings: map[string]float64{"download": 2.5, "decode": 2.25,
		wire.TimingDecodeInputWait: 0.125, wire.TimingDecodeOutputWait: 0.5, wire.TimingDecodeCPU: 1.75}}
	mu.Unlock()
	text = scrape(t, srv.URL)
	for _, l := range []string{
		`rivet_agent_image_write_timing_seconds{timing="download"} 2.5`,
		`rivet_agent_image_write_timing_seconds{timing="decode"} 2.25`,
		`rivet_agent_image_write_timing_seconds{timing="decode_input_wait"} 0.125`,
		`rivet_agent_image_write_timing_seconds{timing="decode_output_wait"} 0.5`,
		`rivet_agent_image_write_timing_seconds{timing="decode_cpu"} 1.75`,
		`rivet_agent_image_write_phase{phase="done"} 1`,
	} {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("exposition lacks %q", l)
		}
	}
}
