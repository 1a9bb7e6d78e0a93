package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// BaseArgs are the QEMU arguments every test VM gets: TCG (KVM does not
// work on these machines), no display, no default devices, the serial
// console on stdio, and exit instead of reboot.
var BaseArgs = []string{
	"-accel", "tcg", "-display", "none", "-monitor", "none", "-nodefaults",
	"-no-reboot", "-serial", "stdio",
}

// VM is a QEMU process whose serial console is collected line by line.
type VM struct {
	t       testing.TB
	cmd     *exec.Cmd
	started time.Time
	console *lineWriter

	mu      sync.Mutex
	lines   []string
	exited  bool
	exitErr error
	changed chan struct{} // closed and replaced on every new line and at exit
	done    chan struct{} // closed once the console is drained and QEMU reaped
}

// Start runs qemu-system-x86_64 with BaseArgs and args. QEMU is killed
// when ctx ends or the test finishes. Every console line goes to t.Log.
func Start(ctx context.Context, t testing.TB, args ...string) *VM {
	t.Helper()
	bin := QEMU(t)
	cmd := exec.CommandContext(ctx, bin, append(append([]string{}, BaseArgs...), args...)...)
	cmd.WaitDelay = 5 * time.Second
	vm := &VM{t: t, cmd: cmd, changed: make(chan struct{}), done: make(chan struct{})}
	vm.console = &lineWriter{line: vm.addLine}
	cmd.Stdout = vm.console
	cmd.Stderr = cmd.Stdout
	t.Logf("qemu %s", strings.Join(cmd.Args[1:], " "))
	vm.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go vm.wait()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-vm.done
	})
	return vm
}

func (vm *VM) addLine(line string) {
	vm.t.Logf("console %6.2fs| %s", time.Since(vm.started).Seconds(), line)
	vm.mu.Lock()
	vm.lines = append(vm.lines, line)
	close(vm.changed)
	vm.changed = make(chan struct{})
	vm.mu.Unlock()
}

// wait reaps QEMU; exec's copying goroutine has delivered every line by
// the time Wait returns.
func (vm *VM) wait() {
	defer close(vm.done)
	err := vm.cmd.Wait()
	vm.console.flush()
	vm.mu.Lock()
	vm.exited, vm.exitErr = true, err
	close(vm.changed)
	vm.changed = make(chan struct{})
	vm.mu.Unlock()
}

// ErrExited is returned by WaitFor when QEMU exits before the line appears.
var ErrExited = errors.New("qemu exited")

// WaitFor waits for a console line matching re (earlier lines count too)
// and returns its submatches and the time since QEMU started.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp) ([]string, time.Duration, error) {
	seen := 0
	for {
		vm.mu.Lock()
		for ; seen < len(vm.lines); seen++ {
			if m := re.FindStringSubmatch(vm.lines[seen]); m != nil {
				vm.mu.Unlock()
				return m, time.Since(vm.started), nil
			}
		}
		exited, exitErr, changed := vm.exited, vm.exitErr, vm.changed
		vm.mu.Unlock()
		if exited {
			return nil, 0, fmt.Errorf("waiting for %q: %w (%v)", re, ErrExited, exitErr)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("waiting for %q: %w", re, ctx.Err())
		}
	}
}

// Wait waits for QEMU to exit and returns its exit error (nil for status 0)
// and the time since it started.
func (vm *VM) Wait(ctx context.Context) (time.Duration, error) {
	select {
	case <-vm.done:
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for qemu to exit: %w", ctx.Err())
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return time.Since(vm.started), vm.exitErr
}

// lineWriter calls line for every complete line written to it, without
// the line end (and without a trailing carriage return).
type lineWriter struct {
	line func(string)
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a console that never ends a line
		w.line(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// flush delivers a last line that has no line end.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.line(strings.TrimRight(string(w.buf), "\r"))
		w.buf = nil
	}
}

// Kill kills QEMU at once, as a power cut would stop the machine: what
// the guest had not written to its disks is lost. It returns once QEMU is
// reaped and every console line it wrote has been collected.
func (vm *VM) Kill() {
	_ = vm.cmd.Process.Kill()
	<-vm.done
}

// Lines returns the console lines collected so far.
func (vm *VM) Lines() []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]string(nil), vm.lines...)
}
