package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/metrics"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
)

// scrape reads the exposition from a real /metrics endpoint.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

func requireLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("exposition lacks %q", l)
		}
	}
}

func TestMiddlewareLabelsByRoutePatternAndCountsRamdiskCalls(t *testing.T) {
	m := metrics.New()
	api := http.NewServeMux()
	api.HandleFunc("GET /v1/nodes/{ident}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("ident") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		io.WriteString(w, "{}")
	})
	api.HandleFunc(metrics.RouteHeartbeat, func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("ident") == "bad" {
			w.WriteHeader(http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	api.HandleFunc(metrics.RouteLookup, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("addresses") == "" {
			http.Error(w, "no", http.StatusNotFound)
		}
	})
	// The conductor's layout: a top mux in front of the API's own.
	top := http.NewServeMux()
	top.Handle("GET /metrics", m.Handler())
	top.Handle("/", api)
	srv := httptest.NewServer(m.Middleware(top))
	defer srv.Close()

	for _, p := range []string{"/v1/nodes/a", "/v1/nodes/b", "/v1/nodes/missing", "/nowhere", "/v1/lookup?addresses=x", "/v1/lookup"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, id := range []string{"n1", "n2", "bad"} {
		resp, err := http.Post(srv.URL+"/v1/heartbeat/"+id, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	text := scrape(t, srv.URL)
	requireLines(t, text,
		`rivet_conductor_http_request_duration_seconds_count{code="200",route="GET /v1/nodes/{ident}"} 2`,
		`rivet_conductor_http_request_duration_seconds_count{code="404",route="GET /v1/nodes/{ident}"} 1`,
		`rivet_conductor_http_request_duration_seconds_count{code="404",route="other"} 1`,
		`rivet_conductor_heartbeats_total{result="accepted"} 2`,
		`rivet_conductor_heartbeats_total{result="rejected"} 1`,
		`rivet_conductor_lookups_total{result="found"} 1`,
		`rivet_conductor_lookups_total{result="not_found"} 1`,
		`rivet_conductor_lookups_total{result="error"} 0`,
	)
	// No raw path ever becomes a label.
	if strings.Contains(text, `route="/v1/nodes/a"`) {
		t.Error("a raw path became a label")
	}
	// The declared families are there before the engine feeds them.
	requireLines(t, text,
		`rivet_conductor_phase_duration_seconds_count{kind="deploy",phase="download_write"} 0`,
		`rivet_conductor_image_cache_requests_total{result="hit"} 0`,
		`rivet_conductor_lease_takeovers_total 0`,
		`rivet_conductor_image_cache_bytes 0`,
	)
	for _, name := range []string{"go_goroutines ", "process_resident_memory_bytes ",
		// The garbage collector's cycles and CPU estimate.
		"go_gc_cycles_total_gc_cycles_total ", "go_cpu_classes_gc_total_cpu_seconds_total ",
		// The goroutines' waits to run, in the API's buckets.
		`rivet_conductor_sched_latencies_seconds_bucket{le="0.25"} `, "rivet_conductor_sched_latencies_seconds_count "} {
		if !strings.Contains(text, "\n"+name) {
			t.Errorf("no %q: the Go or process collector is missing, or a runtime metric", name)
		}
	}
	// This process has scheduled goroutines (the server's among them).
	if strings.Contains(text, "\nrivet_conductor_sched_latencies_seconds_count 0\n") {
		t.Error("no goroutine waits counted")
	}
}

func TestRecorder(t *testing.T) {
	m := metrics.New()
	var r metrics.Recorder = m
	r.PhaseDone(metrics.KindDeploy, "download_write", 42*time.Second)
	r.PhaseDone(metrics.KindClean, "erase_devices_metadata", 3*time.Second)
	r.AgentCallError("standby.get_partition_uuids")
	r.ImageCacheLookup(true)
	r.ImageCacheLookup(false)
	r.ImageCacheLookup(false)
	r.ImageCacheSize(1 << 30)
	r.LeaseTakeover()
	metrics.Nop{}.PhaseDone("deploy", "x", time.Second) // records nothing, panics never
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	requireLines(t, string(b),
		`rivet_conductor_phase_duration_seconds_sum{kind="deploy",phase="download_write"} 42`,
		`rivet_conductor_phase_duration_seconds_bucket{kind="deploy",phase="download_write",le="64"} 1`,
		`rivet_conductor_phase_duration_seconds_bucket{kind="deploy",phase="download_write",le="32"} 0`,
		`rivet_conductor_phase_duration_seconds_count{kind="clean",phase="erase_devices_metadata"} 1`,
		`rivet_conductor_agent_call_errors_total{command="standby.get_partition_uuids"} 1`,
		`rivet_conductor_image_cache_requests_total{result="hit"} 1`,
		`rivet_conductor_image_cache_requests_total{result="miss"} 2`,
		`rivet_conductor_image_cache_bytes 1.073741824e+09`,
		`rivet_conductor_lease_takeovers_total 1`,
	)
}

// Node counts come from the change feed over a real SQLite store.
func TestNodeStatesFollowTheFeed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	feed := changefeed.New(db, changefeed.Config{})
	st := feed.Store()
	defer st.Close()
	// One node exists before the view loads.
	if err := st.CreateNode(ctx, &store.Node{Name: "before", Driver: "fake-hardware"}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	ns := metrics.NewNodeStates(st)
	m.Registry().MustRegister(ns)
	loaded := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		feed.Follow(ctx, ns, changefeed.FollowOptions{Loaded: func() { loaded <- struct{}{} }})
	}()
	<-loaded
	for _, name := range []string{"a", "b"} {
		if err := st.CreateNode(ctx, &store.Node{Name: name, Driver: "fake-hardware", PowerState: "power off"}); err != nil {
			t.Fatal(err)
		}
	}
	err = st.WithNodeLock(ctx, "a", func(tx store.Tx) error {
		_, err := tx.Node().Advance(statemachine.EvManage, time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WithNodeLock(ctx, "b", func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	want := map[[2]string]int{{"enroll", ""}: 1, {"verifying", "power off"}: 1}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := ns.Counts()
		if len(got) == len(want) && got[[2]string{"enroll", ""}] == 1 && got[[2]string{"verifying", "power off"}] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts = %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	requireLines(t, string(b),
		`rivet_conductor_nodes{power_state="",provision_state="enroll"} 1`,
		`rivet_conductor_nodes{power_state="power off",provision_state="verifying"} 1`)
	cancel()
	<-done
}
