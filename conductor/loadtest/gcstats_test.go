package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/metrics"
)

// readGC reads the garbage-collection counters at url.
func readGC(ctx context.Context, client *http.Client, url string) (gcSample, error) {
	fams, err := scrapeMetrics(ctx, client, url)
	if err != nil {
		return gcSample{}, err
	}
	return gcFrom(fams)
}

// TestReadGC reads the garbage-collection counters from the conductor's
// own /metrics handler over HTTP: two samples around a forced collection
// differ by at least that cycle. A page without the counters, an error
// status and text that is not Prometheus's are errors.
func TestReadGC(t *testing.T) {
	srv := httptest.NewServer(metrics.New().Handler())
	defer srv.Close()
	ctx := context.Background()
	a, err := readGC(ctx, srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	b, err := readGC(ctx, srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	st := b.since(a)
	if st.Cycles < 1 || st.CPU < 0 {
		t.Fatalf("around a forced collection: %+v, want at least one cycle", st)
	}
	if b.cpuSeconds <= 0 {
		t.Fatalf("the runtime's GC CPU estimate is %v after a collection", b.cpuSeconds)
	}

	for _, c := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"no counters", "# TYPE go_goroutines gauge\ngo_goroutines 12\n", http.StatusOK, gcCyclesMetric},
		{"one counter", "# TYPE " + gcCyclesMetric + " counter\n" + gcCyclesMetric + " 3\n", http.StatusOK, gcCPUMetric},
		{"not Prometheus text", "<html>hello</html>\n", http.StatusOK, "parse"},
		{"error status", "", http.StatusUnauthorized, "HTTP 401"},
	} {
		bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(c.status)
			_, _ = w.Write([]byte(c.body))
		}))
		_, err := readGC(ctx, bad.Client(), bad.URL)
		bad.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
		}
	}
	if _, err := readGC(ctx, &http.Client{Timeout: time.Second}, "http://127.0.0.1:1/metrics"); err == nil {
		t.Error("no server: no error")
	}
}
