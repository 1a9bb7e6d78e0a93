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
	"sync/atomic"

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
	// CompressedBytes is how many of them are in compressed clusters.
	CompressedBytes int64
	meta            []metaRegion
}

// ParseL1 decodes an L1 table into L2 table offsets (0: no L2 table).
func ParseL1(b []byte, h *Header) ([]int64, error) {
	if int64(len(b)) < int64(h.L1Size)*8 {
		return nil, fmt.Errorf("%w: L1 table needs %d bytes, have %d", ErrInvalid, int64(h.L1Size)*8, len(b))
	}
	out := make([]int64, h.L1Size)
	return out, parseL1Entries(b[:len(out)*8], h, 0, out)
}

// parseL1Entries decodes the L1 entries in b, the first being entry
// first, into out.
func parseL1Entries(b []byte, h *Header, first int64, out []int64) error {
	cs := uint64(h.ClusterSize())
	for k := 0; k+8 <= len(b); k += 8 {
		i := first + int64(k/8)
		e := binary.BigEndian.Uint64(b[k:])
		if e&l1Reserved != 0 {
			return fmt.Errorf("%w: L1 entry %d has reserved bits set (%#x)", ErrInvalid, i, e)
		}
		off := e & offsetMask
		if off%cs != 0 {
			return fmt.Errorf("%w: L1 entry %d points to unaligned offset %#x", ErrInvalid, i, off)
		}
		out[i] = int64(off)
	}
	return nil
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
// image file, e.g. over HTTP Range requests) and returns the map. fileSize
// is the file's size, -1 if unknown. What it costs is bounded by lim, and
// checked before anything is read that the header asks for: only the L1
// entries the virtual size needs are read, each distinct L2 table is read
// once however many L1 entries point at it, tables lying close together
// are read together, and the reads are counted (ErrTooManyReads) and so is
// the memory the map takes (ErrMemoryLimit).
func ReadMap(ctx context.Context, r io.ReaderAt, fileSize int64, lim Limits) (*Map, error) {
	lim = lim.withDefaults()
	var reads atomic.Int64
	readAt := func(b []byte, off int64) error {
		reads.Add(1)
		return readFull(r, b, off)
	}
	first := make([]byte, 64<<10)
	reads.Add(1)
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
		reads.Add(1)
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
	first = nil

	need := h.L1Needed()
	if need == 0 {
		return m, nil
	}
	mem := &budget{max: lim.MaxMemory}
	if err := mem.charge(need*l1EntryCost, fmt.Sprintf("an L1 table of %d entries", need)); err != nil {
		return nil, err
	}
	l1Off, l1Bytes := int64(h.L1TableOffset), need*8
	if err := m.inFile("L1 table", l1Off, l1Bytes); err != nil {
		return nil, err
	}
	l1 := make([]int64, need)
	sum := sha256.New()
	piece := make([]byte, min(l1Bytes, maxReadBytes))
	for done := int64(0); done < l1Bytes; {
		b := piece[:min(int64(len(piece)), l1Bytes-done)]
		if err := readAt(b, l1Off+done); err != nil {
			return nil, fmt.Errorf("reading qcow2 L1 table: %w", err)
		}
		sum.Write(b)
		if err := parseL1Entries(b, h, done/8, l1); err != nil {
			return nil, err
		}
		done += int64(len(b))
	}
	piece = nil
	var l1Sum [sha256.Size]byte
	sum.Sum(l1Sum[:0])
	m.meta = append(m.meta, metaRegion{Range: Range{l1Off, l1Bytes}, sum: l1Sum})

	// The L1 entries that point somewhere, ordered by the table they
	// point at: runs of equal offsets share one table.
	order := make([]int32, 0, need)
	for i, off := range l1 {
		if off != 0 {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Or(cmp.Compare(l1[a], l1[b]), cmp.Compare(a, b)) })
	groups, err := m.groupTables(l1, order, cs)
	if err != nil {
		return nil, err
	}
	if total := reads.Load() + int64(len(groups)); total > int64(lim.MaxReads) {
		return nil, fmt.Errorf("%w: %d reads for %d L2 tables, over the limit of %d", ErrTooManyReads, total, countTables(l1, order), lim.MaxReads)
	}

	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(lim.Parallel)
	for _, grp := range groups {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			buf := make([]byte, grp.end-grp.start)
			if err := readAt(buf, grp.start); err != nil {
				return fmt.Errorf("reading qcow2 L2 tables at %#x (+%d): %w", grp.start, len(buf), err)
			}
			var local []Extent
			for _, t := range grp.tables {
				b := buf[t.off-grp.start:][:cs]
				meta := metaRegion{Range: Range{t.off, cs}, sum: sha256.Sum256(b)}
				for _, i := range order[t.first:t.last] {
					local = local[:0]
					err := ParseL2(b, h, int64(i), func(e Extent) error {
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
					if err := mem.charge(int64(len(local))*extentCost, fmt.Sprintf("%d more extents", len(local))); err != nil {
						return err
					}
					mu.Lock()
					m.Extents = append(m.Extents, local...)
					mu.Unlock()
				}
				mu.Lock()
				m.meta = append(m.meta, meta)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	l1, order = nil, nil
	// Coalesce in guest order, check, then order by host for streaming.
	slices.SortFunc(m.Extents, func(a, b Extent) int { return cmp.Compare(a.Guest, b.Guest) })
	out := m.Extents[:0]
	for _, e := range m.Extents {
		// Each extent is checked before it can merge into the one before,
		// so a merged run lies in the file too.
		if err := m.checkExtent(&e); err != nil {
			return nil, err
		}
		if n := len(out); n > 0 && !e.Compressed {
			p := &out[n-1]
			if !p.Compressed && p.Host+p.Len == e.Host && p.Guest+p.GuestLen == e.Guest && p.Len == p.GuestLen {
				p.Len += e.Len
				p.GuestLen += e.GuestLen
				m.DataBytes += e.GuestLen
				continue
			}
		}
		out = append(out, e)
		m.DataBytes += e.GuestLen
		if e.Compressed {
			m.CompressedBytes += e.GuestLen
		}
	}
	m.Extents = slices.Clip(out)
	slices.SortStableFunc(m.Extents, func(a, b Extent) int { return cmp.Compare(a.Host, b.Host) })
	slices.SortFunc(m.meta, func(a, b metaRegion) int { return cmp.Compare(a.Off, b.Off) })
	return m, nil
}

// tableRef is one distinct L2 table: its offset and the run of the L1
// order that points at it.
type tableRef struct {
	off         int64
	first, last int
}

// readGroup is one read covering one or more L2 tables.
type readGroup struct {
	start, end int64
	tables     []tableRef
}

// groupTables lists the distinct L2 tables (each checked to lie in the
// file) and groups neighbours into reads.
func (m *Map) groupTables(l1 []int64, order []int32, cs int64) ([]readGroup, error) {
	var groups []readGroup
	for i := 0; i < len(order); {
		j := i + 1
		off := l1[order[i]]
		for j < len(order) && l1[order[j]] == off {
			j++
		}
		if err := m.inFile("L2 table", off, cs); err != nil {
			return nil, err
		}
		t := tableRef{off: off, first: i, last: j}
		if n := len(groups); n > 0 && off-groups[n-1].end <= mergeGap && off+cs-groups[n-1].start <= max(maxReadBytes, cs) {
			groups[n-1].end = off + cs
			groups[n-1].tables = append(groups[n-1].tables, t)
		} else {
			groups = append(groups, readGroup{start: off, end: off + cs, tables: []tableRef{t}})
		}
		i = j
	}
	return groups, nil
}

func countTables(l1 []int64, order []int32) int {
	n := 0
	for i := range order {
		if i == 0 || l1[order[i]] != l1[order[i-1]] {
			n++
		}
	}
	return n
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
