package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var sigterm = syscall.SIGTERM

// detached puts the child in its own session.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// attached is a QEMU process started by an earlier conductor, held by a
// pidfd so that a recycled pid can never be signalled by mistake.
type attached struct {
	pid int
	fd  int
}

func (a *attached) close() { unix.Close(a.fd) }

// attach finds the VM named in a node's pid file. It returns nil when the
// file is missing or names a process that is gone, a zombie, or not this
// node's QEMU (its command line lacks "-name rivet-<uuid>").
func attach(pidFile, uuid string) (*attached, error) {
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// Checked after opening the pidfd: if the pid was recycled in
	// between, the fd refers to the process whose command line we read.
	if !isVMProcess(pid, uuid) {
		unix.Close(fd)
		return nil, nil
	}
	return &attached{pid: pid, fd: fd}, nil
}

// isVMProcess reports whether pid is a live (not zombie) process whose
// arguments include -name rivet-<uuid>.
func isVMProcess(pid int, uuid string) bool {
	if !live(pid) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-name" && args[i+1] == vmName(uuid) {
			return true
		}
	}
	return false
}

// live reports whether pid exists and is neither a zombie nor dead.
func live(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state letter follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// alive reports whether the attached process is still running.
func (a *attached) alive() bool {
	return !waitPidfd(a.fd, 0) && live(a.pid)
}

// waitPidfd waits up to d for the process to exit and reports whether it has.
func waitPidfd(fd int, d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(d)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms < 0 {
			ms = 0
		}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (a *attached) stop(ctx context.Context, grace time.Duration) error {
	if err := unix.PidfdSendSignal(a.fd, unix.SIGTERM, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("signal qemu pid %d: %w", a.pid, err)
	}
	if exitedWithin(ctx, a.fd, grace) {
		return nil
	}
	if err := unix.PidfdSendSignal(a.fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill qemu pid %d: %w", a.pid, err)
	}
	if !waitPidfd(a.fd, 10*time.Second) {
		return fmt.Errorf("qemu pid %d still running 10s after SIGKILL", a.pid)
	}
	return nil
}

// exitedWithin polls the pidfd in short steps so ctx can cut the wait.
func exitedWithin(ctx context.Context, fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if waitPidfd(fd, 100*time.Millisecond) {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
	}
	return waitPidfd(fd, 0)
}
