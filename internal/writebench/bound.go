package writebench

import (
	"fmt"
	"strings"
)

// Stage is the cost of one stage of a write measured alone over the whole
// image: its time and the CPU it needed.
type Stage struct {
	// Name says what ran, e.g. "download (Go client)".
	Name string
	// Seconds is the stage's time alone.
	Seconds float64
	// CPU is the CPU seconds the stage needed, on any core.
	CPU float64
}

// Limit is the shortest time the stages together can take on this
// machine, and why.
type Limit struct {
	// Seconds is the bound's time.
	Seconds float64
	// ByCPU is true when the stages' summed CPU spread over the cores is
	// the bound, false when the slowest stage alone is.
	ByCPU bool
	// Stage is the slowest stage (the bound when !ByCPU).
	Stage Stage
	// CPU is the stages' summed CPU seconds and Cores the cores it is
	// spread over.
	CPU   float64
	Cores float64
}

// Bound is the longer of the slowest stage alone and the CPU all the
// stages need spread over cores: stages that run concurrently can go no
// faster than either. cores may be fractional (the cores left free by
// other load); it is taken as at least a tenth of one.
func Bound(stages []Stage, cores float64) Limit {
	cores = max(cores, 0.1)
	var l Limit
	l.Cores = cores
	for _, s := range stages {
		l.CPU += s.CPU
		if s.Seconds > l.Stage.Seconds {
			l.Stage = s
		}
	}
	l.Seconds = l.Stage.Seconds
	if cpu := l.CPU / cores; cpu > l.Seconds {
		l.Seconds, l.ByCPU = cpu, true
	}
	return l
}

// String names the bound, e.g. "CPU 2.40 s / 2 cores" or "stage: decode
// (zstd)".
func (l Limit) String() string {
	if l.ByCPU {
		return fmt.Sprintf("CPU %.2f s / %.3g cores", l.CPU, l.Cores)
	}
	return l.Stage.Name
}

// Detail lists the stages' times and CPU, e.g. "download 0.61 s (0.55
// CPU) · hash 0.58 s (0.58 CPU)".
func Detail(stages []Stage) string {
	var parts []string
	for _, s := range stages {
		parts = append(parts, fmt.Sprintf("%s %.2f s (%.2f CPU)", s.Name, s.Seconds, s.CPU))
	}
	return strings.Join(parts, " · ")
}
