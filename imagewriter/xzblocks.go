package imagewriter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/imagewriter/xzlimit"
	"github.com/therootcompany/xz"
	"golang.org/x/sync/errgroup"
)

// xzDispatchHook, set by tests, sees the dispatcher each time it hands a
// block to a worker to decode in parallel.
var xzDispatchHook func(d *xzDispatcher)

// maxXzWorkers bounds how many blocks of an xz image decode at once, as
// the decoder memory limit does (xzWorkers).
const maxXzWorkers = 16

// xzWorkers is how many blocks of an xz image may decode at once: one per
// CPU the runtime may run on, as long as each worker's share of the
// decoder memory limit holds a block of xz's usual size at its default
// level (a 24 MiB block and its 8 MiB dictionary); at least one.
func xzWorkers(maxMemory int64) int {
	return max(1, min(runtime.GOMAXPROCS(0), maxXzWorkers, int(maxMemory/(32<<20))))
}

// blockOutput is where one xz worker puts the blocks it decodes.
type blockOutput interface {
	// put reads r, one block's decoded bytes, to its end and places
	// them at offset off of the image on; it returns how many there
	// were.
	put(ctx context.Context, r io.Reader, off int64) (int64, error)
}

// xzJob is one block for a worker, or, with no stream, a request to let
// go of its decoder.
type xzJob struct {
	stream io.Reader // the block as an xz stream of its own
	off    int64     // where its bytes go in the image
	// fresh asks for a new decoder (the old one's dictionary dropped).
	fresh bool
	// done, when set, is closed once the block is decoded.
	done chan struct{}
}

// decodeXzBlocks decodes an xz image, read from in, on as many workers as
// outs has: the Splitter cuts it into its blocks, each of which decodes
// alone, and a block whose header declares its size (as xz writes every
// block when it compresses on several threads) is read into a worker's
// buffer and decoded there while the next block is read, its bytes put at
// their offset in the image. A block that does not declare its size, or
// does not fit a worker's share of maxMemory with its dictionary, is
// decoded as it is read, by one worker once all have finished and the
// others have let go of their memory (streamed); so a single-block image
// decodes as it always did, on one core. Every block is checked by the decoder (data, check, sizes) and
// every index and footer by the Splitter. A block that its own size and
// those of the blocks before it (as their framing declares them, not yet
// decoded) place partly beyond limit, the image's room on the smallest
// target, waits until every block before it has decoded, so a block that
// lied about its size fails as what it is, not as an image too large for
// the disk. It returns the bytes decoded and the CPU time of the workers'
// threads.
//
// A worker's failure stops the reading too: when in can bind its blocking
// reads to a context (a chunkReader), it is bound to the workers' for the
// call.
func decodeXzBlocks(ctx context.Context, in io.Reader, maxMemory, limit int64, outs []blockOutput) (int64, time.Duration, error) {
	n := len(outs)
	share := maxMemory / int64(n)
	dictMax := uint32(min(maxMemory/2, math.MaxUint32))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	if b, ok := in.(contextBinder); ok {
		defer b.bindContext(gctx)()
	}
	jobs := make([]chan xzJob, n)
	idle := make(chan int, n)
	cpus := make([]time.Duration, n)
	for i := range outs {
		jobs[i] = make(chan xzJob, 1)
		idle <- i
		g.Go(func() error {
			restore, err := prioritizeStage()
			defer restore()
			used := stageCPU(err == nil)
			defer func() { cpus[i] = used() }()
			return xzWorker(gctx, jobs[i], idle, i, outs[i], dictMax, maxMemory)
		})
	}
	d := &xzDispatcher{ctx: gctx, sp: xzlimit.NewSplitter(in, maxMemory), jobs: jobs, idle: idle,
		bufs: make([]blockBuffer, n), dicts: make([]int64, n), share: share, big: -1, limit: limit}
	derr := d.run()
	for _, ch := range jobs {
		close(ch)
	}
	if derr != nil {
		cancel()
	}
	werr := g.Wait()
	// Every worker has returned: no block is read from a buffer any more.
	for i := range d.bufs {
		d.bufs[i].free()
	}
	var cpu time.Duration
	for _, c := range cpus {
		cpu += c
	}
	switch {
	case werr != nil && !errors.Is(werr, context.Canceled):
		// A worker failed on a block read before whatever then stopped
		// the reading (a truncated download, say): the image's own fault
		// comes first.
		return d.off, cpu, werr
	case derr != nil && !errors.Is(derr, context.Canceled):
		return d.off, cpu, limitError(derr, maxMemory)
	case werr != nil:
		return d.off, cpu, werr
	}
	return d.off, cpu, derr
}

// contextBinder is an input whose blocking reads can be bound to another
// context until the returned function restores the one they had.
type contextBinder interface {
	bindContext(ctx context.Context) (restore func())
}

// xzWorker decodes the blocks it is given until its jobs end.
func xzWorker(ctx context.Context, jobs <-chan xzJob, idle chan<- int, i int, out blockOutput, dictMax uint32, maxMemory int64) error {
	var dec *xz.Reader
	for {
		var j xzJob
		select {
		case job, ok := <-jobs:
			if !ok {
				return nil
			}
			j = job
		case <-ctx.Done():
			return ctx.Err()
		}
		if j.fresh || j.stream == nil {
			dec = nil
		}
		if j.stream != nil {
			var err error
			if dec == nil {
				dec, err = xz.NewReader(j.stream, dictMax)
			} else {
				err = dec.Reset(j.stream)
			}
			if err != nil {
				return xzError(err, maxMemory)
			}
			if _, err := out.put(ctx, xzErrors{dec, maxMemory}, j.off); err != nil {
				return err
			}
		}
		if j.done != nil {
			close(j.done)
		}
		idle <- i
	}
}

// xzDispatcher reads the blocks and hands them to idle workers.
type xzDispatcher struct {
	ctx  context.Context
	sp   *xzlimit.Splitter
	jobs []chan xzJob
	idle chan int
	// bufs and dicts are each worker's block buffer and the largest
	// dictionary its decoder holds (0: none); share is what the two may
	// take together.
	bufs  []blockBuffer
	dicts []int64
	share int64
	// big is the worker that kept, after a streamed block, a decoder
	// whose dictionary is over its share (-1: none); it lets go of it
	// before any block decodes in parallel.
	big int
	// off is where the next block's bytes go, limit how far they may go.
	off, limit int64
}

func (d *xzDispatcher) run() error {
	for {
		b, err := d.sp.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		// Compared so that no sum can overflow: a header may declare
		// sizes up to 2^63.
		if size := b.Size(); size >= 0 && b.Dict <= d.share && size <= d.share-b.Dict {
			err = d.parallel(b, size)
		} else {
			err = d.streamed(b)
		}
		if err != nil {
			return err
		}
	}
}

// takeAll waits until every worker is idle, and takes them all.
func (d *xzDispatcher) takeAll() error {
	for range d.jobs {
		if _, err := d.take(); err != nil {
			return err
		}
	}
	return nil
}

// quiesce waits until every block handed out has decoded, and has the
// worker that kept an oversized decoder let go of it; every worker is
// idle again after it.
func (d *xzDispatcher) quiesce() error {
	if err := d.takeAll(); err != nil {
		return err
	}
	for i := range d.jobs {
		if i == d.big {
			d.dicts[i] = 0
			d.jobs[i] <- xzJob{} // it lets go of its decoder and goes back to idle itself
			continue
		}
		d.idle <- i
	}
	d.big = -1
	return nil
}

// waitOthers waits until every worker but i (which the caller holds) is
// idle, then leaves them idle.
func (d *xzDispatcher) waitOthers(i int) error {
	others := make([]int, 0, len(d.jobs)-1)
	for len(others) < len(d.jobs)-1 {
		k, err := d.take()
		if err != nil {
			return err
		}
		others = append(others, k)
	}
	for _, k := range others {
		d.idle <- k
	}
	return nil
}

// take waits for an idle worker.
func (d *xzDispatcher) take() (int, error) {
	select {
	case i := <-d.idle:
		return i, nil
	case <-d.ctx.Done():
		return 0, d.ctx.Err()
	}
}

// parallel reads a block of size bytes into an idle worker's buffer and
// has the worker decode it.
func (d *xzDispatcher) parallel(b *xzlimit.Block, size int64) error {
	if d.big >= 0 {
		if err := d.quiesce(); err != nil {
			return err
		}
	}
	i, err := d.take()
	if err != nil {
		return err
	}
	j := xzJob{off: d.off}
	if max(d.dicts[i], b.Dict)+max(int64(d.bufs[i].capacity()), size) > d.share {
		d.bufs[i].free()
		d.dicts[i], j.fresh = 0, true
	}
	buf, err := d.bufs[i].bytes(int(size))
	if err != nil {
		return fmt.Errorf("a buffer for a block of %d bytes: %w", size, err)
	}
	// The block checks its own sizes as it is read: it ends where its
	// header says, or fails.
	if _, err := io.ReadFull(b, buf); err != nil {
		return err
	}
	var probe [1]byte
	if k, err := b.Read(probe[:]); k != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%w: a block is longer than its header declares", xzlimit.ErrCorrupt)
		}
		return err
	}
	if d.off+b.DecodedSize() > d.limit {
		// Beyond the disk, as far as the blocks read so far say: the
		// blocks before it decode first, so that one of them which lied
		// about its size fails as corrupt before this one is refused as
		// too large.
		if err := d.waitOthers(i); err != nil {
			return err
		}
	}
	d.dicts[i] = max(d.dicts[i], b.Dict)
	j.stream = b.Stream(d.bufs[i].reader(len(buf)))
	d.off += b.DecodedSize()
	if xzDispatchHook != nil {
		xzDispatchHook(d)
	}
	d.jobs[i] <- j // the worker is idle: its queue is empty
	return nil
}

// streamed decodes a block as it is read, on one worker, once every
// worker is idle and every other has let go of its decoder, and all of
// them of their buffers. The worker chosen is the one whose decoder has
// the largest dictionary, which it keeps for the block (and the next ones
// like it) when it is large enough; if that is over a worker's share, it
// lets go of it before a block decodes in parallel again (quiesce).
func (d *xzDispatcher) streamed(b *xzlimit.Block) error {
	n := len(d.jobs)
	if err := d.takeAll(); err != nil {
		return err
	}
	s := 0
	for i := range n {
		if d.dicts[i] > d.dicts[s] {
			s = i
		}
	}
	for i := range n {
		d.bufs[i].free()
		switch {
		case i == s:
		case d.dicts[i] > 0:
			d.dicts[i] = 0
			d.jobs[i] <- xzJob{} // it lets go of its decoder and goes back to idle itself
		default:
			d.idle <- i
		}
	}
	done := make(chan struct{})
	d.jobs[s] <- xzJob{stream: b.Stream(b), off: d.off, done: done}
	select {
	case <-done:
	case <-d.ctx.Done():
		return d.ctx.Err()
	}
	d.dicts[s] = max(d.dicts[s], b.Dict)
	d.big = -1
	if d.dicts[s] > d.share {
		d.big = s
	}
	d.off += b.DecodedSize()
	return nil
}

// decompressXz is the decode stage of an xz image: decodeXzBlocks with
// one emitter per worker, sharing the stage's output pool and the sinks'
// queues. No worker hands the sinks a chunk before the image's first
// bytes were checked (checkDecodedHead). It returns the workers' CPU time
// and their number, and adds their waits for output to em's.
func (w *writer) decompressXz(ctx context.Context, in *chunkReader, em *emitter) (time.Duration, int, error) {
	head := &headGate{passed: make(chan struct{})}
	outs := make([]blockOutput, xzWorkers(w.req.MaxDecoderMemory))
	ems := make([]*emitter, len(outs))
	for i := range outs {
		ems[i] = &emitter{ctx: ctx, pool: em.pool, outs: em.outs, scanZeros: em.scanZeros}
		outs[i] = &emitBlocks{w: w, em: ems[i], head: head}
	}
	limit := int64(math.MaxInt64)
	for _, s := range w.sinks {
		limit = min(limit, s.limit)
	}
	n, cpu, err := decodeXzBlocks(ctx, in, w.req.MaxDecoderMemory, limit, outs)
	for _, e := range ems {
		em.waited += e.waited
	}
	if err != nil {
		return cpu, len(outs), w.decodeError(ctx, FormatXz, in, n, err)
	}
	if ctx.Err() != nil {
		return cpu, len(outs), ctx.Err()
	}
	w.decoded.Store(n)
	return cpu, len(outs), nil
}

// headGate holds back every chunk but the image's first until the first
// has been checked.
type headGate struct {
	passed chan struct{}
	once   sync.Once
}

func (h *headGate) pass() { h.once.Do(func() { close(h.passed) }) }

func (h *headGate) wait(ctx context.Context) error {
	select {
	case <-h.passed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// emitBlocks is an xz worker's output in a write: it decodes into the
// stage's output chunks and hands each, full or at its block's end, to the
// sinks.
type emitBlocks struct {
	w    *writer
	em   *emitter
	head *headGate
}

func (o *emitBlocks) put(ctx context.Context, r io.Reader, off int64) (int64, error) {
	var n int64
	for {
		if off+n > 0 {
			if err := o.head.wait(ctx); err != nil {
				return n, err
			}
		}
		k, eof, err := o.w.emitDecoded(ctx, FormatXz, o.em, r, off+n)
		if k > 0 && off+n == 0 {
			o.head.pass()
		}
		n += int64(k)
		o.w.decoded.Add(int64(k))
		if err != nil || eof {
			return n, err
		}
	}
}
