//go:build !linux

package imagewriter

import (
	"bytes"
	"io"
)

// blockBuffer is an xz worker's buffer for the compressed bytes of one
// block at a time; outside Linux, a slice.
type blockBuffer struct{ b []byte }

// bytes returns the buffer with room for n bytes.
func (m *blockBuffer) bytes(n int) ([]byte, error) {
	if n > len(m.b) {
		m.b = make([]byte, n)
	}
	return m.b[:n], nil
}

// free lets go of the buffer.
func (m *blockBuffer) free() { m.b = nil }

// capacity is how many bytes the buffer holds without growing.
func (m *blockBuffer) capacity() int { return len(m.b) }

// reader returns a reader of the buffer's first n bytes.
func (m *blockBuffer) reader(n int) io.Reader { return bytes.NewReader(m.b[:n]) }
