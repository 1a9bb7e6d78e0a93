package qcow2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// ErrMetadataMismatch: the header or a table read before streaming differs
// from the same bytes in the stream, so the map cannot be trusted.
var ErrMetadataMismatch = errors.New("qcow2 metadata differs between the range reads and the stream")

// EmitFunc receives guest data during Convert: p belongs at guest offset
// off. p is valid only during the call.
type EmitFunc func(p []byte, off int64) error

// readPiece is how much Convert reads from the stream at once.
const readPiece = 1 << 20

// Convert reads the whole qcow2 file from r, in order and once, and calls
// emit with every data cluster's guest bytes (decompressed where needed).
// It checks that the metadata ReadMap used is what the stream carries,
// and that the stream is as long as the file. It returns the number of
// bytes read from r.
func (m *Map) Convert(ctx context.Context, r io.Reader, emit EmitFunc) (int64, error) {
	cs := m.Header.ClusterSize()
	keep := int(max(2*cs+64<<10, 256<<10))
	w := &window{r: r, buf: make([]byte, 0, keep+readPiece), keep: keep}
	var dec decompressor
	defer dec.close()
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
		if err := copyExtents(w, &dec, m.Header.CompressionType, int(cs), run, emit); err != nil {
			return w.end(), err
		}
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

func sameHost(a, b Extent) bool {
	return a.Host == b.Host && a.Len == b.Len && a.Compressed == b.Compressed
}

// copyExtents reads the host bytes of run (extents that share them) from
// the window once and emits them at each extent's guest offset.
func copyExtents(w *window, dec *decompressor, typ uint8, cs int, run []Extent, emit EmitFunc) error {
	e := run[0]
	if !e.Compressed {
		pos := int64(0)
		return w.each(e.Host, e.Host+e.Len, func(p []byte) error {
			for _, r := range run {
				if err := emit(p, r.Guest+pos); err != nil {
					return err
				}
			}
			pos += int64(len(p))
			return nil
		})
	}
	src := dec.scratch(int(e.Len))
	if err := w.each(e.Host, e.Host+e.Len, func(p []byte) error { src = append(src, p...); return nil }); err != nil {
		return err
	}
	glen := int64(0)
	for _, r := range run {
		glen = max(glen, r.GuestLen)
	}
	out, err := dec.decompress(typ, src, int(glen), cs)
	if err != nil {
		return fmt.Errorf("%w: compressed cluster at host %#x (guest %#x): %w", ErrInvalid, e.Host, e.Guest, err)
	}
	for _, r := range run {
		if err := emit(out[:r.GuestLen], r.Guest); err != nil {
			return err
		}
	}
	return nil
}

// window reads a stream forward, keeping the last keep bytes so ranges
// that overlap (compressed clusters share sectors) can be served again.
type window struct {
	r     io.Reader
	buf   []byte // stream bytes [start, start+len(buf))
	start int64
	keep  int
	eof   bool
}

func (w *window) end() int64 { return w.start + int64(len(w.buf)) }

// each calls fn with consecutive pieces of the stream covering [s, e).
func (w *window) each(s, e int64, fn func([]byte) error) error {
	if s < w.start {
		return fmt.Errorf("%w: range at %#x lies before the stream window (%#x); the image is not streamable", ErrUnsupported, s, w.start)
	}
	for s < e {
		if s < w.end() {
			hi := min(e, w.end())
			if err := fn(w.buf[s-w.start : hi-w.start]); err != nil {
				return err
			}
			s = hi
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

// fill reads the next piece, dropping all but keep bytes of history.
func (w *window) fill() error {
	if w.eof {
		return io.EOF
	}
	if len(w.buf)+readPiece > cap(w.buf) {
		drop := len(w.buf) - w.keep
		if drop > 0 {
			n := copy(w.buf, w.buf[drop:])
			w.buf = w.buf[:n]
			w.start += int64(drop)
		}
	}
	room := w.buf[len(w.buf):cap(w.buf)]
	for {
		n, err := w.r.Read(room)
		w.buf = w.buf[:len(w.buf)+n]
		if n > 0 {
			if err == io.EOF {
				w.eof = true
			}
			return nil
		}
		if err == io.EOF {
			w.eof = true
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
}

func (w *window) drain() error {
	for {
		w.start += int64(len(w.buf))
		w.buf = w.buf[:0]
		if err := w.fill(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// decompressor decodes compressed clusters, reusing its decoders and
// buffers.
type decompressor struct {
	src  []byte
	out  []byte
	fl   io.ReadCloser
	zstd *zstd.Decoder
}

func (d *decompressor) scratch(n int) []byte {
	if cap(d.src) < n {
		d.src = make([]byte, 0, n)
	}
	return d.src[:0]
}

func (d *decompressor) decompress(typ uint8, src []byte, n, clusterSize int) ([]byte, error) {
	if cap(d.out) < clusterSize {
		d.out = make([]byte, clusterSize)
	}
	out := d.out[:n]
	var rd io.Reader
	switch typ {
	case CompressionZlib:
		if d.fl == nil {
			d.fl = flate.NewReader(bytes.NewReader(src))
		} else if err := d.fl.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
			return nil, err
		}
		rd = d.fl
	case CompressionZstd:
		if d.zstd == nil {
			z, err := zstd.NewReader(bytes.NewReader(src), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(uint64(max(clusterSize, 1<<20))))
			if err != nil {
				return nil, err
			}
			d.zstd = z
		} else if err := d.zstd.Reset(bytes.NewReader(src)); err != nil {
			return nil, err
		}
		rd = d.zstd
	default:
		return nil, fmt.Errorf("compression type %d", typ)
	}
	if _, err := io.ReadFull(rd, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (d *decompressor) close() {
	if d.zstd != nil {
		d.zstd.Close()
	}
}
