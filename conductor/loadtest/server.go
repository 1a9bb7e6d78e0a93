package loadtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a server program the load test runs: the conductor under test
// or the reference nginx.
type server struct {
	name    string
	cmd     *exec.Cmd
	url     string
	logPath string
	stopSig syscall.Signal
	done    chan error
	// metricsURL is the conductor's Prometheus /metrics ("" for nginx).
	metricsURL string
}

// startServer starts cmd and waits, at most wait, until ready(url) says it
// serves; an error from ready gives up at once. The process is stopped
// when it does not come up.
func startServer(ctx context.Context, name string, cmd *exec.Cmd, url, logPath string, stopSig syscall.Signal,
	wait time.Duration, ready func(url string) (bool, error)) (*server, error) {
	cmd.SysProcAttr = conductorProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: start %s: %w", name, err)
	}
	p := &server{name: name, cmd: cmd, url: url, logPath: logPath, stopSig: stopSig, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(wait)
	for {
		ok, err := ready(url)
		if err != nil {
			p.stop()
			return nil, fmt.Errorf("loadtest: %w", err)
		}
		if ok {
			return p, nil
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("loadtest: %s exited: %v (log %s)", name, err, logPath)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("loadtest: %s not serving after %s (log %s)", name, wait, logPath)
		}
	}
}

// stop ends the server with its stop signal (SIGTERM for the conductor,
// SIGQUIT, its graceful stop, for nginx), then SIGKILL after 15 s.
func (p *server) stop() {
	_ = p.cmd.Process.Signal(p.stopSig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cpuTime is the server's user + system CPU time so far.
func (p *server) cpuTime() (time.Duration, error) { return procCPU(p.cmd.Process.Pid) }

// memory is one of the server's memory figures from /proc/<pid>/status
// (field "VmRSS:" or "VmHWM:"), in bytes.
func (p *server) memory(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
}
