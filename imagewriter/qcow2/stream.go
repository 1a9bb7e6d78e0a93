package qcow2

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
)

// ErrNotStreamable: the file cannot be converted in one sequential pass,
// because a table comes after something it maps (an L2 table before the L1
// table, a data cluster before its L2 table).
var ErrNotStreamable = errors.New("qcow2 image cannot be converted while streaming")

// ZeroFunc receives, during Stream, a guest range holding no data: it must
// read as zeros on the target.
type ZeroFunc func(off, n int64) error

// streamKeep is how much of the stream Stream keeps behind its position
// until the cluster size is known; then it keeps two clusters, so packed
// compressed clusters that share a sector can be read again.
const streamKeep = 256 << 10

// Stream converts a qcow2 file read once, in order, from its first byte,
// with no random access (a server that ignores Range requests): the header
// gives the L1 table's place, the L1 table the L2 tables', each L2 table
// its data clusters', and every cluster is emitted at its guest offset as
// the stream passes it; guest ranges with no data go to zero. That needs
// each table to come before what it maps, the layout qemu-img convert
// writes; any other fails with ErrNotStreamable as soon as it shows, which
// may be after some data was emitted. fileSize is the file's size, -1 if
// unknown. It returns what it read and found, and reads r to its end so
// the whole file passes through the caller's hash.
func Stream(ctx context.Context, r io.Reader, fileSize int64, lim Limits, emit EmitFunc, zero ZeroFunc) (Streamed, error) {
	return StreamRef(ctx, r, fileSize, lim, dropRef(emit), zero)
}

// Streamed is what a one-pass conversion read and found, as far as it got.
type Streamed struct {
	// Header is the file's header; nil if it did not parse.
	Header *Header
	// Read is the number of bytes read.
	Read int64
	// DataBytes and CompressedBytes are as in Map, for the extents mapped
	// so far: compressed ones decode on InflateWorkers goroutines.
	DataBytes, CompressedBytes int64
}

// StreamRef is Stream for an emit function that may keep the bytes it gets
// by reference; r may be a PieceReader.
func StreamRef(ctx context.Context, r io.Reader, fileSize int64, lim Limits, emit EmitRefFunc, zero ZeroFunc) (Streamed, error) {
	lim = lim.withDefaults()
	w := newWindow(r, streamKeep)
	defer w.close()
	s := &streamer{ctx: ctx, w: w, fileSize: fileSize, emit: emit, zero: zero, mem: &budget{max: lim.MaxMemory}}
	err := s.run()
	return Streamed{Header: s.h, Read: w.end(), DataBytes: s.data, CompressedBytes: s.compressed}, err
}

type streamer struct {
	ctx      context.Context
	w        *window
	fileSize int64
	emit     EmitRefFunc
	zero     ZeroFunc
	mem      *budget
	h        *Header
	inf      *inflater
	// data and compressed count the guest bytes of the extents mapped so
	// far, and of the compressed ones among them.
	data, compressed int64
	// pending zero range, merged while contiguous
	zs, ze int64
}

func (s *streamer) run() error {
	h, err := s.header()
	if err != nil {
		return err
	}
	s.h = h
	cs := h.ClusterSize()
	s.inf = newInflater(h.CompressionType, int(cs), s.emit)
	defer s.inf.close()
	s.w.keep = max(s.w.keep, int(2*cs+64<<10))
	need := h.L1Needed()
	if need == 0 {
		return s.finish()
	}
	if err := s.mem.charge(need*(l1EntryCost+8), fmt.Sprintf("an L1 table of %d entries", need)); err != nil {
		return err
	}
	l1Off, l1Bytes := int64(h.L1TableOffset), need*8
	if err := s.inFile("L1 table", l1Off, l1Bytes); err != nil {
		return err
	}
	raw := make([]byte, 0, l1Bytes)
	if err := s.each("L1 table", l1Off, l1Off+l1Bytes, func(p []byte) error { raw = append(raw, p...); return nil }); err != nil {
		return err
	}
	l1 := make([]int64, need)
	if err := parseL1Entries(raw, h, 0, l1); err != nil {
		return err
	}
	raw = nil
	span := cs * h.L2Entries()
	order := make([]int32, 0, need)
	for i, off := range l1 {
		if off == 0 {
			if err := s.hole(int64(i)*span, min(span, int64(h.Size)-int64(i)*span)); err != nil {
				return err
			}
			continue
		}
		order = append(order, int32(i))
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Or(cmp.Compare(l1[a], l1[b]), cmp.Compare(a, b)) })
	if len(order) > 0 && l1[order[0]] < l1Off+l1Bytes {
		return fmt.Errorf("%w: the L2 table at %#x comes before the end of the L1 table at %#x", ErrNotStreamable, l1[order[0]], l1Off+l1Bytes)
	}

	pending := &extentHeap{}
	table := make([]byte, 0, cs)
	var local []Extent
	for next := 0; next < len(order) || pending.Len() > 0; {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		if next < len(order) && (pending.Len() == 0 || l1[order[next]] <= (*pending)[0].Host) {
			// The next L2 table, parsed for every L1 entry that points
			// at it.
			off := l1[order[next]]
			if err := s.inFile("L2 table", off, cs); err != nil {
				return err
			}
			table = table[:0]
			if err := s.each("L2 table", off, off+cs, func(p []byte) error { table = append(table, p...); return nil }); err != nil {
				return err
			}
			for ; next < len(order) && l1[order[next]] == off; next++ {
				i := int64(order[next])
				local = local[:0]
				err := ParseL2(table, h, i, func(e Extent) error {
					if n := len(local); n > 0 && !e.Compressed {
						p := &local[n-1]
						if !p.Compressed && p.Host+p.Len == e.Host && p.Guest+p.GuestLen == e.Guest && p.Len == p.GuestLen {
							p.Len += e.Len
							p.GuestLen += e.GuestLen
							return nil
						}
					}
					local = append(local, e)
					return nil
				})
				if err != nil {
					return err
				}
				if err := s.mem.charge(int64(len(local))*extentCost, fmt.Sprintf("%d more extents", len(local))); err != nil {
					return err
				}
				base, end := i*span, min((i+1)*span, int64(h.Size))
				pos := base
				for _, e := range local {
					if err := s.clip(&e); err != nil {
						return err
					}
					if e.Host < s.w.start {
						return fmt.Errorf("%w: the data at %#x (guest %#x) comes before its L2 table at %#x", ErrNotStreamable, e.Host, e.Guest, off)
					}
					if err := s.hole(pos, e.Guest-pos); err != nil {
						return err
					}
					pos = e.Guest + e.GuestLen
					s.data += e.GuestLen
					if e.Compressed {
						s.compressed += e.GuestLen
					}
					heap.Push(pending, e)
				}
				if err := s.hole(pos, end-pos); err != nil {
					return err
				}
			}
			continue
		}
		// The next data: every extent of the same host bytes at once.
		run := []Extent{heap.Pop(pending).(Extent)}
		for pending.Len() > 0 && sameHost((*pending)[0], run[0]) {
			run = append(run, heap.Pop(pending).(Extent))
		}
		if run[0].Host < s.w.start {
			return fmt.Errorf("%w: the data at %#x (guest %#x) was passed before it was mapped", ErrNotStreamable, run[0].Host, run[0].Guest)
		}
		if err := copyExtents(s.w, s.inf, run, s.emit); err != nil {
			return err
		}
	}
	if err := s.inf.flush(); err != nil {
		return err
	}
	return s.finish()
}

// header reads and parses the header cluster.
func (s *streamer) header() (*Header, error) {
	first := make([]byte, 0, 64<<10)
	if err := s.w.each(0, 64<<10, func(p []byte) error { first = append(first, p...); return nil }); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("reading qcow2 header: %w", err)
	}
	h, err := ParseHeader(first)
	if err != nil {
		return nil, err
	}
	if cs := h.ClusterSize(); cs > int64(len(first)) {
		if err := s.w.each(int64(len(first)), cs, func(p []byte) error { first = append(first, p...); return nil }); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("reading qcow2 header cluster: %w", err)
		}
		if h, err = ParseHeader(first); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// each reads [a, b) of the stream, which must not have been passed yet.
func (s *streamer) each(what string, a, b int64, fn func([]byte) error) error {
	if a < s.w.start {
		return fmt.Errorf("%w: the %s at %#x comes before what the stream already passed (%#x)", ErrNotStreamable, what, a, s.w.start)
	}
	return s.w.each(a, b, fn)
}

func (s *streamer) inFile(what string, off, n int64) error {
	if off < 0 || n < 0 || (s.fileSize >= 0 && off+n > s.fileSize) {
		return fmt.Errorf("%w: %s at %#x (+%d) lies outside the %d-byte file", ErrInvalid, what, off, n, s.fileSize)
	}
	return nil
}

// clip bounds a compressed extent's length (an upper bound) by the file
// and checks the extent lies in it.
func (s *streamer) clip(e *Extent) error {
	if s.fileSize < 0 {
		return nil
	}
	if e.Compressed && e.Host < s.fileSize && e.Host+e.Len > s.fileSize {
		e.Len = s.fileSize - e.Host
	}
	return s.inFile("data cluster", e.Host, e.Len)
}

// hole records a guest range with no data, merging contiguous ones.
func (s *streamer) hole(off, n int64) error {
	if n <= 0 {
		return nil
	}
	if s.ze == off && s.ze > s.zs {
		s.ze += n
		return nil
	}
	if err := s.flushHole(); err != nil {
		return err
	}
	s.zs, s.ze = off, off+n
	return nil
}

func (s *streamer) flushHole() error {
	if s.ze <= s.zs {
		return nil
	}
	err := s.zero(s.zs, s.ze-s.zs)
	s.zs, s.ze = 0, 0
	return err
}

// finish zeroes the last hole and reads the rest of the file.
func (s *streamer) finish() error {
	if err := s.flushHole(); err != nil {
		return err
	}
	if err := s.w.drain(); err != nil {
		return err
	}
	if s.fileSize >= 0 && s.w.end() != s.fileSize {
		return fmt.Errorf("%w: stream is %d bytes, the file %d", io.ErrUnexpectedEOF, s.w.end(), s.fileSize)
	}
	return nil
}

// extentHeap orders pending extents by host offset, then guest offset.
type extentHeap []Extent

func (x extentHeap) Len() int { return len(x) }
func (x extentHeap) Less(i, j int) bool {
	return x[i].Host < x[j].Host || x[i].Host == x[j].Host && x[i].Guest < x[j].Guest
}
func (x extentHeap) Swap(i, j int) { x[i], x[j] = x[j], x[i] }
func (x *extentHeap) Push(v any)   { *x = append(*x, v.(Extent)) }
func (x *extentHeap) Pop() any {
	old := *x
	v := old[len(old)-1]
	*x = old[:len(old)-1]
	return v
}
