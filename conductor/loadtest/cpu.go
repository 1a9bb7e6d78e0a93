package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// MachineCPU splits a machine's CPU over a stretch of time by who used
// it. Every figure is in cores (1.0 = one core busy the whole time), over
// the time between the two /proc/stat samples it comes from (for a boot
// storm they bracket it, so its conductor figure can differ by a point or
// two from the storm table's, which is over the storm's own duration).
type MachineCPU struct {
	// Cores is the machine's number of CPUs; Busy is what of them was not
	// idle (nor waiting for I/O).
	Cores int
	Busy  float64
	// Conductor, Generator and Neighbour are the conductor's, the load
	// generator's (this process's) and the CPU-bound neighbour's
	// processes' own times.
	Conductor, Generator, Neighbour float64
	// Others is every other process's time: the processes' time on the
	// machine less the three above (never below zero; the kernel samples
	// both at its tick, so a few hundredths either way are noise).
	Others float64
	// Interrupts is hard and soft interrupt time, which no process is
	// charged with: the loopback network's packets are handled there.
	Interrupts float64
	// Steal is time the hypervisor gave another machine while this one
	// had work to run.
	Steal float64
}

// cpuSnapshot is what a run reads to tell who used the CPU over a
// stretch: the conductor's, the load generator's (this process's) and the
// neighbour's processes' CPU times so far, and the machine's counters.
type cpuSnapshot struct {
	conductor, generator, neighbour time.Duration
	machine                         cpuSample
}

// takeCPU reads a cpuSnapshot (nb nil: no neighbour).
func takeCPU(cond *server, nb *neighbourProc) (cpuSnapshot, error) {
	var (
		s   cpuSnapshot
		err error
	)
	if s.conductor, err = cond.cpuTime(); err != nil {
		return s, err
	}
	if s.generator, err = procCPU(os.Getpid()); err != nil {
		return s, err
	}
	if s.neighbour, err = nb.cpuTime(); err != nil {
		return s, err
	}
	s.machine, err = machineCPU()
	return s, err
}

// machineSince is the machine's CPU from before to s, split by who used
// it.
func (s cpuSnapshot) machineSince(before cpuSnapshot) MachineCPU {
	return s.machine.split(before.machine, s.conductor-before.conductor, s.generator-before.generator, s.neighbour-before.neighbour)
}

// cpuSample is the machine's aggregate CPU counters, in ticks.
type cpuSample struct {
	// busy is every time but idle and iowait; total every time.
	busy, total int64
	// tasks is user, nice and system time (the processes'); irq is hard
	// and soft interrupt time; steal is the hypervisor's.
	tasks, irq, steal int64
	cores             int
}

func machineCPU() (cpuSample, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}, fmt.Errorf("loadtest: machine CPU: %w", err)
	}
	return parseProcStat(string(b)), nil
}

// cpuStatFields is how many of /proc/stat's CPU times are the CPU's own:
// user, nice, system, idle, iowait, irq, softirq, steal. The guest times
// after them are already counted in user and nice.
const cpuStatFields = 8

// parseProcStat reads the aggregate CPU times of /proc/stat's text and
// counts the per-CPU lines.
func parseProcStat(text string) cpuSample {
	var s cpuSample
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 4 && f[0] == "cpu":
			for i, v := range f[1:min(len(f), 1+cpuStatFields)] {
				n, _ := strconv.ParseInt(v, 10, 64)
				s.total += n
				switch i {
				case 0, 1, 2: // user, nice, system
					s.tasks += n
				case 5, 6: // irq, softirq
					s.irq += n
				case 7:
					s.steal += n
				}
				if i != 3 && i != 4 { // idle, iowait
					s.busy += n
				}
			}
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			s.cores++
		}
	}
	return s
}

func (s cpuSample) busyFraction(before cpuSample) float64 {
	if s.total == before.total {
		return 0
	}
	return float64(s.busy-before.busy) / float64(s.total-before.total)
}

// split is the machine's CPU from before to s, in cores, with the
// conductor's, the load generator's and the neighbour's CPU times over
// the same stretch taken out of the processes' share.
func (s cpuSample) split(before cpuSample, conductor, generator, neighbour time.Duration) MachineCPU {
	m := MachineCPU{Cores: s.cores}
	ticks := s.total - before.total
	if ticks <= 0 || s.cores == 0 {
		return m
	}
	// Aggregate ticks are summed over every CPU: a second of the stretch
	// is cores × USER_HZ of them.
	seconds := float64(ticks) / float64(s.cores) / userHZ
	cores := func(t int64) float64 { return float64(t) / userHZ / seconds }
	m.Busy = cores(s.busy - before.busy)
	m.Interrupts = cores(s.irq - before.irq)
	m.Steal = cores(s.steal - before.steal)
	m.Conductor = conductor.Seconds() / seconds
	m.Generator = generator.Seconds() / seconds
	m.Neighbour = neighbour.Seconds() / seconds
	m.Others = max(0, cores(s.tasks-before.tasks)-m.Conductor-m.Generator-m.Neighbour)
	return m
}

// userHZ is the unit of /proc's CPU times on Linux.
const userHZ = 100

// procStat is what a process's /proc/<pid>/stat says of it here.
type procStat struct {
	ppid int
	cpu  time.Duration // user + system
}

// parsePidStat reads a /proc/<pid>/stat text.
func parsePidStat(b []byte) (procStat, error) {
	// Fields after the command name (which may hold spaces and
	// parentheses) start after its last ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, fmt.Errorf("no command name in %q", b)
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parent: %w", err)
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stime: %w", err)
	}
	return procStat{ppid: ppid, cpu: time.Duration(utime+stime) * time.Second / userHZ}, nil
}

// procCPU is one process's user + system CPU time so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("loadtest: CPU of %d: %w", pid, err)
	}
	st, err := parsePidStat(b)
	if err != nil {
		return 0, fmt.Errorf("loadtest: CPU of %d: %w", pid, err)
	}
	return st.cpu, nil
}

// processTree returns pid and its direct children (nginx's workers,
// stress-ng's).
func processTree(pid int) ([]int, error) {
	ps := []int{pid}
	des, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	for _, de := range des {
		child, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue // exited since the listing
		}
		if st, err := parsePidStat(b); err == nil && st.ppid == pid {
			ps = append(ps, child)
		}
	}
	return ps, nil
}

// cpuOf is the summed user + system CPU time of processes: pids[0] and
// those of the others still alive (processTree's children, a worker gone
// since the listing no longer counted).
func cpuOf(pids []int) (time.Duration, error) {
	var total time.Duration
	for i, pid := range pids {
		d, err := procCPU(pid)
		switch {
		case i > 0 && errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return 0, err
		default:
			total += d
		}
	}
	return total, nil
}
