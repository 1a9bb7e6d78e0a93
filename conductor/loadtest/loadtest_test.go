package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var conductorBuild struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

// conductorBinary builds rivet-conductor once for the package's tests.
func conductorBinary(t *testing.T) string {
	t.Helper()
	b := &conductorBuild
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "loadtest-conductor-"); b.err != nil {
			return
		}
		build := exec.Command("go", "build", "-o", filepath.Join(b.dir, "rivet-conductor"), "github.com/rivetmetal/rivet/cmd/rivet-conductor")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		b.out, b.err = build.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("build rivet-conductor: %v\n%s", b.err, b.out)
	}
	return filepath.Join(b.dir, "rivet-conductor")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if conductorBuild.dir != "" {
		os.RemoveAll(conductorBuild.dir)
	}
	os.Exit(code)
}

// TestRunSmallFleet runs the load test end to end against a real
// rivet-conductor (SQLite, 40 nodes booting within 2 s, a 2 s window):
// every agent looks up and heartbeats without an error, every node stays
// deploying, and the report carries the conductor's CPU, memory and
// garbage-collection figures (no timing is asserted).
func TestRunSmallFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs rivet-conductor")
	}
	const agents = 40
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Conductor: conductorBinary(t), Agents: agents, HeartbeatTimeout: 10 * time.Second,
		Boot: 2 * time.Second, Duration: 2 * time.Second, Dir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if l := rep.BootLookups; l.Count < agents || l.Errors != 0 {
		t.Errorf("storm lookups: %+v, want %d without errors", l, agents)
	}
	if b := rep.BootHeartbeats; b.Count < agents || b.Errors != 0 {
		t.Errorf("storm heartbeats: %+v, want at least %d without errors", b, agents)
	}
	if rep.Heartbeats.Errors != 0 || rep.Stuck != 0 {
		t.Errorf("window: %d heartbeat errors (%s), %d nodes failed", rep.Heartbeats.Errors, rep.Heartbeats.FirstError, rep.Stuck)
	}
	if rep.BootStorm <= 0 || rep.BootConductorCPU <= 0 || rep.ConductorRSS <= 0 || rep.ConductorPeakRSS < rep.ConductorRSS {
		t.Errorf("storm %v, conductor CPU %v, RSS %d (peak %d)", rep.BootStorm, rep.BootConductorCPU, rep.ConductorRSS, rep.ConductorPeakRSS)
	}
	if rep.BootGC == nil || rep.BootGC.Cycles < 0 || rep.BootGC.CPU < 0 {
		t.Errorf("storm GC figures: %+v, want the conductor's", rep.BootGC)
	}
	if w := rep.BootWaits; w == nil || w.LookupHandler.Hi <= 0 || w.HeartbeatHandler.Hi <= 0 || w.ConductorSched.Hi <= 0 || w.GeneratorSched.Hi <= 0 {
		t.Errorf("storm wait figures: %+v, want the handlers' and both processes' p99", w)
	}
	if m := rep.BootMachine; m.Cores < 1 || m.Busy <= 0 || m.Busy > float64(m.Cores)+0.01 || m.Conductor <= 0 || m.Generator <= 0 ||
		m.Neighbour != 0 || m.Others < 0 {
		t.Errorf("storm machine CPU: %+v, want a busy machine and no neighbour", m)
	}
	if rep.CoreProbe <= 0 {
		t.Errorf("core probe %v, want the time it took", rep.CoreProbe)
	}
}

func TestRecorderPercentiles(t *testing.T) {
	var r recorder
	for i := 1; i <= 1000; i++ {
		var err error
		if i%250 == 0 {
			err = errors.New("HTTP 503")
		}
		r.add(time.Duration(i)*time.Millisecond, err)
	}
	s := r.stats(10 * time.Second)
	if s.Count != 1000 || s.Errors != 4 || s.FirstError != "HTTP 503" {
		t.Fatalf("counts: %+v", s)
	}
	if s.P50 != 501*time.Millisecond || s.P99 != 991*time.Millisecond || s.Max != time.Second {
		t.Fatalf("percentiles: p50 %v p99 %v max %v", s.P50, s.P99, s.Max)
	}
	if s.Rate != 100 {
		t.Fatalf("rate %v, want 100/s", s.Rate)
	}
	if (&recorder{}).stats(time.Second).Count != 0 {
		t.Fatal("empty recorder")
	}
}

func TestMachineCPU(t *testing.T) {
	a, err := machineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if a.cores < 1 || a.total <= 0 || a.busy > a.total {
		t.Fatalf("sample %+v", a)
	}
	if f := a.busyFraction(a); f != 0 {
		t.Fatalf("busy fraction over no time = %v", f)
	}
	if _, err := loadavg(); err != nil {
		t.Fatal(err)
	}
}

// TestParseProcStat: busy is every CPU time but idle and iowait, the
// guest times (already in user and nice) are not counted twice, and the
// per-CPU lines are the cores.
func TestParseProcStat(t *testing.T) {
	s := parseProcStat("cpu  100 2 30 500 40 5 6 7 50 1\n" +
		"cpu0 50 1 15 250 20 2 3 3 25 1\n" +
		"cpu1 50 1 15 250 20 3 3 4 25 0\n" +
		"intr 12345 0 0\nctxt 999\n")
	if want := (cpuSample{busy: 100 + 2 + 30 + 5 + 6 + 7, total: 100 + 2 + 30 + 500 + 40 + 5 + 6 + 7,
		tasks: 100 + 2 + 30, irq: 5 + 6, steal: 7, cores: 2}); s != want {
		t.Fatalf("parsed %+v, want %+v", s, want)
	}
	// Older kernels list fewer times.
	if s := parseProcStat("cpu  10 0 5 85 0\ncpu0 10 0 5 85 0\n"); s != (cpuSample{busy: 15, total: 100, tasks: 15, cores: 1}) {
		t.Fatalf("parsed %+v", s)
	}
}

// TestMachineCPUSplit: ten seconds of a two-core machine's ticks split
// into the three processes' own times, the rest of the processes' time,
// interrupts and steal, each in cores; other processes' time is never
// negative, and a stretch with no ticks splits into nothing.
func TestMachineCPUSplit(t *testing.T) {
	before := cpuSample{busy: 1000, total: 5000, tasks: 800, irq: 150, steal: 50, cores: 2}
	// 2000 ticks = 10 s on 2 cores: 1,900 busy, of them 1,700 the
	// processes', 150 interrupts, 50 stolen.
	after := cpuSample{busy: 2900, total: 7000, tasks: 2500, irq: 300, steal: 100, cores: 2}
	m := after.split(before, 8*time.Second, 3*time.Second, 5*time.Second)
	want := MachineCPU{Cores: 2, Busy: 1.9, Conductor: 0.8, Generator: 0.3, Neighbour: 0.5, Others: 0.1,
		Interrupts: 0.15, Steal: 0.05}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if m.Cores != want.Cores || !near(m.Busy, want.Busy) || !near(m.Conductor, want.Conductor) || !near(m.Generator, want.Generator) ||
		!near(m.Neighbour, want.Neighbour) || !near(m.Others, want.Others) || !near(m.Interrupts, want.Interrupts) || !near(m.Steal, want.Steal) {
		t.Fatalf("split %+v, want %+v", m, want)
	}
	// The processes' own times, sampled at other ticks, past the
	// machine's count of them: nobody else ran.
	if m := after.split(before, 9*time.Second, 4*time.Second, 5*time.Second); m.Others != 0 {
		t.Fatalf("others %v, want 0", m.Others)
	}
	if m := after.split(after, time.Second, 0, 0); m != (MachineCPU{Cores: 2}) {
		t.Fatalf("split of no time: %+v", m)
	}
}

// TestProbeCore: the probe's document is a node with deploy steps, and
// timing the work on it takes some time, none of it an error.
func TestProbeCore(t *testing.T) {
	doc, err := probeDocument()
	if err != nil {
		t.Fatal(err)
	}
	var n struct {
		UUID string `json:"uuid"`
		Info struct {
			Steps []map[string]any `json:"deploy_steps"`
		} `json:"driver_internal_info"`
	}
	if err := json.Unmarshal(doc, &n); err != nil || n.UUID == "" || len(n.Info.Steps) != 8 || len(doc) < 2048 {
		t.Fatalf("document of %d bytes: %+v, %v", len(doc), n, err)
	}
	if d, err := probeCore(); err != nil || d <= 0 {
		t.Fatalf("probe took %v, %v", d, err)
	}
}

// TestParsePidStat reads the parent and CPU time after a command name
// holding spaces and parentheses, and rejects a cut-off text.
func TestParsePidStat(t *testing.T) {
	st, err := parsePidStat([]byte("4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0 12345 1000 100\n"))
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 17 || st.cpu != 3250*time.Millisecond {
		t.Fatalf("parsed %+v, want parent 17 and 3.25 s", st)
	}
	for _, bad := range []string{"", "4242 (cut", "4242 (x) S 17 1 2", "4242 (x) S p 1 2 3 4 5 6 7 8 9 10 11 12", "4242 (x) S 1 1 2 3 4 5 6 7 8 9 u 11 12"} {
		if _, err := parsePidStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	self, err := procCPU(os.Getpid())
	if err != nil || self < 0 {
		t.Fatalf("own CPU %v, %v", self, err)
	}
	// A child gone since the listing is no longer counted; the first
	// process gone is an error.
	const gone = 1 << 30 // above any pid_max
	if d, err := cpuOf([]int{os.Getpid(), gone}); err != nil || d < self {
		t.Fatalf("CPU of this process and a gone child: %v, %v", d, err)
	}
	if _, err := cpuOf([]int{gone, os.Getpid()}); err == nil {
		t.Fatal("CPU of a gone process: no error")
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.setDefaults(); err == nil {
		t.Fatal("no conductor binary accepted")
	}
	c = Config{Conductor: "x", HeartbeatTimeout: 10 * time.Second}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.Agents != 1000 || c.Boot != 4500*time.Millisecond || c.Duration != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
}
