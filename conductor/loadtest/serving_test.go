package loadtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestServingMedian(t *testing.T) {
	r := &ServingReport{Runs: []ServingRun{
		{Server: ServerRivet, Round: 1, Bytes: 300, Took: time.Second},
		{Server: ServerNginx, Round: 1, Bytes: 100, Took: time.Second},
		{Server: ServerRivet, Round: 2, Bytes: 100, Took: time.Second},
		{Server: ServerRivet, Round: 3, Bytes: 200, Took: time.Second},
	}}
	if m := r.Median(ServerRivet); m.Round != 3 || m.Throughput() != 200 {
		t.Fatalf("rivet median: %+v", m)
	}
	if m := r.Median(ServerNginx); m.Round != 1 {
		t.Fatalf("nginx median: %+v", m)
	}
	if m := r.Median("other"); m.Bytes != 0 {
		t.Fatalf("no runs: %+v", m)
	}
}

func TestProcessTreeAndCPU(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep(1): %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ps, err := processTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ps[0] != os.Getpid() || !slices.Contains(ps, cmd.Process.Pid) {
		t.Fatalf("process tree %v lacks this process or its child %d", ps, cmd.Process.Pid)
	}
	if _, err := cpuOf(ps); err != nil {
		t.Fatal(err)
	}
	if _, err := procCPU(1 << 30); err == nil {
		t.Fatal("CPU of a process that does not exist: no error")
	}
}

// TestRunServing runs the serving benchmark on a small image against a
// real rivet-conductor and a real nginx: both must serve the image's
// bytes to every client (no timing is asserted).
func TestRunServing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rivet-conductor and runs nginx")
	}
	nginx := "nginx"
	if _, err := exec.LookPath(nginx); err != nil {
		nginx = "/usr/sbin/nginx"
	}
	if _, err := exec.LookPath(nginx); err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatal("RIVET_REQUIRE_E2E=1 but nginx is missing (scripts/install-deps.sh test)")
		}
		t.Skip("nginx is missing (scripts/install-deps.sh test)")
	}
	bin := conductorBinary(t)
	const size, clients, rounds = 3<<20 + 123, 4, 2
	rep, err := RunServing(context.Background(), ServingConfig{Conductor: bin, Nginx: nginx, Size: size,
		Clients: clients, Rounds: rounds, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2*rounds {
		t.Fatalf("%d runs, want %d", len(rep.Runs), 2*rounds)
	}
	for i, r := range rep.Runs {
		if r.Bytes != size*clients {
			t.Errorf("run %+v: %d bytes, want %d", r, r.Bytes, size*clients)
		}
		// Rotation: rivet first in odd rounds, nginx first in even ones.
		first := ServerRivet
		if r.Round%2 == 0 {
			first = ServerNginx
		}
		if (i%2 == 0) != (r.Server == first) {
			t.Errorf("run %d: %s in round %d out of order", i, r.Server, r.Round)
		}
	}
}

// TestNeighbour starts and stops the CPU-bound neighbour (stress-ng):
// its worker runs, and nothing is left behind.
func TestNeighbour(t *testing.T) {
	if _, err := exec.LookPath("stress-ng"); err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatal("RIVET_REQUIRE_E2E=1 but stress-ng is missing (scripts/install-deps.sh test)")
		}
		t.Skip("stress-ng is missing (scripts/install-deps.sh test)")
	}
	p, err := startNeighbour("", 1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var workers []int
	for range 100 {
		ps, err := processTree(p.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if workers = ps[1:]; len(workers) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its processes' CPU counts the worker's: it grows while the worker
	// spins.
	var spun time.Duration
	for range 600 {
		if spun, err = p.cpuTime(); err != nil || spun >= 50*time.Millisecond {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	if len(workers) == 0 {
		t.Fatal("stress-ng started no worker")
	}
	if err != nil || spun < 50*time.Millisecond {
		t.Errorf("neighbour's CPU %v (%v), want its worker's spinning", spun, err)
	}
	if d, err := (*neighbourProc)(nil).cpuTime(); d != 0 || err != nil {
		t.Errorf("no neighbour: CPU %v, %v", d, err)
	}
	for _, w := range workers {
		// Gone, a zombie, or the PID already someone else's.
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(w), "stat"))
		if err == nil && strings.Contains(string(b), "(stress-ng") && !strings.Contains(string(b), ") Z ") {
			t.Errorf("stress-ng worker %d still running after stop", w)
		}
	}
	if _, err := startNeighbour("no-such-stress-ng", 1, t.TempDir()); err == nil {
		t.Fatal("a missing stress-ng: no error")
	}
}
