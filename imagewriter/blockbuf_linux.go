package imagewriter

import (
	"io"

	"golang.org/x/sys/unix"
)

// blockBuffer is an xz worker's buffer for the compressed bytes of one
// block at a time, mapped outside the Go heap: it grows as blocks do and
// is unmapped at the end, so its pages leave no garbage for the collector
// to let pile up (which doubled the decode stage's peak RSS when the
// buffers were slices); and its block is read once, front to back, each
// MiB handed back to the kernel once read (reader), so a worker holds
// only the part of its block it has not decoded yet.
type blockBuffer struct{ b []byte }

// bytes returns the buffer with room for n bytes, mapping a larger one
// (the old one unmapped) when it has less.
func (m *blockBuffer) bytes(n int) ([]byte, error) {
	if n > len(m.b) {
		m.free()
		b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return nil, err
		}
		m.b = b
	}
	return m.b[:n], nil
}

// free unmaps the buffer.
func (m *blockBuffer) free() {
	if m.b != nil {
		_ = unix.Munmap(m.b)
		m.b = nil
	}
}

// capacity is how many bytes the buffer holds without growing.
func (m *blockBuffer) capacity() int { return len(m.b) }

// releaseStep is how far a block is read before its pages go back.
const releaseStep = 1 << 20

// reader returns a reader of the buffer's first n bytes that hands each
// MiB back to the kernel once it was read: the pages read again as zeros
// until the buffer is filled again.
func (m *blockBuffer) reader(n int) io.Reader { return &releasingReader{b: m.b[:n]} }

type releasingReader struct {
	b             []byte
	off, released int
}

func (r *releasingReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	// The mapping starts on a page, so a MiB boundary is one too.
	if done := r.off &^ (releaseStep - 1); done-r.released >= releaseStep {
		_ = unix.Madvise(r.b[r.released:done], unix.MADV_DONTNEED)
		r.released = done
	}
	return n, nil
}
