package hostileimage

import (
	"bytes"
	"io"
)

// ZstdWindowDescriptor returns the frame-header byte declaring a window of
// 2^log bytes (log 10 to 41).
func ZstdWindowDescriptor(log uint) byte { return byte(log-10) << 3 }

// Zstd returns one zstd frame declaring a window of 2^windowLog bytes and
// no content size, holding data as raw (stored) blocks of up to 128 KiB:
// a decoder keeps up to a window of it as history.
func Zstd(data []byte, windowLog uint) []byte {
	var out bytes.Buffer
	writeZstd(&out, bytes.NewReader(data), int64(len(data)), windowLog)
	return out.Bytes()
}

// ZstdReader is Zstd for size bytes of a repeating pattern, generated as it
// is read.
func ZstdReader(size int64, windowLog uint) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeZstd(pw, io.LimitReader(Pattern(), size), size, windowLog))
	}()
	return pr
}

func writeZstd(w io.Writer, data io.Reader, size int64, windowLog uint) error {
	// Magic, frame header descriptor 0 (no content size, no checksum, no
	// dictionary, not single-segment), window descriptor.
	if _, err := w.Write([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, ZstdWindowDescriptor(windowLog)}); err != nil {
		return err
	}
	const maxBlock = 128 << 10
	buf := make([]byte, maxBlock)
	done := int64(0)
	for {
		n := int(min(maxBlock, size-done))
		if _, err := io.ReadFull(data, buf[:n]); err != nil {
			return err
		}
		done += int64(n)
		last := 0
		if done == size {
			last = 1
		}
		h := uint32(n)<<3 | uint32(last) // block type 0: raw
		if _, err := w.Write([]byte{byte(h), byte(h >> 8), byte(h >> 16)}); err != nil {
			return err
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		if last == 1 {
			return nil
		}
	}
}
