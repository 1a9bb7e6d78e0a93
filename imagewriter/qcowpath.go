package imagewriter

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rivetmetal/rivet/imagewriter/qcow2"
	"github.com/rivetmetal/rivet/imagewriter/source"
	"golang.org/x/sync/errgroup"
)

// A qcow2 image is converted along one of three paths, chosen before any
// disk is touched:
//
//   - tables: the header, L1 and L2 tables are read with Range requests
//     (bounded in number and memory), then the file is streamed once and
//     each cluster written at its guest offset;
//   - spool: the server does not serve ranges (or the tables are too
//     scattered to read that way) and the target has room beyond the
//     virtual size for the whole file: the file is written there as it
//     downloads, its checksum verified, and then converted from the disk;
//   - stream: no ranges and no room to spool: the file is converted in one
//     pass as it downloads, which works when every table comes before what
//     it maps (what qemu-img convert writes), and fails with a clear error
//     as soon as the layout shows it does not.
type qcowMode int

const (
	qcowTables qcowMode = iota
	qcowSpool
	qcowStream
)

func (m qcowMode) String() string {
	return [...]string{"tables", "spool", "stream"}[m]
}

// spoolAlign is where a spooled file starts past the virtual size.
const spoolAlign = 1 << 20

// qcowPlan is the path chosen for a qcow2 image.
type qcowPlan struct {
	mode        qcowMode
	vsize       int64
	clusterSize int64
	m           *qcow2.Map // tables
	// spool: the sink holding the file, and where (image-relative).
	spoolSink int
	spoolOff  int64
}

func (w *writer) qcowLimits() qcow2.Limits {
	return qcow2.Limits{MaxMemory: w.req.MaxDecoderMemory, MaxReads: w.req.MaxRangeReads, Parallel: qcow2.DefaultParallel}
}

// planQcow2 checks the header in probe against the targets and picks the
// conversion path.
func (w *writer) planQcow2(ctx context.Context, st *source.Stream, probe []byte) (*qcowPlan, error) {
	h, err := qcow2.ParseHeader(probe)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFormat, w.srcName(), err)
	}
	// The virtual size against the targets first: no table is read for
	// an image that cannot fit.
	vsize := int64(h.Size)
	w.setImageSize(vsize)
	for _, s := range w.sinks {
		if vsize > s.limit {
			return nil, fmt.Errorf("%w: qcow2 image %s has a virtual size of %d bytes, %s has %d; nothing was written",
				ErrTooLarge, w.srcName(), vsize, s.t.Path(), s.limit)
		}
	}
	p := &qcowPlan{vsize: vsize, clusterSize: h.ClusterSize()}
	reason := "the server does not serve byte ranges"
	if st.RangeOK() {
		m, err := qcow2.ReadMap(ctx, readerAtCtx{ctx, st}, st.Size(), w.qcowLimits())
		switch {
		case err == nil:
			p.mode, p.m = qcowTables, m
			attrs := []any{"path", p.mode, "virtual_size", vsize, "cluster_size", h.ClusterSize(), "extents", len(m.Extents),
				"compression_type", h.CompressionType, "version", h.Version}
			w.log.Info("qcow2 image", append(attrs, dataAttrs(m.DataBytes, m.CompressedBytes)...)...)
			return p, nil
		case errors.Is(err, source.ErrNoRanges), errors.Is(err, qcow2.ErrTooManyReads):
			reason = err.Error()
		case ctx.Err() != nil || errors.Is(err, source.ErrDownload):
			return nil, fmt.Errorf("reading the qcow2 tables of %s: %w", w.srcName(), err)
		default:
			return nil, w.qcowError(err)
		}
	}
	if size := st.Size(); size >= 0 {
		off := (vsize + spoolAlign - 1) / spoolAlign * spoolAlign
		for i, s := range w.sinks {
			if off+size <= s.limit {
				p.mode, p.spoolSink, p.spoolOff = qcowSpool, i, off
				w.log.Info("qcow2 image: spooling the file onto the target beyond its virtual size, then converting it from there",
					"path", p.mode, "reason", reason, "device", s.t.Path(), "spool_offset", s.base+off, "file_size", size, "virtual_size", vsize)
				return p, nil
			}
		}
	}
	p.mode = qcowStream
	w.log.Info("qcow2 image: converting it in one pass as it downloads (its tables must come before their data)",
		"path", p.mode, "reason", reason, "file_size", st.Size(), "virtual_size", vsize,
		"spool_room", w.sinks[0].limit-vsize)
	return p, nil
}

// decodeWorkers is how many workers decode the compressed clusters of a
// conversion that met compressed bytes of them: none, or
// qcow2.InflateWorkers.
func decodeWorkers(compressed int64) int {
	if compressed > 0 {
		return qcow2.InflateWorkers()
	}
	return 0
}

// dataAttrs are the log attributes of a conversion's data: its bytes, the
// compressed ones among them, and the workers decoding those.
func dataAttrs(data, compressed int64) []any {
	attrs := []any{"data_bytes", data, "compressed_bytes", compressed}
	if n := decodeWorkers(compressed); n > 0 {
		attrs = append(attrs, "decode_workers", n)
	}
	return attrs
}

// inflates reports whether the image's data lies mostly in compressed
// clusters, as far as the plan knows it (the tables path reads the map
// first): those are copied out of the input as they decode, so the stage
// needs small input buffers and more output ones.
func (p *qcowPlan) inflates() bool {
	return p.mode == qcowTables && 2*p.m.CompressedBytes > p.m.DataBytes
}

// inputPool is the qcow2 stage's input pool, given the pipeline's: small
// chunks for an image that inflates, as for a compressed image.
func (p *qcowPlan) inputPool(count, size int) (int, int) {
	if p.inflates() {
		count, size = decodedInput, inputChunk
	}
	return p.inputBuffers(count, size), size
}

// outputBuffers is the qcow2 stage's output pool: only compressed
// clusters and short runs are copied into it, so a small one, unless the
// image inflates.
func (p *qcowPlan) outputBuffers() int {
	if p.inflates() {
		return qcowInflateBuffers
	}
	return qcowCopyBuffers
}

// inputBuffers is how many served chunks of size bytes the qcow2 stage's
// input needs: the pipeline's count, and at least what the converter's
// window may hold (two clusters of history and the piece it reads, and
// while it reads a range no longer than that history, every piece from
// the range's start: ceil(keep/size)+2 chunks) with one more for the
// fetch to go on. Data clusters lent on to the sinks are released as the
// disks take them.
func (p *qcowPlan) inputBuffers(count, size int) int {
	keep := max(2*p.clusterSize+64<<10, 256<<10)
	return max(count, int((keep+int64(size)-1)/int64(size))+3)
}

// qcowError classifies a qcow2 package error.
func (w *writer) qcowError(err error) error {
	switch {
	case errors.Is(err, source.ErrTruncated), errors.Is(err, source.ErrDownload), errors.Is(err, ErrTarget):
		return err
	case errors.Is(err, qcow2.ErrMemoryLimit):
		return fmt.Errorf("%w: %w: %s: %w", ErrFormat, ErrMemoryLimit, w.srcName(), err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: qcow2 image %s: %w", ErrTruncated, w.srcName(), err)
	}
	return fmt.Errorf("%w: %s: %w", ErrFormat, w.srcName(), err)
}

// convertStream is the decode stage of the stream path.
func (w *writer) convertStream(ctx context.Context, in *chunkReader, em *emitter, fileSize int64) (qcow2.Streamed, error) {
	st, err := qcow2.StreamRef(ctx, in, fileSize, w.qcowLimits(), em.write, em.zero)
	if err != nil {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		if errors.Is(err, qcow2.ErrNotStreamable) {
			return st, fmt.Errorf("%w: %s: %w; the server does not serve byte ranges and the target has no room beyond the virtual size to spool the file: serve the image from a server that supports Range requests, write it with qemu-img convert (which puts tables first), or use a raw image",
				ErrFormat, w.srcName(), err)
		}
		return st, w.qcowError(err)
	}
	w.log.Info("qcow2 image converted as it downloaded", dataAttrs(st.DataBytes, st.CompressedBytes)...)
	w.decoded.Store(w.qcow.vsize)
	return st, em.flush()
}

// spoolFile is the decode stage of the spool path: the served bytes go to
// the spool area of one target, unchanged.
func (w *writer) spoolFile(ctx context.Context, in <-chan *chunk) error {
	s := w.sinks[w.qcow.spoolSink]
	base := s.base + w.qcow.spoolOff
	for {
		var c *chunk
		var ok bool
		select {
		case c, ok = <-in:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := s.t.WriteAt(c.data(), base+c.off)
		c.release()
		if err != nil {
			return fmt.Errorf("spooling the qcow2 file: %w", err)
		}
	}
}

// convertSpool converts the spooled file (whose checksum was verified)
// from the target onto every sink, then wipes the spool's header.
func (w *writer) convertSpool(ctx context.Context, size int64) error {
	s := w.sinks[w.qcow.spoolSink]
	base := s.base + w.qcow.spoolOff
	spool := spoolReader{t: s.t, base: base, size: size}
	lim := w.qcowLimits()
	lim.MaxReads = 1 << 30 // local reads: only memory counts
	m, err := qcow2.ReadMap(ctx, spool, size, lim)
	if err != nil {
		return w.qcowError(err)
	}
	if int64(m.Header.Size) != w.qcow.vsize {
		return fmt.Errorf("%w: %s: the spooled header has a virtual size of %d, the served one %d", ErrFormat, w.srcName(), m.Header.Size, w.qcow.vsize)
	}
	w.log.Info("converting the spooled qcow2 file", "device", s.t.Path(), "extents", len(m.Extents), "data_bytes", m.DataBytes)
	err = w.runSinks(ctx, func(ctx context.Context, em *emitter) error {
		for _, h := range m.Holes() {
			if err := em.zero(h.Off, h.Len); err != nil {
				return err
			}
		}
		if _, err := m.ConvertRef(ctx, io.NewSectionReader(spool, 0, size), em.write); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return w.qcowError(err)
		}
		w.decoded.Store(w.qcow.vsize)
		return em.flush()
	})
	if err != nil {
		return err
	}
	// Nothing past the image should look like an image.
	return s.t.ZeroRange(base, min(spoolAlign, (size+s.t.SectorSize()-1)/s.t.SectorSize()*s.t.SectorSize()))
}

// runSinks runs produce, which emits disk bytes, concurrently with one
// writer per sink.
func (w *writer) runSinks(ctx context.Context, produce func(context.Context, *emitter) error) error {
	g, gctx := errgroup.WithContext(ctx)
	outs := make([]chan *chunk, len(w.sinks))
	for i := range outs {
		outs[i] = make(chan *chunk, max(w.req.Buffers, decodedBuffers))
	}
	em := &emitter{ctx: gctx, pool: newBufferPool(decodedBuffers, w.req.BufferSize), outs: outs, scanZeros: w.scanZeros()}
	g.Go(func() error {
		err := produce(gctx, em)
		if err == nil {
			for _, c := range outs {
				close(c)
			}
		}
		return err
	})
	for i, s := range w.sinks {
		g.Go(func() error { return s.drain(gctx, outs[i]) })
	}
	err := g.Wait()
	w.writeSpan()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("image write cancelled: %w", ctx.Err())
	}
	return err
}

// spoolReader reads the spooled file back from the target.
type spoolReader struct {
	t          target
	base, size int64
}

func (r spoolReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	short := false
	if rest := r.size - off; int64(len(p)) > rest {
		p, short = p[:rest], true
	}
	n, err := r.t.ReadAt(p, r.base+off)
	if err != nil {
		// The disk failed, not the image: classified as the target's.
		return n, fmt.Errorf("%w: reading the spooled qcow2 file back: %w", ErrTarget, err)
	}
	if short {
		err = io.EOF
	}
	return n, err
}
