package main

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// gcPercent is the garbage collector's target (GOGC) unless the GOGC
// environment variable sets one: the heap may grow to five times what is
// live, not twice. A boot storm allocates heavily (JSON columns, HTTP
// requests, agent commands); at 20,000 agents booting within 30 s the
// collector's marking took a tenth of the conductor's CPU at 200. Runs
// at 400 ended that storm 0.6–6.5 s after the boot window against 4.3 s
// at 200 (runs of one build vary by seconds: docs/conductor-scaling.md),
// and raised peak memory from 1.8 to 2.4–2.8 GiB; softMemoryLimit keeps
// that growth from exhausting the machine.
const gcPercent = 400

// memoryShare is the share of the memory available to the conductor (the
// machine's, or its cgroup's if lower) past which the collector works
// harder whatever gcPercent allows.
const memoryShare = 0.5

// tuneGC sets the collector's target and soft memory limit, each unless
// its environment variable (GOGC, GOMEMLIMIT) sets it.
func tuneGC(log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
		log.Debug("garbage collector target set", "gc_percent", gcPercent, "override", "GOGC")
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if limit, ok := softMemoryLimit(); ok {
			debug.SetMemoryLimit(limit)
			log.Debug("soft memory limit set", "bytes", limit, "override", "GOMEMLIMIT")
		}
	}
}

// softMemoryLimit is memoryShare of the memory available: the machine's,
// or the cgroup's limit if lower.
func softMemoryLimit() (int64, bool) {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0, false
	}
	avail := uint64(si.Totalram) * uint64(si.Unit)
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if l, ok := parseCgroupLimit(string(b)); ok && l < avail {
			avail = l
		}
	}
	if avail == 0 || avail > math.MaxInt64 {
		return 0, false
	}
	return int64(float64(avail) * memoryShare), true
}

// parseCgroupLimit reads a cgroup v2 memory.max: bytes, or "max" (no
// limit).
func parseCgroupLimit(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if s == "max" || s == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
