package writebench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run is one measured process of a job, with its captured output.
type run struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

// measure starts every command at once, waits for all of them, and
// returns what they cost together: wall time, CPU (user + system of each
// and of the children each waited for), the largest peak RSS, this
// process's CPU meanwhile (the HTTP server) and the machine's other CPU
// use. A command that fails fails the job, with its output.
func measure(ctx context.Context, cmds ...*exec.Cmd) (Sample, []*run, error) {
	runs := make([]*run, len(cmds))
	for i, c := range cmds {
		r := &run{cmd: c}
		c.Stdout, c.Stderr = &r.stdout, &r.stderr
		runs[i] = r
	}
	before, err := ReadCPUTimes()
	if err != nil {
		return Sample{}, nil, err
	}
	self0 := selfCPU()
	start := time.Now()
	var pids []int
	for i, r := range runs {
		if err := r.cmd.Start(); err != nil {
			for _, s := range runs[:i] {
				_ = s.cmd.Process.Kill()
				_ = s.cmd.Wait()
			}
			return Sample{}, nil, fmt.Errorf("start %s: %w", r.cmd.Path, err)
		}
		pids = append(pids, r.cmd.Process.Pid)
	}
	stopWatch := watchRSS(pids, 10*time.Millisecond)
	var errs []error
	for _, r := range runs {
		if err := r.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %s", strings.Join(r.cmd.Args, " "), err, tail(r.stderr.String()+r.stdout.String(), 2000)))
		}
	}
	wall := time.Since(start)
	server := selfCPU() - self0
	peakKiB := stopWatch()
	after, err := ReadCPUTimes()
	if err != nil {
		return Sample{}, nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return Sample{}, runs, err
	}
	if err := ctx.Err(); err != nil {
		return Sample{}, runs, err
	}
	s := Sample{Seconds: seconds(wall), ServerCPU: server, PeakRSSKiB: peakKiB}
	for _, r := range runs {
		// rusage's ru_maxrss is not used: a child started by a Go
		// program (clone with CLONE_VM) inherits the parent's high-water
		// mark across exec.
		if ru, ok := r.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.CPU += tv(ru.Utime) + tv(ru.Stime)
		}
	}
	if wall > 0 {
		s.Others = max(0, (after.Busy-before.Busy)-s.CPU-server) / seconds(wall)
	}
	return s, runs, nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// watchRSS samples the peak RSS (VmHWM) of the processes and of their
// descendants every interval until the returned function is called, which
// returns the sum over the processes seen of each one's last-seen peak, in
// KiB. VmHWM only grows, so a process's last sample misses only what it
// grew in its last interval.
func watchRSS(pids []int, interval time.Duration) func() int64 {
	peaks := map[int]int64{}
	stop := make(chan struct{})
	done := make(chan struct{})
	sample := func() {
		seen := map[int]bool{}
		var walk func(pid int)
		walk = func(pid int) {
			if seen[pid] {
				return
			}
			seen[pid] = true
			if hwm, ok := readHWM(pid); ok {
				peaks[pid] = max(peaks[pid], hwm)
			}
			for _, c := range childPIDs(pid) {
				walk(c)
			}
		}
		for _, p := range pids {
			walk(p)
		}
	}
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		var sum int64
		for _, v := range peaks {
			sum += v
		}
		return sum
	}
}

// readHWM reads a live process's VmHWM in KiB; false once it has exited.
func readHWM(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	st, err := ParseProcStatus(bytes.NewReader(b))
	if err != nil || st.HWM == 0 {
		return 0, false
	}
	return st.HWM, true
}

// childPIDs lists a process's children (/proc/PID/task/TID/children).
func childPIDs(pid int) []int {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
