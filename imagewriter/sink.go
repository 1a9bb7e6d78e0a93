package imagewriter

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"time"
)

// Zero-run skipping: within a chunk, runs of all-zero blocks at least
// minZeroRun long are not written but zeroed by the device (BLKZEROOUT,
// which devices with write-zeroes support do without transferring data).
const (
	zeroBlock  = 64 << 10
	minZeroRun = 256 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sink is one target disk's writer: it places image bytes at base on the
// device, bounded by limit, and counts what it wrote and skipped.
type sink struct {
	t     target
	base  int64 // device offset of image byte 0
	limit int64 // image bytes that fit
	// zeroRuns replaces long zero runs with ZeroRange.
	zeroRuns bool
	verify   bool

	written atomic.Int64
	skipped atomic.Int64

	mu          sync.Mutex
	first, last time.Time
	records     []verifyRecord
}

// verifyRecord is a range written, with the CRC-32C of its bytes (or zero
// for a range made to read as zeros).
type verifyRecord struct {
	off  int64 // device offset
	n    int64
	crc  uint32
	zero bool
}

func newSink(t target, base, limit int64, zeroRuns, verify bool) *sink {
	return &sink{t: t, base: base, limit: limit, zeroRuns: zeroRuns && t.ZeroOffload(), verify: verify}
}

func (s *sink) span(start time.Time) {
	s.mu.Lock()
	if s.first.IsZero() {
		s.first = start
	}
	s.last = time.Now()
	s.mu.Unlock()
}

// write puts a chunk on the device.
func (s *sink) write(c *chunk) error {
	start := time.Now()
	defer s.span(start)
	if c.zero > 0 {
		if c.off+c.zero > s.limit {
			return s.tooLarge(c.off + c.zero)
		}
		if err := s.t.ZeroRange(s.base+c.off, c.zero); err != nil {
			return err
		}
		s.skipped.Add(c.zero)
		s.record(verifyRecord{off: s.base + c.off, n: c.zero, zero: true})
		return nil
	}
	data := c.data()
	if c.off+int64(len(data)) > s.limit {
		return s.tooLarge(c.off + int64(len(data)))
	}
	if s.verify {
		s.record(verifyRecord{off: s.base + c.off, n: int64(len(data)), crc: crc32.Checksum(data, castagnoli)})
	}
	if !s.zeroRuns || len(data) < minZeroRun {
		return s.put(data, c.off)
	}
	// Split into data pieces and long zero runs.
	pieceStart := 0
	i := 0
	for i < len(data) {
		if !isZero(data[i:min(i+zeroBlock, len(data))]) {
			i += zeroBlock
			continue
		}
		j := i
		for j < len(data) && isZero(data[j:min(j+zeroBlock, len(data))]) {
			j += zeroBlock
		}
		j = min(j, len(data))
		if j-i < minZeroRun {
			i = j
			continue
		}
		if i > pieceStart {
			if err := s.put(data[pieceStart:i], c.off+int64(pieceStart)); err != nil {
				return err
			}
		}
		if err := s.t.ZeroRange(s.base+c.off+int64(i), int64(j-i)); err != nil {
			return err
		}
		s.skipped.Add(int64(j - i))
		pieceStart, i = j, j
	}
	if pieceStart < len(data) {
		return s.put(data[pieceStart:], c.off+int64(pieceStart))
	}
	return nil
}

func (s *sink) put(p []byte, off int64) error {
	n, err := s.t.WriteAt(p, s.base+off)
	s.written.Add(int64(n))
	return err
}

func (s *sink) record(r verifyRecord) {
	if !s.verify {
		return
	}
	s.mu.Lock()
	s.records = append(s.records, r)
	s.mu.Unlock()
}

func (s *sink) tooLarge(end int64) error {
	return fmt.Errorf("%w: the image needs at least %d bytes, %s has %d at offset %d",
		ErrTooLarge, end, s.t.Path(), s.limit, s.base)
}

func isZero(b []byte) bool {
	if len(b) <= len(zeros) {
		return bytes.Equal(b, zeros[:len(b)])
	}
	for len(b) > 0 {
		k := min(len(b), len(zeros))
		if !bytes.Equal(b[:k], zeros[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// readBack re-reads every recorded range from the device, bypassing the
// page cache where it can, and compares it with what was written.
func (s *sink) readBack(ctx context.Context, buf []byte) (int64, error) {
	var checked int64
	for _, r := range s.records {
		crc := uint32(0)
		for done := int64(0); done < r.n; {
			if err := ctx.Err(); err != nil {
				return checked, err
			}
			k := min(r.n-done, int64(len(buf)))
			p := buf[:k]
			if _, err := s.t.ReadDirectAt(p, r.off+done); err != nil {
				return checked, fmt.Errorf("%w: read-back verify: %w", ErrTarget, err)
			}
			if r.zero {
				if !isZero(p) {
					return checked, fmt.Errorf("%w: read-back verify: %s does not read as zeros in [%d, %d)", ErrTarget, s.t.Path(), r.off+done, r.off+done+k)
				}
			} else {
				crc = crc32.Update(crc, castagnoli, p)
			}
			done += k
			checked += k
		}
		if !r.zero && crc != r.crc {
			return checked, fmt.Errorf("%w: read-back verify: %s reads back different bytes in [%d, %d) than were written", ErrTarget, s.t.Path(), r.off, r.off+r.n)
		}
	}
	return checked, nil
}
