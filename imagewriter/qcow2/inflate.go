package qcow2

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Compressed clusters decode on worker goroutines: each cluster is a
// stream of its own, so the clusters of a cloud image (qemu-img convert
// -c) decode on every core while the conversion reads on. The conversion
// batches clusters into jobs of about inflateJobBytes of guest data (or
// of compressed bytes), so a hand-off carries several 64 KiB clusters,
// and holds at most a queue of jobs (the one it fills among them) whose
// buffers, made once at their largest, fit inflateMaxBytes.
//
// A compressed cluster's stored length is an upper bound, a count of
// sectors that can reach two clusters (the rest of its last sector
// belongs to the next cluster), so a job's compressed bytes may be twice
// its guest bytes.
const (
	inflateJobBytes   = 512 << 10
	inflateMaxBytes   = 16 << 20
	inflateMaxWorkers = 8
	// inflateStoreMax: an uncompressed run shorter than this, read while
	// compressed clusters wait in the queue, travels in a job among
	// them (copied) instead of being emitted at once, so the guest bytes
	// go out in the order they were read and merge into large writes
	// (qemu-img stores an incompressible cluster uncompressed among the
	// compressed ones). Longer runs are emitted at once, by reference.
	inflateStoreMax = 256 << 10
)

// Set by tests: inflateHook is called by a worker before it decodes a
// job; inflateWorkersLive counts the workers that have not returned.
var (
	inflateHook        func()
	inflateWorkersLive atomic.Int64
)

// inflater decodes a conversion's compressed clusters on its workers and
// hands their guest bytes to emit in the order the clusters were read,
// always from the conversion's goroutine (add and flush), so emit needs no
// locking. A cluster that does not decode fails the conversion when its
// turn to be emitted comes, at most a queue of jobs after it was read.
type inflater struct {
	typ  uint8
	cs   int
	emit EmitRefFunc
	// workers is how many goroutines decode; maxQueue how many jobs may
	// be submitted and not yet emitted.
	workers  int
	maxQueue int
	// jobs, made when the workers start, carries the submitted jobs to
	// them.
	jobs chan *inflateJob
	wg   sync.WaitGroup
	// stopped tells the workers to skip the jobs left once the
	// conversion has given up.
	stopped atomic.Bool
	// cur is the job being filled; queue the submitted jobs, oldest
	// first; free the emitted ones, kept for reuse.
	cur   *inflateJob
	queue []*inflateJob
	free  []*inflateJob
}

// inflateJob is a batch of compressed clusters, and short uncompressed
// runs among them: their bytes back to back in src, and where each one's
// guest bytes go.
type inflateJob struct {
	src      []byte
	out      []byte
	clusters []inflateCluster
	outLen   int
	err      error
	// done receives once the workers have decoded every cluster (or
	// failed).
	done chan struct{}
}

// inflateCluster is one compressed cluster of a job: src[srcOff:srcEnd]
// decodes to out[outOff:outOff+guestLen], which every extent of run
// (extents sharing the cluster's host bytes) receives; or, stored, an
// uncompressed run whose bytes src[srcOff:srcEnd] those extents receive
// as they are. run is the caller's slice, kept by reference: however many
// extents share a cluster, a job holds no copy of them.
type inflateCluster struct {
	srcOff, srcEnd int
	outOff         int
	guestLen       int
	run            []Extent
	stored         bool
}

// InflateWorkers is how many goroutines decode a conversion's compressed
// clusters: one per CPU the Go runtime may use, at most 8.
func InflateWorkers() int {
	return min(runtime.GOMAXPROCS(0), inflateMaxWorkers)
}

// newInflater makes the inflater of a conversion whose clusters are
// clusterSize bytes, compressed with typ; its workers start with the
// first compressed cluster.
func newInflater(typ uint8, clusterSize int, emit EmitRefFunc) *inflater {
	workers := InflateWorkers()
	return &inflater{typ: typ, cs: clusterSize, emit: emit, workers: workers,
		maxQueue: max(2, min(2*workers+2, inflateMaxBytes/inflateJobMemory(clusterSize)))}
}

// inflateJobMemory is the size of a job's buffers: the guest bytes of a
// job and the cluster that tops it up, and the source bytes of a job and
// what tops them up: a compressed cluster's stored length (at most two
// clusters) or an uncompressed run.
func inflateJobMemory(clusterSize int) int {
	return (inflateJobBytes + clusterSize) + inflateSrcCap(clusterSize)
}

// inflateSrcCap is the capacity of a job's source bytes.
func inflateSrcCap(clusterSize int) int {
	return inflateJobBytes + max(2*clusterSize, inflateStoreMax)
}

// carries reports whether an uncompressed run of n bytes goes in a job
// (addStored) rather than straight to emit: compressed clusters read
// before it are still to be emitted, and it is short.
func (f *inflater) carries(n int64) bool {
	return (f.cur != nil || len(f.queue) > 0) && n < inflateStoreMax
}

// addStored copies the bytes of run (extents sharing one uncompressed
// run, the longest shorter than inflateStoreMax) from w into the current
// job, to be emitted in their turn. run must not change afterwards.
func (f *inflater) addStored(w *window, run []Extent) error {
	return f.put(w, run, 0, true)
}

// add reads the compressed bytes of run (extents sharing one compressed
// cluster) from w into the current job, submitting the job once it holds
// enough, after emitting the oldest job when the queue is full. run must
// not change afterwards.
func (f *inflater) add(w *window, run []Extent) error {
	glen := int64(0)
	for _, r := range run {
		glen = max(glen, r.GuestLen)
	}
	if n := runLen(run); glen > int64(f.cs) || n > 2*int64(f.cs) {
		return fmt.Errorf("%w: compressed cluster at host %#x stores %d bytes for %d guest bytes, more than a cluster holds", ErrInvalid, run[0].Host, n, glen)
	}
	return f.put(w, run, int(glen), false)
}

// put copies run's host bytes from w into the job being filled (starting
// one when there is none) as a cluster decoding to glen guest bytes, or
// as a stored run, and submits the job once it holds a job's worth of
// guest or source bytes.
func (f *inflater) put(w *window, run []Extent, glen int, stored bool) error {
	if f.cur == nil {
		j, err := f.job()
		if err != nil {
			return err
		}
		f.cur = j
	}
	j, host := f.cur, run[0].Host
	start := len(j.src)
	if err := w.each(host, host+runLen(run), func(p []byte) error { j.src = append(j.src, p...); return nil }); err != nil {
		return err
	}
	j.clusters = append(j.clusters, inflateCluster{srcOff: start, srcEnd: len(j.src), outOff: j.outLen, guestLen: glen,
		run: run, stored: stored})
	j.outLen += glen
	if j.outLen >= inflateJobBytes || len(j.src) >= inflateJobBytes {
		f.submit()
	}
	return nil
}

// job returns an empty job, emitting the oldest submitted one first when
// the queue is full.
func (f *inflater) job() (*inflateJob, error) {
	if f.jobs == nil {
		f.start()
	}
	if len(f.queue) >= f.maxQueue {
		if err := f.emitOldest(); err != nil {
			return nil, err
		}
	}
	if n := len(f.free); n > 0 {
		j := f.free[n-1]
		f.free = f.free[:n-1]
		return j, nil
	}
	// Made once at their largest (inflateJobMemory), so appends never
	// grow them.
	return &inflateJob{src: make([]byte, 0, inflateSrcCap(f.cs)), out: make([]byte, inflateJobBytes+f.cs),
		done: make(chan struct{}, 1)}, nil
}

// submit hands the current job to the workers.
func (f *inflater) submit() {
	j := f.cur
	f.cur = nil
	if j == nil {
		return
	}
	f.queue = append(f.queue, j)
	// Never blocks: the channel holds maxQueue jobs, and at most that
	// many are queued.
	f.jobs <- j
}

// flush submits the current job and emits every job, in order.
func (f *inflater) flush() error {
	f.submit()
	for len(f.queue) > 0 {
		if err := f.emitOldest(); err != nil {
			return err
		}
	}
	return nil
}

// emitOldest waits for the oldest submitted job and emits its clusters.
func (f *inflater) emitOldest() error {
	j := f.queue[0]
	f.queue = f.queue[1:]
	<-j.done
	if j.err != nil {
		return j.err
	}
	for _, c := range j.clusters {
		data := j.out[c.outOff : c.outOff+c.guestLen]
		if c.stored {
			data = j.src[c.srcOff:c.srcEnd]
		}
		for _, r := range c.run {
			if err := f.emit(data[:r.GuestLen], r.Guest, nil); err != nil {
				return err
			}
		}
	}
	clear(j.clusters) // drops the references to the callers' extents
	j.src, j.clusters, j.outLen, j.err = j.src[:0], j.clusters[:0], 0, nil
	f.free = append(f.free, j)
	return nil
}

// start starts the workers.
func (f *inflater) start() {
	f.jobs = make(chan *inflateJob, f.maxQueue)
	for range f.workers {
		f.wg.Add(1)
		inflateWorkersLive.Add(1)
		go func() {
			defer f.wg.Done()
			defer inflateWorkersLive.Add(-1)
			var d decompressor
			defer d.close()
			for j := range f.jobs {
				if f.stopped.Load() {
					j.done <- struct{}{}
					continue
				}
				if inflateHook != nil {
					inflateHook()
				}
				j.err = d.decodeJob(f.typ, f.cs, j)
				j.done <- struct{}{}
			}
		}()
	}
}

// close stops the workers, which skip the jobs they were not yet at, and
// waits for them; queued jobs that were not emitted are dropped.
func (f *inflater) close() {
	if f.jobs != nil {
		f.stopped.Store(true)
		close(f.jobs)
		f.wg.Wait()
		f.jobs = nil
	}
	f.cur, f.queue, f.free = nil, nil, nil
}

// decompressor decodes compressed clusters, reusing its decoders.
type decompressor struct {
	fl   io.ReadCloser
	zstd *zstd.Decoder
}

// decodeJob decodes every cluster of j into j.out.
func (d *decompressor) decodeJob(typ uint8, clusterSize int, j *inflateJob) error {
	for _, c := range j.clusters {
		if c.stored {
			continue
		}
		if err := d.decompress(typ, j.src[c.srcOff:c.srcEnd], j.out[c.outOff:c.outOff+c.guestLen], clusterSize); err != nil {
			e := c.run[0]
			return fmt.Errorf("%w: compressed cluster at host %#x (guest %#x): %w", ErrInvalid, e.Host, e.Guest, err)
		}
	}
	return nil
}

// decompress decodes the compressed cluster src into out, which it fills.
func (d *decompressor) decompress(typ uint8, src, out []byte, clusterSize int) error {
	var rd io.Reader
	switch typ {
	case CompressionZlib:
		if d.fl == nil {
			d.fl = flate.NewReader(bytes.NewReader(src))
		} else if err := d.fl.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
			return err
		}
		rd = d.fl
	case CompressionZstd:
		if d.zstd == nil {
			z, err := zstd.NewReader(bytes.NewReader(src), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(uint64(max(clusterSize, 1<<20))))
			if err != nil {
				return err
			}
			d.zstd = z
		} else if err := d.zstd.Reset(bytes.NewReader(src)); err != nil {
			return err
		}
		rd = d.zstd
	default:
		return fmt.Errorf("compression type %d", typ)
	}
	_, err := io.ReadFull(rd, out)
	return err
}

func (d *decompressor) close() {
	if d.zstd != nil {
		d.zstd.Close()
	}
}
