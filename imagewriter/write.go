package imagewriter

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rivetmetal/rivet/imagewriter/qcow2"
	"github.com/rivetmetal/rivet/imagewriter/source"
	"golang.org/x/sync/errgroup"
)

// Source is where an image comes from (URLs, HTTP client, auth header,
// retry policy, read-gap timeout); see package source.
type Source = source.Source

// Retry is the download retry policy; see package source.
type Retry = source.Retry

// NewHTTPClient returns an HTTP client for image downloads; see
// source.NewHTTPClient.
func NewHTTPClient(connectTimeout time.Duration, proxy func(*http.Request) (*url.URL, error), tlsConfig *tls.Config) *http.Client {
	return source.NewHTTPClient(connectTimeout, proxy, tlsConfig)
}

// Defaults of Request's tuning fields.
const (
	DefaultBufferSize       = 4 << 20
	DefaultBuffers          = 8
	DefaultProgressInterval = time.Second
	// decodedBuffers × DefaultBufferSize is the decode stage's output
	// memory; compressed input uses decodedInput buffers of 1 MiB. Six
	// and eight, not four and four: with fewer, the serial decoder waited
	// on the sink and on the hash a few hundredths of a second per GiB of
	// zstd (docs/benchmarks.md, 2026-12-07); 12 MiB more at the peak.
	decodedBuffers = 6
	decodedInput   = 8
	inputChunk     = 1 << 20
	// An xz image decodes at a few hundred MB/s even on several workers,
	// a tenth of what the disks and the download take, so its stage
	// buffers less: each worker holds its block and its dictionary
	// instead (xzWorkers). Its output pool is a chunk per worker and two
	// more of xzOutputChunk bytes, and its input xzInput buffers.
	xzOutputChunk = 2 << 20
	xzInput       = 4
	// qcowCopyBuffers is the qcow2 stage's output pool: the data
	// clusters go to the disks in the input buffers, uncopied. An image
	// whose data is mostly in compressed clusters (a cloud image) is
	// decoded into a pool of qcowInflateBuffers instead, from small input
	// buffers, like a compressed image: with two, its decoders waited on
	// the disks a quarter of a second per 2.5 GiB (docs/benchmarks.md,
	// 2026-12-08).
	qcowCopyBuffers    = 2
	qcowInflateBuffers = 4
	// DefaultMaxDecoderMemory is Request.MaxDecoderMemory's default.
	DefaultMaxDecoderMemory = 128 << 20
)

// Request describes one image write. Zero values of the optional fields
// mean: whole-disk image, format from the magic bytes with IPA's permitted
// formats, zero runs skipped where the device zeroes cheaply, no read-back,
// one HTTP stream, the default buffers.
type Request struct {
	Source Source
	// Checksum is required: an image is never written unverified. It is
	// over the bytes as served (compressed, or the qcow2 file).
	Checksum Checksum
	// Targets are the device paths to write, at least one; the same image
	// goes to each, concurrently, each with its own writer.
	Targets []string
	// DiskFormat is the declared disk_format ("raw", "qcow2", "gpt"); ""
	// trusts the magic bytes. A mismatch is an error.
	DiskFormat string
	// PermittedFormats lists the disk formats allowed (IPA's
	// permitted_image_formats); nil means DefaultPermittedFormats.
	PermittedFormats []string
	// Partition, when set, makes this a partition image: the layout is
	// built first and the image streamed into the root partition.
	Partition *PartitionImage
	// Configdrive is a decoded config drive (an ISO 9660 image, at most
	// MaxConfigdriveSize bytes) to place on a config-2 partition; nil
	// means none.
	Configdrive []byte
	// NoZeroSkip writes zero runs as data even where the device could
	// zero them without a transfer.
	NoZeroSkip bool
	// Verify reads every written range back after the flush and compares
	// it with what was written (CRC-32C).
	Verify bool
	// ParallelStreams > 1 fetches the image with that many concurrent
	// Range requests when the server serves ranges.
	ParallelStreams int
	// MaxDecoderMemory bounds the memory an image can make the decoders
	// take, whatever it says about itself: the zstd window, the xz
	// dictionary and index, the qcow2 L1 table and extent map. An image
	// asking for more is refused before the memory is taken (ErrFormat
	// wrapping ErrMemoryLimit). 0 means DefaultMaxDecoderMemory. The
	// pipeline's buffers (Buffers × BufferSize) come on top.
	MaxDecoderMemory int64
	// MaxRangeReads bounds the Range requests that read a qcow2 image's
	// tables; an image needing more is converted sequentially instead. 0
	// means qcow2.DefaultMaxReads.
	MaxRangeReads int
	// BufferSize and Buffers size the buffer pool the image is fetched
	// into when it goes to the disks from there, raw images and qcow2
	// data clusters (Buffers × BufferSize is its memory; qcow2 adds two
	// buffers for compressed clusters, and takes more input buffers when
	// its clusters are so large that the converter's history needs
	// them). BufferSize is rounded up to 4 KiB.
	BufferSize int
	Buffers    int
	// Progress, when set, is called every ProgressInterval and once at the
	// end, from a single goroutine.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Logger receives phase changes; nil means slog.Default().
	Logger *slog.Logger
}

// Result describes a successful write.
type Result struct {
	// URL is the source URL that served the image.
	URL string
	// Size is the image size in bytes as served.
	Size int64
	// Format is the format found from the magic bytes.
	Format Format
	// ImageSize is the size of the disk image written (decoded).
	ImageSize int64
	// Checksum is the verified checksum.
	Checksum Checksum
	// Targets are the devices written.
	Targets []string
	// Disks holds one result per target, in Targets order.
	Disks []DiskResult
	// Resumes counts how often the download was resumed.
	Resumes int
	// Timings holds per-phase durations (download, decode and write
	// overlap).
	Timings map[string]time.Duration
	// Decode is how the decode stage of a compressed or qcow2 image spent
	// the write; nil for raw images and for qcow2 files spooled to disk
	// first.
	Decode *DecodeStats
	// Duration is the whole write, from connect to verified.
	Duration time.Duration
}

// DecodeStats is how the decode stage spent a write. The stage is serial
// and sits between the download and the disks, so its figures say which of
// the three set the pace: a stage that hardly waited ran flat out (its CPU
// time, set against the same decoder alone, shows what the rest of the
// write cost it); long input waits mean the download (or the hash beside
// it) was slower; long output waits mean the disks were.
type DecodeStats struct {
	// InputWait is the time the stage waited for served bytes.
	InputWait time.Duration
	// OutputWait is the time it waited for a free output buffer or for
	// the disks to take a chunk.
	OutputWait time.Duration
	// CPU is the user and system CPU time of the stage's threads. It is
	// zero where the stage had no thread of its own to measure it on:
	// qcow2, whose conversion (and its workers decoding compressed
	// clusters) shares the runtime's threads; a process that may not
	// raise a thread's priority; outside Linux.
	CPU time.Duration
	// Threads is how many threads ran the stage: one, or for xz its
	// workers and the thread handing them blocks, whose CPU is summed
	// and whose waits overlap the workers' work; for a qcow2 image with
	// compressed clusters (in its map, or, converted as it downloads,
	// among the clusters it reached), the conversion and the workers
	// decoding them (qcow2.InflateWorkers), whose waits overlap too.
	Threads int
}

// DiskResult is what one target disk holds after the write.
type DiskResult struct {
	// Path is the device.
	Path string
	// Written and Skipped count data bytes written and zero bytes the
	// device zeroed instead.
	Written, Skipped int64
	// Verified counts bytes read back, when Request.Verify was set.
	Verified int64
	// DiskID is the MBR disk signature ("0x" + 8 hex digits).
	DiskID string
	// PartitionTable is "gpt", "msdos" or "" when there is none.
	PartitionTable string
	// RootUUID is the root filesystem's UUID (its PARTUUID when it has
	// none) for partition images; "" for whole-disk images.
	RootUUID string
	// ESPUUID is the EFI system partition's filesystem UUID (FAT serial
	// "XXXX-XXXX"), if there is an ESP.
	ESPUUID string
	// Partitions maps roles ("root", "swap", "ephemeral", "configdrive",
	// "efi system partition", "BIOS Boot partition") to device paths.
	Partitions map[string]string
}

// Write streams the image to every target and verifies it. It returns an
// error wrapping one of the package's error classes; an image whose size or
// checksum is wrong is never reported as written, and a disk left with a
// partial or unverified image has its partition tables wiped so it cannot
// boot.
func Write(ctx context.Context, req Request) (*Result, error) {
	w, err := newWriter(req)
	if err != nil {
		return nil, err
	}
	return w.run(ctx)
}

type writer struct {
	req     Request
	log     *slog.Logger
	start   time.Time
	targets []target
	sinks   []*sink
	plans   []*diskPlan
	// head is the start of a compressed image's disk, as the precheck
	// decoded it from the first served bytes (at most headCheckBytes);
	// set before the stages start, only read after.
	head []byte

	mu         sync.Mutex
	phase      string
	phaseStart time.Time
	timings    map[string]time.Duration
	// decodeStats is the decode stage's figures, once it ended.
	decodeStats *DecodeStats
	total       int64
	imageSize   int64
	srcURL      string
	dirty       bool // the targets' old contents were changed
	qcow        *qcowPlan

	read    atomic.Int64
	decoded atomic.Int64
}

func newWriter(req Request) (*writer, error) {
	if len(req.Targets) == 0 {
		return nil, fmt.Errorf("%w: no target device", ErrTarget)
	}
	if req.Checksum.Algo == "" || req.Checksum.Value == "" {
		return nil, fmt.Errorf("%w: no checksum given", ErrChecksum)
	}
	if _, err := req.Checksum.newHash(); err != nil {
		return nil, err
	}
	if len(req.Configdrive) > MaxConfigdriveSize {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrConfigdrive, len(req.Configdrive), MaxConfigdriveSize)
	}
	if req.BufferSize <= 0 {
		req.BufferSize = DefaultBufferSize
	}
	req.BufferSize = (req.BufferSize + alignment - 1) / alignment * alignment
	if req.Buffers <= 0 {
		req.Buffers = DefaultBuffers
	}
	if req.ProgressInterval <= 0 {
		req.ProgressInterval = DefaultProgressInterval
	}
	if req.MaxDecoderMemory <= 0 {
		req.MaxDecoderMemory = DefaultMaxDecoderMemory
	}
	log := req.Logger
	if log == nil {
		log = slog.Default()
	}
	if req.Source.Logger == nil {
		req.Source.Logger = log
	}
	return &writer{req: req, log: log, timings: map[string]time.Duration{}}, nil
}

func (w *writer) srcName() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return source.Redact(w.srcURL)
}

func (w *writer) setImageSize(n int64) {
	w.mu.Lock()
	w.imageSize = n
	w.mu.Unlock()
}

func (w *writer) run(ctx context.Context) (res *Result, err error) {
	w.start = time.Now()
	for _, p := range w.req.Targets {
		t, err := openTarget(p)
		if err != nil {
			w.closeTargets()
			return nil, err
		}
		w.targets = append(w.targets, t)
	}
	defer func() {
		if err != nil && w.dirty {
			err = w.invalidate(err)
		}
		if cerr := w.closeTargets(); cerr != nil && err == nil {
			err = fmt.Errorf("%w: close: %w", ErrTarget, cerr)
		}
	}()
	stopProgress := w.startProgress()
	defer stopProgress()

	// Plan every disk (pure: nothing is written yet), so the image can be
	// refused before any disk is touched.
	for _, t := range w.targets {
		plan, err := w.planDisk(t)
		if err != nil {
			return nil, err
		}
		w.plans = append(w.plans, plan)
		w.sinks = append(w.sinks, newSink(t, plan.imageBase, plan.imageLimit, !w.req.NoZeroSkip, w.req.Verify))
	}

	w.setPhase(PhaseConnect)
	st, err := w.req.Source.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	w.mu.Lock()
	w.total, w.srcURL = max(st.Size(), 0), st.URL()
	w.mu.Unlock()

	probe := make([]byte, sniffBytes)
	n, eof, err := fill(st, probe)
	if err != nil {
		return nil, err
	}
	probe = probe[:n]
	w.read.Store(int64(n))
	format := DetectFormat(probe)
	if err := w.precheck(ctx, st, probe, format); err != nil {
		return nil, err
	}
	w.log.Info("writing image", "url", w.srcName(), "size", st.Size(), "format", format,
		"targets", w.req.Targets, "checksum", w.req.Checksum.Algo, "partition_image", w.req.Partition != nil)

	w.setPhase(PhasePrepare)
	w.dirty = true
	if err := w.prepare(ctx); err != nil {
		return nil, err
	}

	w.setPhase(PhaseDownload)
	sum, size, err := w.pump(ctx, st, probe, eof, format)
	if err != nil {
		return nil, err
	}
	if w.qcow != nil && w.qcow.mode == qcowSpool {
		// Convert only what was verified.
		if sum != w.req.Checksum.Value {
			return nil, fmt.Errorf("%w: %s of %s is %s, expected %s", ErrChecksum, w.req.Checksum.Algo, w.srcName(), sum, w.req.Checksum.Value)
		}
		w.setPhase(PhaseConvert)
		if err := w.convertSpool(ctx, size); err != nil {
			return nil, err
		}
	}

	w.setPhase(PhaseFlush)
	if err := w.flush(ctx); err != nil {
		return nil, err
	}
	if sum != w.req.Checksum.Value {
		return nil, fmt.Errorf("%w: %s of %s is %s, expected %s", ErrChecksum, w.req.Checksum.Algo, w.srcName(), sum, w.req.Checksum.Value)
	}
	w.log.Info("image checksum verified", "algo", w.req.Checksum.Algo, "bytes", size)
	verified := make([]int64, len(w.sinks))
	if w.req.Verify {
		w.setPhase(PhaseVerify)
		if err := w.readBack(ctx, verified); err != nil {
			return nil, err
		}
	}
	if len(w.req.Configdrive) > 0 {
		w.setPhase(PhaseConfigdrive)
	} else {
		w.setPhase(PhaseFinalize)
	}
	disks, err := w.finish(ctx)
	if err != nil {
		return nil, err
	}
	w.dirty = false
	w.setPhase(PhaseDone)
	w.mu.Lock()
	timings := maps.Clone(w.timings)
	imageSize := w.imageSize
	decode := w.decodeStats
	w.mu.Unlock()
	for i := range disks {
		disks[i].Written = w.sinks[i].written.Load()
		disks[i].Skipped = w.sinks[i].skipped.Load()
		disks[i].Verified = verified[i]
	}
	res = &Result{URL: st.URL(), Size: size, Format: format, ImageSize: imageSize, Checksum: w.req.Checksum,
		Targets: w.req.Targets, Disks: disks, Resumes: st.Resumes(), Timings: timings, Decode: decode, Duration: time.Since(w.start)}
	attrs := []any{"url", w.srcName(), "format", format, "bytes", size, "image_bytes", imageSize,
		"skipped", disks[0].Skipped, "seconds", res.Duration.Seconds(), "mb_per_s", float64(imageSize) / 1e6 / res.Duration.Seconds(),
		"resumes", res.Resumes}
	if decode != nil {
		attrs = append(attrs, "decode_input_wait_s", decode.InputWait.Seconds(), "decode_output_wait_s", decode.OutputWait.Seconds(),
			"decode_cpu_s", decode.CPU.Seconds())
	}
	w.log.Info("image written and verified", attrs...)
	return res, nil
}

// precheck refuses an image that cannot be written, before any disk is
// touched: format checks, size checks where the size is known, decoder
// memory checks, and for qcow2 the choice of conversion path.
func (w *writer) precheck(ctx context.Context, st *source.Stream, probe []byte, format Format) error {
	switch {
	case format == FormatRaw:
		if err := checkFormat(format, w.req.DiskFormat, w.req.PermittedFormats, probe); err != nil {
			return err
		}
		if st.Size() >= 0 {
			w.setImageSize(st.Size())
			for _, s := range w.sinks {
				if st.Size() > s.limit {
					return fmt.Errorf("%w: image %s is %d bytes, %s has %d; nothing was written",
						ErrTooLarge, w.srcName(), st.Size(), s.t.Path(), s.limit)
				}
			}
		}
	case format.compressed():
		if format == FormatZstd {
			var zh zstd.Header
			if zh.Decode(probe) == nil {
				if zh.WindowSize > uint64(w.req.MaxDecoderMemory) {
					return fmt.Errorf("%w: %w: the zstd stream of %s declares a %d MiB window, over the %d MiB decoder memory limit; nothing was written",
						ErrFormat, ErrMemoryLimit, w.srcName(), zh.WindowSize>>20, w.req.MaxDecoderMemory>>20)
				}
				if zh.HasFCS {
					for _, s := range w.sinks {
						if int64(zh.FrameContentSize) > s.limit {
							return fmt.Errorf("%w: image %s decompresses to %d bytes, %s has %d; nothing was written",
								ErrTooLarge, w.srcName(), zh.FrameContentSize, s.t.Path(), s.limit)
						}
					}
				}
			}
		}
		// Decode the start of the stream to check what it holds.
		dec, closeDec, err := newDecompressor(format, bytes.NewReader(probe), w.req.MaxDecoderMemory)
		if err != nil {
			return fmt.Errorf("%w: %s stream of %s: %w", ErrFormat, format, w.srcName(), err)
		}
		head := make([]byte, headCheckBytes)
		n, err := io.ReadFull(dec, head)
		closeDec()
		if errors.Is(err, ErrMemoryLimit) {
			return fmt.Errorf("%w: %s stream of %s: %w; nothing was written", ErrFormat, format, w.srcName(), err)
		}
		head = head[:n]
		w.head = head
		if DetectFormat(head) == FormatQcow2 {
			return fmt.Errorf("%w: a qcow2 image inside %s cannot be streamed; serve it uncompressed (qcow2 compresses its own clusters)", ErrFormat, format)
		}
		if err := checkFormat(format, w.req.DiskFormat, w.req.PermittedFormats, head); err != nil {
			return err
		}
	case format == FormatQcow2:
		if err := checkFormat(format, w.req.DiskFormat, w.req.PermittedFormats, nil); err != nil {
			return err
		}
		plan, err := w.planQcow2(ctx, st, probe)
		if err != nil {
			return err
		}
		w.qcow = plan
	}
	return nil
}

// pump runs the fetch, hash, decode and write stages concurrently and
// returns the hex digest and the number of bytes served.
func (w *writer) pump(ctx context.Context, st *source.Stream, probe []byte, eof bool, format Format) (string, int64, error) {
	g, gctx := errgroup.WithContext(ctx)
	h, _ := w.req.Checksum.newHash()
	// Raw images go from the fetch buffers straight to the disks, and so
	// do qcow2's data clusters, by reference; compressed images get small
	// input buffers and a pool for the decoded output.
	inCount, inSize := w.req.Buffers, w.req.BufferSize
	switch {
	case format == FormatQcow2:
		inCount, inSize = w.qcow.inputPool(inCount, inSize)
	case format == FormatXz:
		inCount, inSize = xzInput, inputChunk
	case format != FormatRaw:
		inCount, inSize = decodedInput, inputChunk
	}
	in := newBufferPool(inCount, inSize)
	hashCh := make(chan *chunk, inCount)
	decCh := make(chan *chunk, inCount)
	sinkChs := make([]chan *chunk, len(w.sinks))
	for i := range sinkChs {
		sinkChs[i] = make(chan *chunk, max(w.req.Buffers, decodedBuffers))
	}
	closeSinks := func() {
		for _, c := range sinkChs {
			close(c)
		}
	}

	// A failing stage must not wait for a slow server: aborting the
	// stream ends a blocked read.
	stopAbort := context.AfterFunc(gctx, st.Abort)
	defer stopAbort()
	var served int64
	dlStart := time.Now()
	g.Go(func() error {
		first := &chunk{buf: probe, n: len(probe)}
		var err error
		if w.req.ParallelStreams > 1 && st.RangeOK() && st.Size() > int64(len(probe))+int64(2*inSize) {
			served, err = w.fetchParallel(gctx, st, first, in, hashCh, decCh)
		} else {
			served, err = w.fetch(gctx, st, first, eof, in, hashCh, decCh)
		}
		w.span(PhaseDownload, dlStart)
		if err != nil {
			return err
		}
		close(hashCh)
		close(decCh)
		return nil
	})
	g.Go(func() error {
		for {
			select {
			case c, ok := <-hashCh:
				if !ok {
					return nil
				}
				h.Write(c.data())
				c.release()
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	g.Go(func() error {
		decStart := time.Now()
		defer func() {
			if format != FormatRaw {
				w.span(PhaseDecode, decStart)
			}
		}()
		if format == FormatRaw {
			if err := w.forwardRaw(gctx, decCh, sinkChs); err != nil {
				return err
			}
			closeSinks()
			return nil
		}
		if w.qcow != nil && w.qcow.mode == qcowSpool {
			if err := w.spoolFile(gctx, decCh); err != nil {
				return err
			}
			closeSinks()
			return nil
		}
		outCount, outSize := decodedBuffers, w.req.BufferSize
		switch format {
		case FormatQcow2:
			outCount = w.qcow.outputBuffers()
		case FormatXz:
			outCount, outSize = xzWorkers(w.req.MaxDecoderMemory)+2, min(w.req.BufferSize, xzOutputChunk)
		}
		em := &emitter{ctx: gctx, pool: newBufferPool(outCount, outSize), outs: sinkChs, scanZeros: w.scanZeros()}
		cr := &chunkReader{ctx: gctx, ch: decCh}
		defer cr.close()
		var err error
		var cpu time.Duration
		threads := 1
		switch {
		case format == FormatQcow2 && w.qcow.mode == qcowStream:
			var streamed qcow2.Streamed
			streamed, err = w.convertStream(gctx, cr, em, st.Size())
			threads += decodeWorkers(streamed.CompressedBytes)
		case format == FormatQcow2:
			err = w.convertMap(gctx, w.qcow.m, cr, em)
			threads += decodeWorkers(w.qcow.m.CompressedBytes)
		default:
			// Restored when this goroutine returns, after the decoder's
			// last emit.
			restore, own := w.prioritizeDecode()
			defer restore()
			used := stageCPU(own)
			var workers time.Duration
			var n int
			workers, n, err = w.decompress(gctx, format, cr, em)
			threads += n
			cpu = used()
			if cpu > 0 {
				cpu += workers
			}
		}
		w.mu.Lock()
		w.decodeStats = &DecodeStats{InputWait: cr.waited, OutputWait: em.waited, CPU: cpu, Threads: threads}
		w.mu.Unlock()
		if err != nil {
			return err
		}
		closeSinks()
		return nil
	})
	for i, s := range w.sinks {
		g.Go(func() error { return s.drain(gctx, sinkChs[i]) })
	}
	err := g.Wait()
	w.writeSpan()
	if err != nil {
		if ctx.Err() != nil {
			return "", 0, fmt.Errorf("image write cancelled: %w", ctx.Err())
		}
		return "", 0, err
	}
	if st.Size() >= 0 && served != st.Size() {
		return "", 0, fmt.Errorf("%w: %s ended after %d of %d bytes", ErrTruncated, w.srcName(), served, st.Size())
	}
	if format == FormatRaw {
		w.setImageSize(served)
	} else if format.compressed() {
		w.setImageSize(w.decoded.Load())
	}
	return hex.EncodeToString(h.Sum(nil)), served, nil
}

// send hands a served chunk to the hash and decode stages.
func send(ctx context.Context, c *chunk, hashCh, decCh chan<- *chunk) error {
	c.refs.Store(2)
	for _, ch := range []chan<- *chunk{hashCh, decCh} {
		select {
		case ch <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// fetch reads the stream in order into pool buffers.
func (w *writer) fetch(ctx context.Context, st *source.Stream, first *chunk, eof bool, in *bufferPool, hashCh, decCh chan<- *chunk) (int64, error) {
	off := int64(first.n)
	if first.n > 0 {
		if err := send(ctx, first, hashCh, decCh); err != nil {
			return 0, err
		}
	}
	for !eof {
		c, err := in.get(ctx)
		if err != nil {
			return off, err
		}
		var n int
		n, eof, err = fill(st, c.buf)
		if err != nil {
			if ctx.Err() != nil {
				return off, ctx.Err()
			}
			return off, err
		}
		if n == 0 {
			continue
		}
		c.n, c.off = n, off
		if err := send(ctx, c, hashCh, decCh); err != nil {
			return off, err
		}
		off += int64(n)
		w.read.Store(off)
	}
	return off, nil
}

// fetchParallel reads the image with several Range requests at once,
// each filling one pool buffer, and hands the buffers on in order.
func (w *writer) fetchParallel(ctx context.Context, st *source.Stream, first *chunk, in *bufferPool, hashCh, decCh chan<- *chunk) (int64, error) {
	size, base, seg := st.Size(), int64(first.n), int64(in.size)
	nseg := (size - base + seg - 1) / seg
	st.Close() // the segments use their own requests
	if err := send(ctx, first, hashCh, decCh); err != nil {
		return 0, err
	}
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	done := make(chan *chunk, w.req.ParallelStreams)
	for range w.req.ParallelStreams {
		g.Go(func() error {
			for {
				// Take the buffer first, then the segment: the lowest
				// segment not yet fetched always has a buffer.
				c, err := in.get(gctx)
				if err != nil {
					return err
				}
				k := next.Add(1) - 1
				if k >= nseg {
					c.refs.Store(1)
					c.release()
					return nil
				}
				off := base + k*seg
				n := int(min(seg, size-off))
				if _, err := st.ReadAtContext(gctx, c.buf[:n], off); err != nil {
					return err
				}
				c.n, c.off = n, off
				select {
				case done <- c:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		})
	}
	var fetchErr error
	go func() { fetchErr = g.Wait(); close(done) }()
	pending := map[int64]*chunk{}
	off := base
	for c := range done {
		pending[c.off] = c
		for {
			p, ok := pending[off]
			if !ok {
				break
			}
			delete(pending, off)
			n := int64(p.n)
			if err := send(ctx, p, hashCh, decCh); err != nil {
				for range done {
				}
				return off, err
			}
			off += n
			w.read.Store(off)
		}
	}
	if fetchErr != nil {
		return off, fetchErr
	}
	return off, nil
}

// prioritizeDecode runs the calling goroutine, a compressed image's decode
// stage, on a thread of its own at raised priority until the returned
// function is called (prioritizeStage), or says at debug level why it
// keeps the priority it has. own reports whether the goroutine has the
// thread to itself until then.
func (w *writer) prioritizeDecode() (restore func(), own bool) {
	restore, err := prioritizeStage()
	if err != nil {
		w.log.Debug("the decode stage keeps its thread's priority", "reason", err)
		return restore, false
	}
	w.log.Debug("the decode stage runs on a thread of its own", "nice", decodeNice)
	return restore, true
}

// scanZeros reports whether a sink skips zero runs, so the chunks'
// zero runs must be found.
func (w *writer) scanZeros() bool {
	for _, s := range w.sinks {
		if s.zeroRuns {
			return true
		}
	}
	return false
}

// skipsZeros reports whether every sink skips zero runs, so a decoder's
// zero blocks need not be copied at all (zeroSkipper).
func (w *writer) skipsZeros() bool {
	for _, s := range w.sinks {
		if !s.zeroRuns {
			return false
		}
	}
	return len(w.sinks) > 0
}

// forwardRaw passes served chunks to every sink unchanged, with their zero
// runs found once for all of them.
func (w *writer) forwardRaw(ctx context.Context, decCh <-chan *chunk, outs []chan *chunk) error {
	scan := w.scanZeros()
	for {
		var c *chunk
		var ok bool
		select {
		case c, ok = <-decCh:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		if scan {
			c.zeroRuns = findZeroRuns(c.data(), c.zeroRuns[:0])
		}
		c.refs.Add(int32(len(outs)))
		c.release()
		w.decoded.Store(c.off + int64(c.n))
		for _, ch := range outs {
			select {
			case ch <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// fill reads until buf is full or the stream ends. eof is true at a clean
// end of stream; any other failure is returned as err.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

func (w *writer) flush(ctx context.Context) error {
	g, _ := errgroup.WithContext(ctx)
	for _, t := range w.targets {
		g.Go(t.Flush)
	}
	return g.Wait()
}

func (w *writer) readBack(ctx context.Context, verified []int64) error {
	g, gctx := errgroup.WithContext(ctx)
	for i, s := range w.sinks {
		g.Go(func() error {
			n, err := s.readBack(gctx, alignedBuffer(w.req.BufferSize))
			verified[i] = n
			return err
		})
	}
	return g.Wait()
}

// invalidate wipes the partition tables and signatures of disks left with
// a partial or unverified image, so they cannot boot it; err is returned
// with what was done.
func (w *writer) invalidate(err error) error {
	var failed []string
	for _, t := range w.targets {
		werr := wipeSignatures(t)
		if werr == nil {
			// Until the device's cache is flushed, the wipe may not
			// have reached the disk.
			werr = t.Flush()
		}
		if werr != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", t.Path(), werr))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w (and wiping the partial image failed: %v; do not boot %v)", err, failed, w.req.Targets)
	}
	return fmt.Errorf("%w (partition tables on %v wiped so the partial image cannot boot)", err, w.req.Targets)
}

func (w *writer) closeTargets() error {
	var errs []error
	for _, t := range w.targets {
		errs = append(errs, t.Close())
	}
	w.targets = nil
	return errors.Join(errs...)
}

// setPhase ends the current sequential phase, recording its duration,
// and starts p.
func (w *writer) setPhase(p string) {
	now := time.Now()
	w.mu.Lock()
	if w.phase != "" && w.phase != PhaseDownload {
		w.timings[w.phase] += now.Sub(w.phaseStart)
	}
	w.phase, w.phaseStart = p, now
	w.mu.Unlock()
	w.log.Debug("image write phase", "phase", p)
}

// span records a concurrent stage's duration.
func (w *writer) span(name string, start time.Time) {
	w.mu.Lock()
	w.timings[name] = time.Since(start)
	w.mu.Unlock()
}

// writeSpan records the write stage: from the first sink write to the last.
func (w *writer) writeSpan() {
	var first, last time.Time
	for _, s := range w.sinks {
		s.mu.Lock()
		if !s.first.IsZero() && (first.IsZero() || s.first.Before(first)) {
			first = s.first
		}
		if s.last.After(last) {
			last = s.last
		}
		s.mu.Unlock()
	}
	if !first.IsZero() {
		w.mu.Lock()
		w.timings[PhaseWrite] = last.Sub(first)
		w.mu.Unlock()
	}
}

func (w *writer) snapshot() Progress {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := Progress{Phase: w.phase, BytesRead: w.read.Load(), BytesDecoded: w.decoded.Load(), TotalBytes: w.total,
		ImageSize: w.imageSize, StartedAt: w.start, UpdatedAt: time.Now(), Timings: maps.Clone(w.timings)}
	if p.Phase == PhaseDownload && p.BytesRead >= p.TotalBytes && p.TotalBytes > 0 {
		p.Phase = PhaseWrite
	}
	for i, s := range w.sinks {
		v, sk := s.written.Load(), s.skipped.Load()
		if i == 0 || v+sk < p.BytesWritten+p.BytesSkipped {
			p.BytesWritten, p.BytesSkipped = v, sk
		}
	}
	return p
}

// startProgress reports progress every interval until the returned stop
// function is called, which sends a final snapshot.
func (w *writer) startProgress() func() {
	if w.req.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(w.req.ProgressInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				w.req.Progress(w.snapshot())
			case <-done:
				w.req.Progress(w.snapshot())
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func redact(u string) string { return source.Redact(u) }
