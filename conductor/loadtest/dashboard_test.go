package loadtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
)

// MeasureDashboard against a real conductor (SQLite, its listener on
// 127.0.0.1): every subscriber receives every probe.
func TestMeasureDashboard(t *testing.T) {
	dir := t.TempDir()
	drv, err := fake.New(fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := conductor.New(context.Background(), conductor.Config{Listen: "127.0.0.1:0",
		DBPath: filepath.Join(dir, "rivet.db"), Drivers: []power.Driver{drv},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("conductor: %v", err)
		}
	}()
	api := &apiClient{base: c.URL(), c: http.DefaultClient}
	var nodes []string
	for i := range 6 {
		var n struct {
			UUID string `json:"uuid"`
		}
		if err := api.do(ctx, http.MethodPost, "/v1/nodes", "1.82", map[string]any{"name": fmt.Sprintf("d%d", i), "driver": "fake-hardware"},
			&n, http.StatusCreated); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n.UUID)
	}
	rep, err := MeasureDashboard(ctx, c.URL(), DashboardConfig{Subscribers: 4, ProbeInterval: 100 * time.Millisecond, Nodes: nodes},
		1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.Probes < 5 || rep.Latency.Count != rep.Probes*4 || rep.Latency.Errors != 0 || rep.Writes.Errors != 0 {
		t.Fatalf("probes %d, receptions %d, missed %d, write errors %d (%s)", rep.Probes, rep.Latency.Count,
			rep.Latency.Errors, rep.Writes.Errors, rep.Latency.FirstError)
	}
	if rep.Snapshots != 0 || rep.Bytes == 0 || rep.Latency.P50 <= 0 {
		t.Fatalf("snapshots %d bytes %d p50 %s", rep.Snapshots, rep.Bytes, rep.Latency.P50)
	}
	// Every probed node left maintenance.
	for _, id := range nodes {
		var n struct {
			Maintenance bool `json:"maintenance"`
		}
		if err := api.do(ctx, http.MethodGet, "/v1/nodes/"+id, "1.82", nil, &n, http.StatusOK); err != nil || n.Maintenance {
			t.Fatalf("node %s still in maintenance (%v)", id, err)
		}
	}
}
