package qcow2

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
)

const (
	// offsetMask selects bits 9–55 of an L1 or standard L2 entry.
	offsetMask = 0x00fffffffffffe00
	copiedFlag = uint64(1) << 63
	compressed = uint64(1) << 62
	zeroFlag   = uint64(1)
	// l1Reserved are bits 1–8 and 56–62 of an L1 entry.
	l1Reserved = 0x7f000000000001fe
	// l2Reserved are bits 1–8 and 56–61 of a standard L2 entry.
	l2Reserved = 0x3f000000000001fe
)

// MaxExtents bounds the map a single image may produce; an image this
// fragmented (4 Mi compressed clusters is 256 GiB at 64 KiB clusters) is
// refused rather than held in memory.
const MaxExtents = 4 << 20

// Extent is one piece of guest data stored in the file.
type Extent struct {
	// Host is the byte offset in the qcow2 file.
	Host int64
	// Len is the number of bytes at Host: the data itself for a standard
	// extent, the compressed stream (an upper bound) for a compressed one.
	Len int64
	// Guest is the byte offset in the virtual disk.
	Guest int64
	// GuestLen is the number of virtual-disk bytes the extent fills.
	GuestLen int64
	// Compressed marks a compressed cluster.
	Compressed bool
}

// Range is a byte range [Off, Off+Len).
type Range struct{ Off, Len int64 }

// metaRegion is a piece of metadata read before streaming, with the digest
// the streamed bytes must match.
type metaRegion struct {
	Range
	sum [sha256.Size]byte
}

// Map is everything needed to stream an image: the header and every data
// extent, sorted by host offset.
type Map struct {
	Header *Header
	// FileSize is the size of the qcow2 file, -1 when unknown.
	FileSize int64
	// Extents are sorted by Host.
	Extents []Extent
	// DataBytes is the number of virtual-disk bytes holding data.
	DataBytes int64
	meta      []metaRegion
}

// ParseL1 decodes an L1 table into L2 table offsets (0: no L2 table).
func ParseL1(b []byte, h *Header) ([]int64, error) {
	if int64(len(b)) < int64(h.L1Size)*8 {
		return nil, fmt.Errorf("%w: L1 table needs %d bytes, have %d", ErrInvalid, int64(h.L1Size)*8, len(b))
	}
	out := make([]int64, h.L1Size)
	cs := uint64(h.ClusterSize())
	for i := range out {
		e := binary.BigEndian.Uint64(b[i*8:])
		if e&l1Reserved != 0 {
			return nil, fmt.Errorf("%w: L1 entry %d has reserved bits set (%#x)", ErrInvalid, i, e)
		}
		off := e & offsetMask
		if off%cs != 0 {
			return nil, fmt.Errorf("%w: L1 entry %d points to unaligned offset %#x", ErrInvalid, i, off)
		}
		out[i] = int64(off)
	}
	return out, nil
}

// ParseL2 decodes the L2 table b of L1 entry l1Index, calling add for
// every cluster that holds data. Entries past the virtual size are
// ignored; all-zero and unallocated clusters produce nothing (they read as
// zeros, the image having no backing file).
func ParseL2(b []byte, h *Header, l1Index int64, add func(Extent) error) error {
	cs := h.ClusterSize()
	if int64(len(b)) < cs {
		return fmt.Errorf("%w: L2 table needs %d bytes, have %d", ErrInvalid, cs, len(b))
	}
	n := h.L2Entries()
	x := 62 - (h.ClusterBits - 8)
	for i := int64(0); i < n; i++ {
		guest := (l1Index*n + i) * cs
		if guest >= int64(h.Size) {
			break
		}
		glen := min(cs, int64(h.Size)-guest)
		e := binary.BigEndian.Uint64(b[i*8:])
		if e&compressed != 0 {
			if e&copiedFlag != 0 {
				return fmt.Errorf("%w: L2 entry %d of table %d is compressed and copied", ErrInvalid, i, l1Index)
			}
			host := int64(e & (uint64(1)<<x - 1))
			sectors := int64((e >> x) & (uint64(1)<<(62-x) - 1))
			length := (sectors+1)*512 - host%512
			if host == 0 || host > 1<<56 {
				return fmt.Errorf("%w: compressed cluster at guest %#x has host offset %#x", ErrInvalid, guest, host)
			}
			if err := add(Extent{Host: host, Len: length, Guest: guest, GuestLen: glen, Compressed: true}); err != nil {
				return err
			}
			continue
		}
		if e&l2Reserved != 0 {
			return fmt.Errorf("%w: L2 entry %d of table %d has reserved bits set (%#x)", ErrInvalid, i, l1Index, e)
		}
		if e&zeroFlag != 0 {
			if h.Version < 3 {
				return fmt.Errorf("%w: zero flag in a version 2 image", ErrInvalid)
			}
			continue
		}
		host := int64(e & offsetMask)
		if host == 0 {
			continue
		}
		if host%cs != 0 {
			return fmt.Errorf("%w: cluster at guest %#x has unaligned host offset %#x", ErrInvalid, guest, host)
		}
		if err := add(Extent{Host: host, Len: glen, Guest: guest, GuestLen: glen}); err != nil {
			return err
		}
	}
	return nil
}

// ReadMap reads the header, the L1 table and every L2 table through r (the
// image file, e.g. over HTTP Range requests), up to parallel reads at
// once, and returns the map. fileSize is the file's size, -1 if unknown.
func ReadMap(ctx context.Context, r io.ReaderAt, fileSize int64, parallel int) (*Map, error) {
	first := make([]byte, 64<<10)
	n, err := r.ReadAt(first, 0)
	if n < MinHeaderBytes && err != nil {
		return nil, fmt.Errorf("reading qcow2 header: %w", err)
	}
	first = first[:n]
	h, err := ParseHeader(first)
	if err != nil {
		return nil, err
	}
	cs := h.ClusterSize()
	if int64(len(first)) > cs {
		first = first[:cs]
	} else if int64(len(first)) < cs && (fileSize < 0 || fileSize > int64(len(first))) {
		// Clusters over 64 KiB: extensions may go further.
		more := make([]byte, cs)
		n, err := r.ReadAt(more, 0)
		if n < len(first) && err != nil {
			return nil, fmt.Errorf("reading qcow2 header cluster: %w", err)
		}
		first = more[:n]
		if h, err = ParseHeader(first); err != nil {
			return nil, err
		}
	}
	m := &Map{Header: h, FileSize: fileSize}
	m.meta = append(m.meta, metaRegion{Range: Range{0, int64(len(first))}, sum: sha256.Sum256(first)})

	l1Bytes := int64(h.L1Size) * 8
	if l1Bytes == 0 {
		return m, nil
	}
	if err := m.inFile("L1 table", int64(h.L1TableOffset), l1Bytes); err != nil {
		return nil, err
	}
	l1raw := make([]byte, l1Bytes)
	if err := readFull(r, l1raw, int64(h.L1TableOffset)); err != nil {
		return nil, fmt.Errorf("reading qcow2 L1 table: %w", err)
	}
	m.meta = append(m.meta, metaRegion{Range: Range{int64(h.L1TableOffset), l1Bytes}, sum: sha256.Sum256(l1raw)})
	l1, err := ParseL1(l1raw, h)
	if err != nil {
		return nil, err
	}
	l1raw = nil

	// Read the L2 tables in parallel, in L1 order within each worker's
	// result slot, then merge in guest order.
	type l2result struct {
		extents []Extent
		meta    metaRegion
	}
	results := make([]l2result, len(l1))
	if parallel < 1 {
		parallel = 1
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	var total sync.Mutex
	count := 0
	for i, off := range l1 {
		if off == 0 {
			continue
		}
		if int64(i)*h.L2Entries()*cs >= int64(h.Size) {
			break
		}
		if err := m.inFile("L2 table", off, cs); err != nil {
			return nil, err
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			b := make([]byte, cs)
			if err := readFull(r, b, off); err != nil {
				return fmt.Errorf("reading qcow2 L2 table %d at %#x: %w", i, off, err)
			}
			res := &results[i]
			res.meta = metaRegion{Range: Range{off, cs}, sum: sha256.Sum256(b)}
			return ParseL2(b, h, int64(i), func(e Extent) error {
				if n := len(res.extents); n > 0 && !e.Compressed {
					p := &res.extents[n-1]
					if !p.Compressed && p.Host+p.Len == e.Host && p.Guest+p.GuestLen == e.Guest && p.Len == p.GuestLen {
						p.Len += e.Len
						p.GuestLen += e.GuestLen
						return nil
					}
				}
				total.Lock()
				count++
				over := count > MaxExtents
				total.Unlock()
				if over {
					return fmt.Errorf("%w: more than %d extents; too fragmented to stream", ErrUnsupported, MaxExtents)
				}
				res.extents = append(res.extents, e)
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i := range results {
		r := &results[i]
		if r.meta.Len == 0 {
			continue
		}
		m.meta = append(m.meta, r.meta)
		for _, e := range r.extents {
			if n := len(m.Extents); n > 0 && !e.Compressed {
				p := &m.Extents[n-1]
				if !p.Compressed && p.Host+p.Len == e.Host && p.Guest+p.GuestLen == e.Guest && p.Len == p.GuestLen {
					p.Len += e.Len
					p.GuestLen += e.GuestLen
					m.DataBytes += e.GuestLen
					continue
				}
			}
			if err := m.checkExtent(&e); err != nil {
				return nil, err
			}
			m.Extents = append(m.Extents, e)
			m.DataBytes += e.GuestLen
		}
		r.extents = nil
	}
	slices.SortFunc(m.Extents, func(a, b Extent) int { return cmp.Compare(a.Host, b.Host) })
	slices.SortFunc(m.meta, func(a, b metaRegion) int { return cmp.Compare(a.Off, b.Off) })
	return m, nil
}

// checkExtent makes sure an extent lies in the file; the compressed
// length, an upper bound, is clipped at the end of the file.
func (m *Map) checkExtent(e *Extent) error {
	if m.FileSize < 0 {
		return nil
	}
	if e.Compressed && e.Host < m.FileSize && e.Host+e.Len > m.FileSize {
		e.Len = m.FileSize - e.Host
	}
	return m.inFile("data cluster", e.Host, e.Len)
}

func (m *Map) inFile(what string, off, n int64) error {
	if off < 0 || n < 0 || (m.FileSize >= 0 && off+n > m.FileSize) {
		return fmt.Errorf("%w: %s at %#x (+%d) lies outside the %d-byte file", ErrInvalid, what, off, n, m.FileSize)
	}
	return nil
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Holes returns the guest ranges that hold no data (unallocated or zero
// clusters), in guest order: they must read as zeros on the target.
func (m *Map) Holes() []Range {
	ext := make([]Range, len(m.Extents))
	for i, e := range m.Extents {
		ext[i] = Range{e.Guest, e.GuestLen}
	}
	slices.SortFunc(ext, func(a, b Range) int { return cmp.Compare(a.Off, b.Off) })
	var holes []Range
	pos := int64(0)
	for _, r := range ext {
		if r.Off > pos {
			holes = append(holes, Range{pos, r.Off - pos})
		}
		pos = max(pos, r.Off+r.Len)
	}
	if size := int64(m.Header.Size); pos < size {
		holes = append(holes, Range{pos, size - pos})
	}
	return holes
}
