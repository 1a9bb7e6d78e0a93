package imagewriter

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Zero-run skipping: runs of all-zero blocks at least minZeroRun long are
// not written but zeroed by the device (BLKZEROOUT, which devices with
// write-zeroes support do without transferring data). The runs are found
// once per chunk, for every disk (findZeroRuns); each disk's sink merges
// adjacent runs, across chunks too, and hands them to a zeroer goroutine
// of its own, so zeroing never waits on the data writes nor they on it.
const (
	zeroBlock  = 64 << 10
	minZeroRun = 256 << 10
	// maxZeroRequest bounds one zeroing request, so a cancelled write
	// does not wait long for the kernel (the ioctl cannot be
	// interrupted); a longer run is zeroed in several.
	maxZeroRequest = 256 << 20
	// zeroQueue is how many zero runs a sink may hand on ahead of its
	// zeroer.
	zeroQueue = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pageSize is the granularity at which zeroing may run concurrently with
// data writes: ranges that share no page with a data write cannot race it
// in the page cache (a buffered read-modify-write of a page next to a
// direct write). Anything else is zeroed in order with the data writes.
var pageSize = int64(os.Getpagesize())

// zeroRun is a range of a chunk's data that holds only zeros, in bytes
// from the start of its data.
type zeroRun struct{ start, end int }

// findZeroRuns appends to runs the zero runs of data that are at least
// minZeroRun long, looking at zeroBlock-sized blocks from its start.
func findZeroRuns(data []byte, runs []zeroRun) []zeroRun {
	if len(data) < minZeroRun {
		return runs
	}
	for i := 0; i < len(data); {
		if !isZero(data[i:min(i+zeroBlock, len(data))]) {
			i += zeroBlock
			continue
		}
		j := i
		for j < len(data) && isZero(data[j:min(j+zeroBlock, len(data))]) {
			j += zeroBlock
		}
		j = min(j, len(data))
		if j-i >= minZeroRun {
			runs = append(runs, zeroRun{i, j})
		}
		i = j
	}
	return runs
}

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

// drain writes the chunks arriving on ch to the disk until ch is closed,
// releasing each, with the disk's zeroing running beside it. It returns
// once every byte was handed to the device (written or zeroed): only then
// may the disk be flushed. The first error, of either, ends both.
func (s *sink) drain(ctx context.Context, ch <-chan *chunk) error {
	g, gctx := errgroup.WithContext(ctx)
	z := &zeroer{s: s, q: make(chan zeroReq, zeroQueue)}
	g.Go(func() error { return z.run(gctx) })
	g.Go(func() error {
		defer close(z.q)
		for {
			select {
			case c, ok := <-ch:
				if !ok {
					return z.flush(gctx)
				}
				err := s.write(gctx, c, z)
				c.release()
				if err != nil {
					return err
				}
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	return g.Wait()
}

// write puts a chunk on the device: its data, and its zero runs (or the
// range a zero chunk stands for) through the zeroer.
func (s *sink) write(ctx context.Context, c *chunk, z *zeroer) error {
	start := time.Now()
	defer s.span(start)
	if c.zero > 0 {
		if c.off+c.zero > s.limit {
			return s.tooLarge(c.off + c.zero)
		}
		return z.add(ctx, s.base+c.off, c.zero)
	}
	data := c.data()
	if c.off+int64(len(data)) > s.limit {
		return s.tooLarge(c.off + int64(len(data)))
	}
	pieceStart := 0
	if s.zeroRuns {
		for _, r := range c.zeroRuns {
			if r.start > pieceStart {
				if err := s.put(data[pieceStart:r.start], c.off+int64(pieceStart)); err != nil {
					return err
				}
			}
			if err := z.add(ctx, s.base+c.off+int64(r.start), int64(r.end-r.start)); err != nil {
				return err
			}
			pieceStart = r.end
		}
	}
	if pieceStart < len(data) {
		return s.put(data[pieceStart:], c.off+int64(pieceStart))
	}
	return nil
}

// put writes data at image offset off, recording its CRC for read-back.
func (s *sink) put(p []byte, off int64) error {
	if s.verify {
		s.record(verifyRecord{off: s.base + off, n: int64(len(p)), crc: crc32.Checksum(p, castagnoli)})
	}
	n, err := s.t.WriteAt(p, s.base+off)
	s.written.Add(int64(n))
	return err
}

// zeroer zeroes one disk's zero runs in a goroutine of its own. The sink
// adds runs in image order; adjacent ones are merged into one request
// (a zero tail spanning many chunks is one), which goes out as soon as the
// run ends. Runs that are not page-aligned are zeroed by the sink itself,
// after every request before them has completed, so they keep their order
// with the data writes next to them.
type zeroer struct {
	s *sink
	q chan zeroReq
	// pending is the run not yet handed on, as device offsets [from, to).
	from, to int64
}

// zeroReq is a device range to zero, or, with done set, a barrier: done is
// closed once every request before it has completed.
type zeroReq struct {
	off, n int64
	done   chan struct{}
}

// add zeroes the device range [off, off+n), merged with the pending run
// when adjacent.
func (z *zeroer) add(ctx context.Context, off, n int64) error {
	if n <= 0 {
		return nil
	}
	if off%pageSize != 0 || n%pageSize != 0 {
		if err := z.flush(ctx); err != nil {
			return err
		}
		if err := z.barrier(ctx); err != nil {
			return err
		}
		return z.zero(ctx, off, n)
	}
	if z.to > z.from && z.to == off {
		z.to += n
	} else {
		if err := z.flush(ctx); err != nil {
			return err
		}
		z.from, z.to = off, off+n
	}
	if z.to-z.from >= maxZeroRequest {
		return z.flush(ctx)
	}
	return nil
}

// flush hands the pending run to the zeroer goroutine.
func (z *zeroer) flush(ctx context.Context) error {
	if z.to <= z.from {
		return nil
	}
	r := zeroReq{off: z.from, n: z.to - z.from}
	z.from, z.to = 0, 0
	select {
	case z.q <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// barrier waits until every run handed on so far has been zeroed.
func (z *zeroer) barrier(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case z.q <- zeroReq{done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run zeroes the runs handed on until the queue is closed.
func (z *zeroer) run(ctx context.Context) error {
	for {
		select {
		case r, ok := <-z.q:
			if !ok {
				return nil
			}
			if r.done != nil {
				close(r.done)
				continue
			}
			if err := z.zero(ctx, r.off, r.n); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// zero makes [off, off+n) read as zeros, in requests of at most
// maxZeroRequest bytes, and records it.
func (z *zeroer) zero(ctx context.Context, off, n int64) error {
	s := z.s
	for done := int64(0); done < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n-done, maxZeroRequest)
		if err := s.t.ZeroRange(off+done, k); err != nil {
			return err
		}
		s.skipped.Add(k)
		done += k
	}
	s.record(verifyRecord{off: off, n: n, zero: true})
	return nil
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
