package main

import (
	"log/slog"
	"os"
	"runtime/debug"
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
