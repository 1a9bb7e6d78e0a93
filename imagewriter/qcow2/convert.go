package qcow2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
)

// ErrMetadataMismatch: the header or a table read before streaming differs
// from the same bytes in the stream, so the map cannot be trusted.
var ErrMetadataMismatch = errors.New("qcow2 metadata differs between the range reads and the stream")

// EmitFunc receives guest data during Convert: p belongs at guest offset
// off. p is valid only during the call.
type EmitFunc func(p []byte, off int64) error

// EmitRefFunc receives guest data during ConvertRef and StreamRef: p
// belongs at guest offset off. When buf is not nil, p lies in bytes the
// input lent out (see PieceReader) and buf.Retain keeps it valid past the
// call, until the matching Release; otherwise p is valid only during the
// call.
type EmitRefFunc func(p []byte, off int64, buf Buffer) error

// Buffer holds bytes of the stream that a PieceReader lent out.
type Buffer interface {
	// Retain adds a reference: the bytes stay valid until it is released.
	Retain()
	// Release drops a reference.
	Release()
}

// PieceReader is a stream that lends its bytes out instead of copying
// them. When the reader given to ConvertRef or StreamRef is one, the file
// is read with ReadPiece alone, and uncompressed clusters reach the emit
// function in the input's own bytes.
type PieceReader interface {
	// ReadPiece returns the next bytes of the stream, with one reference
	// to the buffer holding them that the caller releases; at the end of
	// the stream it returns io.EOF and no bytes.
	ReadPiece() ([]byte, Buffer, error)
}

func dropRef(emit EmitFunc) EmitRefFunc {
	return func(p []byte, off int64, _ Buffer) error { return emit(p, off) }
}

// readPiece is how much Convert reads from the stream at once.
const readPiece = 1 << 20

// Convert reads the whole qcow2 file from r, in order and once, and calls
// emit with every data cluster's guest bytes (decompressed where needed).
// It checks that the metadata ReadMap used is what the stream carries,
// and that the stream is as long as the file. It returns the number of
// bytes read from r.
func (m *Map) Convert(ctx context.Context, r io.Reader, emit EmitFunc) (int64, error) {
	return m.ConvertRef(ctx, r, dropRef(emit))
}

// ConvertRef is Convert for an emit function that may keep the bytes it
// gets by reference; r may be a PieceReader.
func (m *Map) ConvertRef(ctx context.Context, r io.Reader, emit EmitRefFunc) (int64, error) {
	cs := m.Header.ClusterSize()
	w := newWindow(r, int(max(2*cs+64<<10, 256<<10)))
	defer w.close()
	inf := newInflater(m.Header.CompressionType, int(cs), emit)
	defer inf.close()
	ei, mi := 0, 0
	var h hash.Hash
	for ei < len(m.Extents) || mi < len(m.meta) {
		if err := ctx.Err(); err != nil {
			return w.end(), err
		}
		// Metadata first at equal offsets: cheap and it guards the rest.
		if mi < len(m.meta) && (ei >= len(m.Extents) || m.meta[mi].Off <= m.Extents[ei].Host) {
			md := m.meta[mi]
			mi++
			if h == nil {
				h = sha256.New()
			}
			h.Reset()
			if err := w.each(md.Off, md.Off+md.Len, func(p []byte) error { h.Write(p); return nil }); err != nil {
				return w.end(), err
			}
			if !bytes.Equal(h.Sum(nil), md.sum[:]) {
				return w.end(), fmt.Errorf("%w: region at %#x (+%d)", ErrMetadataMismatch, md.Off, md.Len)
			}
			continue
		}
		// Extents of the same host bytes (L2 tables shared by several
		// L1 entries) are served from one pass over them.
		ej := ei + 1
		for ej < len(m.Extents) && sameHost(m.Extents[ej], m.Extents[ei]) {
			ej++
		}
		run := m.Extents[ei:ej]
		ei = ej
		if err := copyExtents(w, inf, run, emit); err != nil {
			return w.end(), err
		}
	}
	if err := inf.flush(); err != nil {
		return w.end(), err
	}
	// The rest of the file (refcounts, snapshots, padding) is read so the
	// whole file passes through the caller's hash, and its length checked.
	if err := w.drain(); err != nil {
		return w.end(), err
	}
	if m.FileSize >= 0 && w.end() != m.FileSize {
		return w.end(), fmt.Errorf("%w: stream is %d bytes, the file %d", io.ErrUnexpectedEOF, w.end(), m.FileSize)
	}
	return w.end(), nil
}

// sameHost reports whether two extents start at the same host bytes, to
// be read once. Their lengths may differ: an L2 table mapped by several
// L1 entries maps the same runs at each, and the disk's end cuts the
// last one short.
func sameHost(a, b Extent) bool {
	return a.Host == b.Host && a.Compressed == b.Compressed
}

// runLen is how many host bytes the extents of run (sharing their start)
// need: the longest.
func runLen(run []Extent) int64 {
	n := int64(0)
	for _, r := range run {
		n = max(n, r.Len)
	}
	return n
}

// copyExtents reads the host bytes of run (extents that share their
// start, which must not change afterwards) from the window once and emits
// each extent's share at its guest offset; a compressed cluster goes to
// inf, which emits it once decoded, and so does a short uncompressed run
// read while inf holds clusters back.
func copyExtents(w *window, inf *inflater, run []Extent, emit EmitRefFunc) error {
	e, n := run[0], runLen(run)
	if e.Compressed {
		return inf.add(w, run)
	}
	if inf.carries(n) {
		return inf.addStored(w, run)
	}
	pos := int64(0)
	return w.eachRef(e.Host, e.Host+n, func(p []byte, buf Buffer) error {
		for _, r := range run {
			if pos >= r.Len {
				continue
			}
			if err := emit(p[:min(int64(len(p)), r.Len-pos)], r.Guest+pos, buf); err != nil {
				return err
			}
		}
		pos += int64(len(p))
		return nil
	})
}

// window reads a stream forward, keeping at least the last keep bytes so
// ranges that overlap (compressed clusters share sectors) can be served
// again, and, from the start of the last range of at most keep bytes it
// served, everything after it: the next range starts there or later
// (ranges come in stream order), even when the last one's stored length
// reached past where the next one starts. It holds the stream as a list
// of pieces: the input's own bytes when the input is a PieceReader
// (nothing is copied), else buffers of its own that it reads into and
// reuses.
type window struct {
	r      io.Reader
	pr     PieceReader
	pieces []piece
	start  int64 // stream offset of the first byte held
	stop   int64 // stream offset after the last byte held
	keep   int
	// hold is where the last short range started: pieces ending after
	// it stay (math.MaxInt64: none).
	hold int64
	eof  bool
	err  error    // a read error kept for the next fill
	free [][]byte // own buffers to reuse
}

// piece is a run of the stream held by the window; buf is nil for the
// window's own buffers.
type piece struct {
	p   []byte
	off int64
	buf Buffer
}

func newWindow(r io.Reader, keep int) *window {
	w := &window{r: r, keep: keep, hold: math.MaxInt64}
	w.pr, _ = r.(PieceReader)
	return w
}

func (w *window) end() int64 { return w.stop }

// each calls fn with consecutive pieces of the stream covering [s, e).
func (w *window) each(s, e int64, fn func([]byte) error) error {
	return w.eachRef(s, e, func(p []byte, _ Buffer) error { return fn(p) })
}

// eachRef is each, also passing the buffer each piece lies in (nil for
// the window's own).
func (w *window) eachRef(s, e int64, fn func([]byte, Buffer) error) error {
	if s < w.start {
		return fmt.Errorf("%w: range at %#x lies before the stream window (%#x); the image is not streamable", ErrUnsupported, s, w.start)
	}
	w.hold = math.MaxInt64
	if e-s <= int64(w.keep) {
		w.hold = s
	}
	for s < e {
		if s < w.stop {
			for _, pc := range w.pieces {
				pe := pc.off + int64(len(pc.p))
				if s >= pe {
					continue
				}
				hi := min(e, pe)
				if err := fn(pc.p[s-pc.off:hi-pc.off], pc.buf); err != nil {
					return err
				}
				if s = hi; s >= e {
					break
				}
			}
			continue
		}
		if err := w.fill(); err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: stream ended at %d, data runs to %d", io.ErrUnexpectedEOF, w.end(), e)
			}
			return err
		}
		// Skipped bytes are not kept beyond the window.
	}
	return nil
}

// fill reads the next piece, dropping the pieces that lie wholly more
// than keep bytes behind the end.
func (w *window) fill() error {
	if w.eof {
		return io.EOF
	}
	if w.err != nil {
		return w.err
	}
	var p []byte
	var buf Buffer
	var err error
	if w.pr != nil {
		p, buf, err = w.pr.ReadPiece()
	} else {
		var own []byte
		if n := len(w.free); n > 0 {
			own, w.free = w.free[n-1], w.free[:n-1]
		} else {
			own = make([]byte, readPiece)
		}
		var n int
		n, err = io.ReadFull(w.r, own)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if n == 0 {
			w.free = append(w.free, own)
		}
		p = own[:n]
	}
	if err == io.EOF {
		w.eof = true
	} else if err != nil {
		w.err = err
	}
	if len(p) == 0 {
		if buf != nil {
			buf.Release()
		}
		if err == nil {
			return nil
		}
		return err
	}
	w.pieces = append(w.pieces, piece{p: p, off: w.stop, buf: buf})
	w.stop += int64(len(p))
	w.trim(w.keep)
	return nil
}

// trim drops the pieces that end more than keep bytes before the end and
// not after the hold.
func (w *window) trim(keep int) {
	k := 0
	for k < len(w.pieces) {
		end := w.pieces[k].off + int64(len(w.pieces[k].p))
		if w.stop-end < int64(keep) || end > w.hold {
			break
		}
		w.drop(w.pieces[k])
		k++
	}
	w.pieces = append(w.pieces[:0], w.pieces[k:]...)
	w.start = w.stop
	if len(w.pieces) > 0 {
		w.start = w.pieces[0].off
	}
}

func (w *window) drop(pc piece) {
	if pc.buf != nil {
		pc.buf.Release()
	} else {
		w.free = append(w.free, pc.p[:cap(pc.p)])
	}
}

// drain reads the rest of the stream, keeping none of it.
func (w *window) drain() error {
	w.hold = math.MaxInt64
	for {
		w.trim(0)
		if err := w.fill(); err != nil {
			w.trim(0)
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// close releases every piece the window still holds.
func (w *window) close() {
	w.hold = math.MaxInt64
	w.trim(0)
	w.free = nil
}
