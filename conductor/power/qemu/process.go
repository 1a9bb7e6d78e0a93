package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// child is a QEMU process this Driver started.
type child struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once reaped
	err  error         // exit error, set before done is closed
	// stopping is set when the driver signals the process, so its exit
	// is not mistaken for the guest powering off.
	stopping atomic.Bool
}

// exited reports whether the process has been reaped.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// launch starts QEMU for a node, detached from the caller: its own session
// (a signal to the conductor's process group does not reach it), stdin
// /dev/null, stdout and stderr appended to qemu.log. onExit runs after the
// process was reaped.
func (d *Driver) launch(uuid string, p nodePaths, args []string, onExit func(*child)) (*child, int64, error) {
	bin, err := exec.LookPath(d.cfg.Binary)
	if err != nil {
		return nil, 0, fmt.Errorf("qemu program: %w", err)
	}
	if err := os.Remove(p.qmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("remove old QMP socket: %w", err)
	}
	logf, err := os.OpenFile(p.qemuLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, fmt.Errorf("open qemu log: %w", err)
	}
	defer logf.Close() // the child keeps its own descriptor
	logStart, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "=== %s %s %s\n", time.Now().UTC().Format(time.RFC3339), bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &child{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
		onExit(c)
	}()
	if err := writeFileAtomic(p.pid, []byte(strconv.Itoa(c.pid)+"\n")); err != nil {
		_ = cmd.Process.Kill()
		<-c.done
		return nil, 0, err
	}
	return c, logStart, nil
}

// errNotReady is returned when QEMU exits or hangs before it is ready.
var errNotReady = errors.New("qemu did not start")

// waitReady waits for QEMU's QMP greeting, which it sends only from its
// main loop, after every device, netdev and forward was set up. It fails
// if the process exits first (a port in use, a missing file, a bad option),
// with the end of qemu.log in the error.
func waitReady(ctx context.Context, c *child, p nodePaths, logStart int64, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if c.exited() {
			return fmt.Errorf("%w: exited (%v): %s", errNotReady, c.err, logTail(p.qemuLog, logStart))
		}
		var dialer net.Dialer
		conn, err := dialer.DialContext(ctx, "unix", p.qmp)
		if err == nil {
			err = readGreeting(ctx, conn)
			conn.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no QMP greeting on %s: %w (last error: %v)", errNotReady, p.qmp, ctx.Err(), err)
		case <-c.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readGreeting(ctx context.Context, conn net.Conn) error {
	deadline, _ := ctx.Deadline()
	_ = conn.SetReadDeadline(deadline)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read QMP greeting: %w", err)
	}
	if !strings.Contains(line, `"QMP"`) {
		return fmt.Errorf("unexpected QMP greeting %q", line)
	}
	return nil
}

// logTail returns what was appended to a log file after offset, at most
// the last 2 KiB, on one line.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return "(no qemu log)"
	}
	b = b[offset:]
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(string(b), "\n", " | ")), " ")
}

// stopChild stops a process this Driver started: SIGTERM, then SIGKILL
// after grace. It returns once the process was reaped.
func stopChild(ctx context.Context, c *child, grace time.Duration) error {
	if c.exited() {
		return nil
	}
	c.stopping.Store(true)
	if err := c.cmd.Process.Signal(sigterm); err != nil && !c.exited() {
		return fmt.Errorf("signal qemu pid %d: %w", c.pid, err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
	case <-ctx.Done():
	}
	if err := c.cmd.Process.Kill(); err != nil && !c.exited() {
		return fmt.Errorf("kill qemu pid %d: %w", c.pid, err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("qemu pid %d still running 10s after SIGKILL", c.pid)
	}
}
