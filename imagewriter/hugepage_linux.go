package imagewriter

import "golang.org/x/sys/unix"

// adviseHugePages asks the kernel to back b, which starts on a huge page,
// with transparent huge pages when it first touches it. It is advice: a
// kernel without them, or with them turned off, keeps small pages, and
// the write works the same.
func adviseHugePages(b []byte) {
	_ = unix.Madvise(b[:len(b)/hugePage*hugePage], unix.MADV_HUGEPAGE)
}
