package main

import (
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
)

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
