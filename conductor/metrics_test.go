package conductor_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/fakeagent"
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
	// The API's own requests are timed by route, also with a trailing
	// slash.
	get(c.URL() + "/v1/nodes")
	if _, body := get(metricsURL + "/metrics"); !strings.Contains(body, `route="GET /v1/nodes"`) {
		t.Fatal("API request not timed by route")
	}
	get(c.URL() + "/v1/drivers/")
	if _, body := get(metricsURL + "/metrics"); !strings.Contains(body, `route="GET /v1/drivers"`) {
		t.Fatal("API request with a trailing slash not timed by route")
	}
}

// metricValue is the value of the sample named exactly series (name and
// labels as exposed) in a text exposition, and whether it is there.
func metricValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestEngineFeedsMetrics deploys twice through the image cache with
// automated cleaning and reads what the engine fed /metrics: deploy phase
// histograms (the conductor's phases and the agent's own), cleanings
// (each step and the whole), the cache's miss then hit and its size.
func TestEngineFeedsMetrics(t *testing.T) {
	h := conductortest.New(t, fakeagent.Config{WriteDuration: 50 * time.Millisecond})
	cfg := h.Config()
	cfg.Provision.DisableAutomatedClean = false
	cfg.ImageCacheDir = filepath.Join(h.Dir(), "cache")
	cfg.FileURLAllowedPaths = []string{filepath.Join(h.Dir(), "images")}
	h.Start(cfg)
	h.EnrollNode()
	sum := sha256.Sum256(h.Image())
	for range 2 {
		// Undeploying forgets the image.
		patchInstanceInfo(t, h, "n1", map[string]any{"image_source": "file://" + filepath.Join(h.Dir(), "images", "disk.raw"),
			"image_os_hash_algo": "sha256", "image_os_hash_value": hex.EncodeToString(sum[:])})
		h.Provision("n1", "active", nil)
		h.WaitState("n1", "active", 20*time.Second)
		h.Provision("n1", "deleted", nil)
		h.WaitState("n1", "available", 20*time.Second)
	}
	resp, err := http.Get(h.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for series, want := range map[string]float64{
		`rivet_conductor_phase_duration_seconds_count{kind="deploy",phase="total"}`:          2,
		`rivet_conductor_phase_duration_seconds_count{kind="deploy",phase="boot_to_lookup"}`: 2,
		`rivet_conductor_phase_duration_seconds_count{kind="deploy",phase="download_write"}`: 2,
		`rivet_conductor_phase_duration_seconds_count{kind="deploy",phase="bootloader"}`:     2,
		`rivet_conductor_phase_duration_seconds_count{kind="deploy",phase="power"}`:          2,
		// provide, then two undeploys
		`rivet_conductor_phase_duration_seconds_count{kind="clean",phase="total"}`:                  3,
		`rivet_conductor_phase_duration_seconds_count{kind="clean",phase="erase_devices_metadata"}`: 3,
		`rivet_conductor_image_cache_requests_total{result="miss"}`:                                 1,
		`rivet_conductor_image_cache_requests_total{result="hit"}`:                                  1,
		`rivet_conductor_image_cache_bytes`:                                                         float64(len(h.Image())),
	} {
		if got, ok := metricValue(body, series); !ok || got != want {
			t.Errorf("%s = %v (present: %v), want %v", series, got, ok, want)
		}
	}
	if !strings.Contains(body, `rivet_conductor_phase_duration_seconds_count{kind="deploy",phase="agent_download"}`) {
		t.Error("the agent's own download timing is not a metric")
	}
	if got, _ := metricValue(body, `rivet_conductor_phase_duration_seconds_sum{kind="deploy",phase="total"}`); got <= 0 {
		t.Errorf("deploy total sum %v", got)
	}
}
