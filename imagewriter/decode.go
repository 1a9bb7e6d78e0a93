package imagewriter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/rivetmetal/rivet/imagewriter/qcow2"
	"github.com/rivetmetal/rivet/imagewriter/source"
	"github.com/rivetmetal/rivet/imagewriter/xzlimit"
	"github.com/therootcompany/xz"
)

// chunkReader is an io.Reader over the bytes of the chunks arriving on ch,
// releasing each chunk once consumed. A closed channel is the end of the
// stream; a cancelled ctx (another stage failed) is an error.
type chunkReader struct {
	ctx context.Context
	ch  <-chan *chunk
	cur *chunk
	pos int
	n   int64
	// waited is the time spent waiting for chunks.
	waited time.Duration
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if err := r.next(); err != nil {
		return 0, err
	}
	n := copy(p, r.cur.buf[r.pos:r.cur.n])
	r.pos += n
	r.n += int64(n)
	return n, nil
}

// ReadPiece lends out the rest of the current chunk, or the next one,
// with the reference the reader held (qcow2.PieceReader).
func (r *chunkReader) ReadPiece() ([]byte, qcow2.Buffer, error) {
	if err := r.next(); err != nil {
		return nil, nil, err
	}
	c, p := r.cur, r.cur.buf[r.pos:r.cur.n]
	r.cur = nil
	r.n += int64(len(p))
	return p, c, nil
}

// next makes r.cur a chunk with unread bytes, releasing the one read to
// its end and waiting for the next: io.EOF at the stream's end.
func (r *chunkReader) next() error {
	for r.cur == nil || r.pos >= r.cur.n {
		if r.cur != nil {
			r.cur.release()
			r.cur = nil
		}
		start := time.Now()
		select {
		case c, ok := <-r.ch:
			r.waited += time.Since(start)
			if !ok {
				return io.EOF
			}
			r.cur, r.pos = c, 0
		case <-r.ctx.Done():
			return r.ctx.Err()
		}
	}
	return nil
}

// bindContext has r's waits end with ctx, until the returned function
// restores the context they had.
func (r *chunkReader) bindContext(ctx context.Context) func() {
	prev := r.ctx
	r.ctx = ctx
	return func() { r.ctx = prev }
}

func (r *chunkReader) close() {
	if r.cur != nil {
		r.cur.release()
		r.cur = nil
	}
}

// minLend is the smallest run of lent input bytes the emitter hands to
// the sinks by reference; shorter runs are gathered into pool chunks, so
// the disks get large writes.
const minLend = 256 << 10

// emitter gathers output bytes into pool chunks, sending a chunk to every
// sink when it is full or the next bytes are not contiguous with it. Long
// runs of input bytes it was lent (qcow2 data clusters, aligned in the
// input chunks as in the file) go to the sinks as they are, uncopied.
type emitter struct {
	ctx  context.Context
	pool *bufferPool
	outs []chan *chunk
	// scanZeros finds each data chunk's zero runs for the sinks.
	scanZeros bool
	cur       *chunk
	// waited is the time spent waiting for a free chunk or for the
	// sinks to take one.
	waited time.Duration
}

func (e *emitter) write(p []byte, off int64, buf qcow2.Buffer) error {
	if c, ok := buf.(*chunk); ok && len(p) >= minLend && aligned(p, off) {
		if err := e.flush(); err != nil {
			return err
		}
		return e.send(c.view(p, off))
	}
	for len(p) > 0 {
		if e.cur != nil && (e.cur.off+int64(e.cur.n) != off || e.cur.n == len(e.cur.buf)) {
			if err := e.flush(); err != nil {
				return err
			}
		}
		if e.cur == nil {
			start := time.Now()
			c, err := e.pool.get(e.ctx)
			e.waited += time.Since(start)
			if err != nil {
				return err
			}
			c.off, c.n = off, 0
			e.cur = c
		}
		k := copy(e.cur.buf[e.cur.n:], p)
		e.cur.n += k
		p = p[k:]
		off += int64(k)
	}
	return nil
}

// aligned reports whether p can be written at off with direct I/O as it
// is.
func aligned(p []byte, off int64) bool {
	return len(p)%alignment == 0 && off%alignment == 0 && uintptr(unsafe.Pointer(&p[0]))%alignment == 0
}

// zero asks every sink to make [off, off+n) read as zeros.
func (e *emitter) zero(off, n int64) error {
	if err := e.flush(); err != nil {
		return err
	}
	return e.send(&chunk{off: off, zero: n})
}

func (e *emitter) flush() error {
	if e.cur == nil {
		return nil
	}
	c := e.cur
	e.cur = nil
	if c.n == 0 {
		c.refs.Store(1)
		c.release()
		return nil
	}
	return e.send(c)
}

func (e *emitter) send(c *chunk) error {
	if e.scanZeros && c.zero == 0 {
		c.zeroRuns = findZeroRuns(c.data(), c.zeroRuns[:0])
	}
	c.refs.Store(int32(len(e.outs)))
	start := time.Now()
	for _, ch := range e.outs {
		select {
		case ch <- c:
		case <-e.ctx.Done():
			return e.ctx.Err()
		}
	}
	e.waited += time.Since(start)
	return nil
}

// newDecompressor opens the decoder of a compression container, its
// memory bounded by maxMemory: a zstd window or an xz dictionary (or xz
// index) over it fails with ErrMemoryLimit before the decoder allocates it.
// gzip needs 32 KiB whatever the stream says.
func newDecompressor(f Format, r io.Reader, maxMemory int64) (io.Reader, func(), error) {
	switch f {
	case FormatGzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { z.Close() }, nil
	case FormatZstd:
		// One decoder, run by the reader's goroutine: the concurrent
		// decoder hands every block (at most 128 KiB) through three
		// goroutines, and those hand-offs cost more CPU than the second
		// core gains, which the hash, the socket and the disk need too
		// (docs/benchmarks.md: 0.57 instead of 0.89 CPU s per GiB, 0.52
		// instead of 0.71 s alone, 6 MiB less peak RSS in the write).
		//
		// The frames' XXH64 checksums are read but not computed: every
		// write verifies the image's own checksum (required, over the
		// compressed bytes as served), and decoding is a function of
		// those bytes, so XXH64 would check again what that checksum
		// already covers. It cost a tenth of the decoder's CPU, on the
		// write's one serial stage.
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.IgnoreChecksum(true),
			zstd.WithDecoderMaxWindow(uint64(max(maxMemory, zstd.MinWindowSize))), zstd.WithDecoderMaxMemory(1<<62))
		if err != nil {
			return nil, nil, err
		}
		return zstdErrors{z, maxMemory}, z.Close, nil
	case FormatXz:
		// The guard checks every block's dictionary (at most half the
		// cap) and the index before the decoder sees them; the decoder
		// (an XZ Embedded port) keeps one dictionary and reuses it for
		// every block, and verifies the block checks and the index.
		guard := xzlimit.NewReader(r, maxMemory)
		z, err := xz.NewReader(guard, uint32(min(maxMemory/2, math.MaxUint32)))
		if err != nil {
			return nil, nil, xzError(err, maxMemory)
		}
		return xzErrors{z, maxMemory}, func() {}, nil
	}
	return nil, nil, fmt.Errorf("no decoder for %s", f)
}

// zstdErrors reports the zstd decoder's refusal to allocate as
// ErrMemoryLimit.
type zstdErrors struct {
	z   *zstd.Decoder
	max int64
}

func (e zstdErrors) Read(p []byte) (int, error) {
	n, err := e.z.Read(p)
	return n, limitError(err, e.max)
}

// WriteTo hands the decoder's output blocks to w as they are decoded.
func (e zstdErrors) WriteTo(w io.Writer) (int64, error) {
	n, err := e.z.WriteTo(w)
	return n, limitError(err, e.max)
}

// xzErrors maps the xz decoder's errors to the package's classes.
type xzErrors struct {
	r   io.Reader
	max int64
}

func (x xzErrors) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	return n, xzError(err, x.max)
}

// xzError maps an error of the xz decoder: a dictionary over its limit
// (which the guard refuses first) is ErrMemoryLimit; a filter or check
// the decoder lacks is named. Input that ends inside the stream is the
// guard's io.ErrUnexpectedEOF.
func xzError(err error, maxMemory int64) error {
	switch {
	case errors.Is(err, xz.ErrMemlimit):
		return fmt.Errorf("%w: the xz dictionary is over half the %d MiB decoder memory limit: %w", ErrMemoryLimit, maxMemory>>20, err)
	case errors.Is(err, xz.ErrOptions):
		return fmt.Errorf("the xz stream uses a filter or filter option the decoder lacks (it has LZMA2, delta and the x86, PowerPC, IA-64, ARM, ARM-Thumb and SPARC BCJ filters, not ARM64 or RISC-V): %w", err)
	case errors.Is(err, xz.ErrUnsupportedCheck):
		return fmt.Errorf("the xz stream uses an integrity check the decoder lacks (it verifies none, CRC32, CRC64 and SHA-256): %w", err)
	}
	return limitError(err, maxMemory)
}

func limitError(err error, maxMemory int64) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, xzlimit.ErrLimit):
		return fmt.Errorf("%w: %w", ErrMemoryLimit, err)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("%w: the zstd window is over the %d MiB decoder memory limit: %w", ErrMemoryLimit, maxMemory>>20, err)
	}
	return err
}

// decompress is the decode stage of a compressed image: it decodes the
// served bytes from in and emits the raw disk. The stream must end exactly
// where the compressed data ends: a truncated stream or trailing bytes are
// errors.
//
// gzip and zstd decode on the calling goroutine (decompressStream): the
// first chunk is read from the decoder, to check what the stream holds; a
// decoder that can hand over its output blocks (io.WriterTo: both) then
// writes the rest to a zeroSkipper, which copies each block once, into the
// emitter's chunks, and does not copy runs of zero blocks at all when
// every sink would skip them anyway. xz images decode block by block on
// several workers (decompressXz), whose number and threads' CPU time
// decompress returns.
func (w *writer) decompress(ctx context.Context, f Format, in *chunkReader, em *emitter) (time.Duration, int, error) {
	if f == FormatXz {
		return w.decompressXz(ctx, in, em)
	}
	return 0, 0, w.decompressStream(ctx, f, in, em)
}

// decompressStream is the decode stage of a gzip or zstd image.
func (w *writer) decompressStream(ctx context.Context, f Format, in *chunkReader, em *emitter) error {
	dec, closeDec, err := newDecompressor(f, in, w.req.MaxDecoderMemory)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s stream of %s: %w", ErrFormat, f, w.srcName(), err)
	}
	defer closeDec()
	wt, blocks := dec.(io.WriterTo)
	var off int64
	for {
		n, eof, err := w.emitDecoded(ctx, f, em, dec, off)
		off += int64(n)
		w.decoded.Store(off)
		if err != nil {
			return w.decodeError(ctx, f, in, off, err)
		}
		if eof {
			break
		}
		if blocks {
			if off, err = w.handOver(ctx, f, wt, in, em, off); err != nil {
				return err
			}
			break
		}
	}
	// Nothing may follow the compressed data.
	var probe [1]byte
	if n, _ := in.Read(probe[:]); n > 0 {
		return fmt.Errorf("%w: %s has bytes after the end of its %s stream (at served byte %d)", ErrFormat, w.srcName(), f, in.n-1)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	w.decoded.Store(off)
	return em.flush()
}

// emitDecoded fills a chunk of em's pool with r's next bytes, for image
// offset off, and hands it to the sinks, unless it is empty. The image's
// first bytes (at offset 0) are checked before they go out
// (checkDecodedHead). It returns how many bytes it decoded, whether r
// ended, and r's error, the refusal of the image's head, or the sinks'
// (the write was cancelled).
func (w *writer) emitDecoded(ctx context.Context, f Format, em *emitter, r io.Reader, off int64) (int, bool, error) {
	start := time.Now()
	c, err := em.pool.get(ctx)
	em.waited += time.Since(start)
	if err != nil {
		return 0, false, err
	}
	n, eof, err := fill(r, c.buf)
	c.n, c.off = n, off
	if n == 0 {
		c.refs.Store(1)
		c.release()
		return 0, eof, err
	}
	if off == 0 {
		if herr := w.checkDecodedHead(f, c.data()); herr != nil {
			c.refs.Store(1)
			c.release()
			return 0, false, herr
		}
	}
	if serr := em.send(c); serr != nil {
		return n, false, serr
	}
	return n, eof, err
}

// headCheckBytes is how much of a compressed image's decoded start the
// precheck decodes from the first served bytes and checks.
const headCheckBytes = 8192

// checkDecodedHead refuses an image whose decoded first bytes are not
// what the request allows on a disk. A head shorter than the one the
// precheck decoded (an xz image whose first block is small) is judged on
// that longer head, when it is its start: a GPT header needs 520 bytes or
// more to be seen.
func (w *writer) checkDecodedHead(f Format, head []byte) error {
	if len(head) < len(w.head) && bytes.Equal(head, w.head[:len(head)]) {
		head = w.head
	}
	if DetectFormat(head) == FormatQcow2 {
		return fmt.Errorf("%w: a qcow2 image inside %s cannot be streamed; serve it uncompressed (qcow2 compresses its own clusters)", ErrFormat, f)
	}
	return checkFormat(f, w.req.DiskFormat, w.req.PermittedFormats, head)
}

// handOver has the decoder hand the rest of its output, from off on, to a
// zeroSkipper, and returns where the output ended. A failed emit (the
// write was cancelled) is returned as it is, the decoder's own failure
// classified (decodeError).
func (w *writer) handOver(ctx context.Context, f Format, wt io.WriterTo, in *chunkReader, em *emitter, off int64) (int64, error) {
	zs := &zeroSkipper{em: em, off: off, skip: w.skipsZeros(), decoded: &w.decoded}
	_, err := wt.WriteTo(zs)
	if err == nil {
		err = zs.flush()
	}
	switch {
	case zs.err != nil:
		return zs.off, zs.err
	case err != nil:
		return zs.off, w.decodeError(ctx, f, in, zs.off, err)
	}
	return zs.off, nil
}

// decodeError classifies an error of the decoder after off decoded bytes.
func (w *writer) decodeError(ctx context.Context, f Format, in *chunkReader, off int64, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Already classified: the source's failures, and a refusal of what
	// the stream decoded to (checkDecodedHead).
	if errors.Is(err, source.ErrTruncated) || errors.Is(err, source.ErrDownload) || errors.Is(err, ErrFormat) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the %s stream of %s ended before its end marker after %d served bytes (%d decoded)", ErrTruncated, f, w.srcName(), in.n, off)
	}
	if errors.Is(err, ErrMemoryLimit) {
		return fmt.Errorf("%w: %s stream of %s: %w", ErrFormat, f, w.srcName(), err)
	}
	return fmt.Errorf("%w: decoding the %s stream of %s at served byte %d: %w", ErrFormat, f, w.srcName(), in.n, err)
}

// zeroSkipper is the io.Writer a decoder hands its output blocks to. It
// copies them into the emitter's chunks at off, except, when skip is set
// (every sink skips zero runs), runs of all-zero blocks: it only counts
// those, and emits the page-aligned part of a run of at least minZeroRun
// as a zero chunk, which the sinks zero without a copy ever being made.
// Shorter runs, and the unaligned ends of long ones, are copied as zeros.
type zeroSkipper struct {
	em   *emitter
	off  int64 // output offset of the next byte
	skip bool
	// pending counts the zero bytes before off not yet emitted.
	pending int64
	decoded *atomic.Int64
	// err is the emitter's error (the write was cancelled), told apart
	// from the decoder's own.
	err error
}

// Write copies p, or counts it as zeros; it never keeps p.
func (z *zeroSkipper) Write(p []byte) (int, error) {
	if z.skip && isZero(p) {
		if err := z.em.ctx.Err(); err != nil {
			z.err = err
			return 0, err
		}
		z.off += int64(len(p))
		z.pending += int64(len(p))
		z.decoded.Store(z.off)
		// A long run goes out as it grows, so an endless one reaches a
		// too-small disk's end, or a cancellation, in bounded time.
		if z.pending >= maxZeroRequest {
			if err := z.emitZeros(z.off &^ (alignment - 1)); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	if err := z.flush(); err != nil {
		return 0, err
	}
	if err := z.em.write(p, z.off, nil); err != nil {
		z.err = err
		return 0, err
	}
	z.off += int64(len(p))
	z.decoded.Store(z.off)
	return len(p), nil
}

// flush emits the pending zero run.
func (z *zeroSkipper) flush() error {
	return z.emitZeros(z.off)
}

// emitZeros emits the pending zeros before end (at most off); those from
// end to off stay pending.
func (z *zeroSkipper) emitZeros(end int64) error {
	from := z.off - z.pending
	if end <= from {
		return nil
	}
	start, stop := (from+alignment-1)&^(alignment-1), end&^(alignment-1)
	var err error
	if stop-start >= minZeroRun {
		if err = z.copyZeros(from, start); err == nil {
			if err = z.em.zero(start, stop-start); err == nil {
				err = z.copyZeros(stop, end)
			}
		}
	} else {
		err = z.copyZeros(from, end)
	}
	if err != nil {
		z.err = err
		return err
	}
	z.pending = z.off - end
	return nil
}

// copyZeros copies zeros into the emitter's chunks for [from, to).
func (z *zeroSkipper) copyZeros(from, to int64) error {
	for from < to {
		k := min(to-from, int64(len(zeros)))
		if err := z.em.write(zeros[:k], from, nil); err != nil {
			return err
		}
		from += k
	}
	return nil
}

// convertMap is the decode stage of a qcow2 image: it zeroes the holes on
// the sinks, then streams the file once, in order, emitting each data
// cluster at its guest offset.
func (w *writer) convertMap(ctx context.Context, m *qcow2.Map, in *chunkReader, em *emitter) error {
	for _, h := range m.Holes() {
		if err := em.zero(h.Off, h.Len); err != nil {
			return err
		}
	}
	if _, err := m.ConvertRef(ctx, in, em.write); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, source.ErrTruncated) || errors.Is(err, source.ErrDownload) {
			return err
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: qcow2 image %s: %w", ErrTruncated, w.srcName(), err)
		}
		return fmt.Errorf("%w: %s: %w", ErrFormat, w.srcName(), err)
	}
	w.decoded.Store(int64(m.Header.Size))
	return em.flush()
}

// rangeSource is what the qcow2 stage needs of the source.
type rangeSource interface {
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
	Size() int64
}

type readerAtCtx struct {
	ctx context.Context
	s   rangeSource
}

func (r readerAtCtx) ReadAt(p []byte, off int64) (int, error) {
	return r.s.ReadAtContext(r.ctx, p, off)
}
