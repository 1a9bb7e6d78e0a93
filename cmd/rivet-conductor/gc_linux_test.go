package main

import (
	"syscall"
	"testing"
)

// TestSoftMemoryLimit checks the soft memory limit: half the machine's
// memory, and a cgroup's limit read as bytes or as no limit.
func TestSoftMemoryLimit(t *testing.T) {
	limit, ok := softMemoryLimit()
	if !ok {
		t.Fatal("no soft memory limit on Linux")
	}
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	if total := int64(si.Totalram) * int64(si.Unit); limit <= 0 || limit > total/2 {
		t.Fatalf("limit %d bytes, machine %d", limit, total)
	}
	for in, want := range map[string]uint64{"max\n": 0, "": 0, "1073741824\n": 1 << 30, "junk": 0} {
		got, ok := parseCgroupLimit(in)
		if got != want || ok != (want != 0) {
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}
