package hostileimage

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// TestGzipZeros: the stream inflates, through the standard library's
// reader, to exactly size zero bytes, at and around the member size.
func TestGzipZeros(t *testing.T) {
	for _, size := range []int64{0, 1, gzipZerosMember, gzipZerosMember + 5, 3*gzipZerosMember - 1} {
		zr, err := gzip.NewReader(GzipZeros(size))
		if err != nil {
			t.Fatalf("%d: %v", size, err)
		}
		var n int64
		buf, zeros := make([]byte, 1<<20), make([]byte, 1<<20)
		for {
			k, err := zr.Read(buf)
			if !bytes.Equal(buf[:k], zeros[:k]) {
				t.Fatalf("%d: a non-zero byte after %d", size, n)
			}
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%d: %v", size, err)
			}
		}
		if n != size {
			t.Errorf("GzipZeros(%d) inflates to %d bytes", size, n)
		}
	}
}
