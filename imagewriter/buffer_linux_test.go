package imagewriter

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestAlignedBufferAdvisesHugePages checks that a buffer of huge pages is
// marked for transparent huge pages (the "hg" flag of its mapping), where
// the kernel has them. Whether the kernel then finds a free huge page is
// its business, so that is not asserted.
func TestAlignedBufferAdvisesHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		t.Skipf("no transparent huge pages: %v", err)
	}
	b := alignedBuffer(2 * hugePage)
	addr := uintptr(unsafe.Pointer(&b[0]))
	if addr%hugePage != 0 {
		t.Fatalf("buffer at %#x, not on a huge page", addr)
	}
	flags, err := vmFlags(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Errorf("mapping of the buffer has VmFlags %q, no hg (THP mode %s)", flags, strings.TrimSpace(string(mode)))
	}
	small := alignedBuffer(hugePage / 2)
	if a := uintptr(unsafe.Pointer(&small[0])); a%alignment != 0 {
		t.Errorf("small buffer at %#x, not aligned to %d", a, alignment)
	}
}

// vmFlags returns the VmFlags line of the mapping of this process that
// holds addr, from /proc/self/smaps.
func vmFlags(addr uintptr) (string, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 && strings.Contains(line, " ") {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:")), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no mapping holds %#x", addr)
}
