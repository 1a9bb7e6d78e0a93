package imagewriter

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Defaults of Request's tuning fields.
const (
	DefaultBufferSize       = 4 << 20
	DefaultBuffers          = 8
	DefaultReadGapTimeout   = 60 * time.Second
	DefaultProgressInterval = time.Second
)

// Request describes one image write. Zero values of the tuning fields mean
// the defaults above.
type Request struct {
	Source Source
	// Checksum is required: an image is never written unverified.
	Checksum Checksum
	// Targets are the device paths to write, at least one; the same bytes
	// go to each, concurrently.
	Targets []string
	// BufferSize and Buffers size the buffer pool (Buffers × BufferSize is
	// the pipeline's memory). BufferSize is rounded up to 4 KiB.
	BufferSize int
	Buffers    int
	// ReadGapTimeout fails the download when no data arrives for this long.
	ReadGapTimeout time.Duration
	// Progress, when set, is called every ProgressInterval and once at the
	// end of each phase, from a single goroutine.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Logger receives phase changes; nil means slog.Default().
	Logger *slog.Logger
}

// Result describes a successful write.
type Result struct {
	// URL is the source URL that served the image.
	URL string
	// Size is the image size in bytes.
	Size int64
	// Checksum is the verified checksum.
	Checksum Checksum
	// Targets are the devices written.
	Targets []string
	// Timings holds per-phase durations.
	Timings map[string]time.Duration
	// Duration is the whole write, from connect to verified.
	Duration time.Duration
}

// Write streams the image to every target and verifies it. It returns an
// error wrapping one of the package's error classes; an image whose size or
// checksum is wrong is never reported as written.
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

	mu         sync.Mutex
	phase      string
	phaseStart time.Time
	timings    map[string]time.Duration
	total      int64

	read    atomic.Int64
	written []atomic.Int64
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
	if req.BufferSize <= 0 {
		req.BufferSize = DefaultBufferSize
	}
	req.BufferSize = (req.BufferSize + alignment - 1) / alignment * alignment
	if req.Buffers <= 0 {
		req.Buffers = DefaultBuffers
	}
	if req.ReadGapTimeout <= 0 {
		req.ReadGapTimeout = DefaultReadGapTimeout
	}
	if req.ProgressInterval <= 0 {
		req.ProgressInterval = DefaultProgressInterval
	}
	log := req.Logger
	if log == nil {
		log = slog.Default()
	}
	return &writer{req: req, log: log, timings: map[string]time.Duration{}, written: make([]atomic.Int64, len(req.Targets))}, nil
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
		if cerr := w.closeTargets(); cerr != nil && err == nil {
			err = fmt.Errorf("%w: close: %w", ErrTarget, cerr)
		}
	}()

	stopProgress := w.startProgress()
	defer stopProgress()

	w.setPhase(PhaseConnect)
	streamCtx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	st, err := w.req.Source.open(streamCtx)
	if err != nil {
		return nil, err
	}
	defer st.body.Close()
	w.mu.Lock()
	w.total = max(st.size, 0)
	w.mu.Unlock()
	if st.size >= 0 {
		for _, t := range w.targets {
			if st.size > t.Size() {
				return nil, fmt.Errorf("%w: image %s is %d bytes, %s holds %d; nothing was written",
					ErrTooLarge, redactURL(st.url), st.size, t.Path(), t.Size())
			}
		}
	}
	w.log.Info("writing image", "url", redactURL(st.url), "size", st.size, "targets", w.req.Targets, "checksum", w.req.Checksum.Algo)

	w.setPhase(PhaseDownload)
	sum, size, err := w.pump(ctx, st, cancelStream)
	if err != nil {
		return nil, err
	}

	w.setPhase(PhaseFlush)
	if err := w.flush(ctx); err != nil {
		return nil, err
	}

	w.setPhase(PhaseVerify)
	if sum != w.req.Checksum.Value {
		return nil, fmt.Errorf("%w: %s of %s is %s, expected %s (%d bytes written to %v; do not boot them)",
			ErrChecksum, w.req.Checksum.Algo, redactURL(st.url), sum, w.req.Checksum.Value, size, w.req.Targets)
	}
	for _, t := range w.targets {
		if err := t.RereadPartitions(); err != nil {
			return nil, err
		}
	}
	w.setPhase(PhaseDone)
	w.mu.Lock()
	timings := maps.Clone(w.timings)
	w.mu.Unlock()
	res = &Result{URL: st.url, Size: size, Checksum: w.req.Checksum, Targets: w.req.Targets,
		Timings: timings, Duration: time.Since(w.start)}
	w.log.Info("image written and verified", "url", redactURL(st.url), "bytes", size,
		"seconds", res.Duration.Seconds(), "mb_per_s", float64(size)/1e6/res.Duration.Seconds())
	return res, nil
}

// pump runs the fetch, hash and write stages concurrently and returns the
// hex digest and the image size.
func (w *writer) pump(ctx context.Context, st *stream, cancelStream func()) (string, int64, error) {
	pool := newBufferPool(w.req.Buffers, w.req.BufferSize)
	hashCh := make(chan *chunk, w.req.Buffers)
	writeChs := make([]chan *chunk, len(w.targets))
	for i := range writeChs {
		writeChs[i] = make(chan *chunk, w.req.Buffers)
	}
	h, _ := w.req.Checksum.newHash()
	g, gctx := errgroup.WithContext(ctx)
	// Closing the stream is what unblocks a read when another stage fails.
	stopWatch := context.AfterFunc(gctx, cancelStream)
	defer stopWatch()

	var size int64
	g.Go(func() error {
		defer func() {
			close(hashCh)
			for _, c := range writeChs {
				close(c)
			}
		}()
		body := newGapReader(st.body, w.req.ReadGapTimeout, cancelStream)
		defer body.stop()
		var off int64
		for {
			var c *chunk
			select {
			case c = <-pool.free:
			case <-gctx.Done():
				return gctx.Err()
			}
			n, eof, err := fill(body, c.buf)
			if err != nil {
				pool.put(c)
				if gctx.Err() != nil && ctx.Err() == nil {
					return gctx.Err() // another stage failed first
				}
				return w.readError(st, off+int64(n), err)
			}
			if n > 0 {
				for _, t := range w.targets {
					if off+int64(n) > t.Size() {
						pool.put(c)
						return fmt.Errorf("%w: image %s is over %d bytes, %s holds %d",
							ErrTooLarge, redactURL(st.url), off+int64(n), t.Path(), t.Size())
					}
				}
				c.n, c.off = n, off
				c.refs.Store(int32(1 + len(writeChs)))
				hashCh <- c
				for _, ch := range writeChs {
					ch <- c
				}
				off += int64(n)
				w.read.Store(off)
			} else {
				pool.put(c)
			}
			if eof {
				if st.size >= 0 && off != st.size {
					return fmt.Errorf("%w: %s ended after %d of %d bytes", ErrTruncated, redactURL(st.url), off, st.size)
				}
				size = off
				w.setPhase(PhaseWrite)
				return nil
			}
		}
	})
	g.Go(func() error {
		for c := range hashCh {
			h.Write(c.data())
			c.release()
		}
		return nil
	})
	for i, t := range w.targets {
		g.Go(func() error {
			for c := range writeChs[i] {
				if gctx.Err() != nil {
					c.release()
					continue // drain so the pool refills and the reader can stop
				}
				if _, err := t.WriteAt(c.data(), c.off); err != nil {
					c.release()
					return err
				}
				w.written[i].Add(int64(c.n))
				c.release()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return "", 0, fmt.Errorf("image write cancelled: %w", ctx.Err())
		}
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// fill reads until buf is full or the stream ends. eof is true at a clean
// end of stream; any other failure (a connection reset, an HTTP body shorter
// than its Content-Length) is returned as err.
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

func (w *writer) readError(st *stream, at int64, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s ended after %d of %d bytes: %w", ErrTruncated, redactURL(st.url), at, st.size, err)
	}
	return fmt.Errorf("%w: reading %s at byte %d: %w", ErrDownload, redactURL(st.url), at, err)
}

func (w *writer) flush(ctx context.Context) error {
	g, _ := errgroup.WithContext(ctx)
	for _, t := range w.targets {
		g.Go(t.Flush)
	}
	return g.Wait()
}

func (w *writer) closeTargets() error {
	var errs []error
	for _, t := range w.targets {
		errs = append(errs, t.Close())
	}
	w.targets = nil
	return errors.Join(errs...)
}

// setPhase ends the current phase, recording its duration, and starts p.
// Download and write overlap: "download" runs until the source's last byte
// was read, "write" from then until every target has it.
func (w *writer) setPhase(p string) {
	now := time.Now()
	w.mu.Lock()
	if w.phase != "" {
		w.timings[w.phase] += now.Sub(w.phaseStart)
	}
	w.phase, w.phaseStart = p, now
	w.mu.Unlock()
	w.log.Debug("image write phase", "phase", p)
}

func (w *writer) snapshot() Progress {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := Progress{Phase: w.phase, BytesRead: w.read.Load(), TotalBytes: w.total,
		StartedAt: w.start, UpdatedAt: time.Now(), Timings: maps.Clone(w.timings)}
	for i := range w.written {
		v := w.written[i].Load()
		if i == 0 || v < p.BytesWritten {
			p.BytesWritten = v
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
