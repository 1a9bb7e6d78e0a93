package qemu

import (
	"bytes"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/rivetmetal/rivet/conductor/power"
)

// testMAC is the NIC MAC of test nodes.
const testMAC = "52:54:00:12:34:56"

// selfExe is the test binary, used as the relay and as the fake QEMU.
func selfExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// newTestDriver returns a driver with its state in a temporary directory,
// the test binary as relay, and its logs in the test log.
func newTestDriver(t *testing.T, cfg Config) *Driver {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.FilesDir == "" {
		cfg.FilesDir = testFilesDir(t)
	}
	if cfg.Relay == nil {
		cfg.Relay = []string{selfExe(t)}
	}
	if cfg.Logger == nil {
		w := &testWriter{t: t}
		t.Cleanup(w.close)
		cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// filesDirs holds each test's files directory (Config.FilesDir), where
// testNode puts the disks of its nodes.
var filesDirs sync.Map

func testFilesDir(t *testing.T) string {
	if d, ok := filesDirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	filesDirs.Store(t, d)
	t.Cleanup(func() { filesDirs.Delete(t) })
	return d
}

// testNode returns a node with an empty disk file in the test's files
// directory and the test MAC.
func testNode(t *testing.T, uuid string, info map[string]any) power.Node {
	t.Helper()
	disk, err := os.CreateTemp(testFilesDir(t), "disk-*.raw")
	if err != nil {
		t.Fatal(err)
	}
	disk.Close()
	return testNodeWith(t, uuid, disk.Name(), info)
}

// testNodeWith returns a node whose qemu_disk is disk.
func testNodeWith(t *testing.T, uuid, disk string, info map[string]any) power.Node {
	t.Helper()
	di := map[string]any{InfoDisk: disk}
	for k, v := range info {
		di[k] = v
	}
	return power.Node{UUID: uuid, Name: "node-" + uuid[:4], DriverInfo: di, MACs: []string{testMAC}}
}

// testWriter sends log output to t.Log until the test ends, then drops it
// (the driver logs a VM's exit from the goroutine that reaped it).
type testWriter struct {
	t      *testing.T
	mu     sync.Mutex
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}
