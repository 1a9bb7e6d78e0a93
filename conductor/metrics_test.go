package conductor_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// The API listener serves /metrics and /dashboard/; --metrics-listen adds
// a loopback listener with /metrics and nothing else, and refuses any
// other address.
func TestMetricsListeners(t *testing.T) {
	drv, err := fake.New(fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := conductor.Config{Listen: "127.0.0.1:0", DBPath: filepath.Join(t.TempDir(), "rivet.db"),
		Drivers: []power.Driver{drv}, MetricsListen: "0.0.0.0:0", Logger: conductortest.Logger(t)}
	if _, err := conductor.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("non-loopback metrics listener: %v", err)
	}
	cfg.MetricsListen = "127.0.0.1:0"
	c, err := conductor.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	metricsURL := "http://" + c.MetricsAddr().String()
	for _, u := range []string{c.URL() + "/metrics", metricsURL + "/metrics"} {
		if st, body := get(u); st != http.StatusOK || !strings.Contains(body, "rivet_conductor_heartbeats_total") {
			t.Fatalf("%s: %d", u, st)
		}
	}
	if st, _ := get(metricsURL + "/v1/nodes"); st != http.StatusNotFound {
		t.Fatalf("the metrics listener served /v1/nodes: %d", st)
	}
	if st, body := get(c.URL() + "/dashboard/"); st != http.StatusOK || !strings.Contains(body, `id="fleet"`) {
		t.Fatalf("dashboard: %d", st)
	}
	// The API's own requests are timed by route.
	get(c.URL() + "/v1/nodes")
	if _, body := get(metricsURL + "/metrics"); !strings.Contains(body, `route="GET /v1/nodes"`) {
		t.Fatal("API request not timed by route")
	}
}
