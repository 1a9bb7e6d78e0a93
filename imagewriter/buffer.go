package imagewriter

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"
)

// alignment satisfies O_DIRECT on every device we meet (4 KiB sectors).
const alignment = 4096

// chunk is one piece of image data travelling through the pipeline. It is
// shared read-only by the stages that hold a reference; the last one to
// release it returns it to its pool. A chunk with zero > 0 carries no data:
// it asks the sinks to make [off, off+zero) read as zeros.
type chunk struct {
	buf  []byte // aligned, cap = pool chunk size
	n    int    // valid bytes
	off  int64  // offset of buf[0] in the stage's byte space
	zero int64
	// zeroRuns are the long zero runs of the data, found once by the
	// stage that hands the chunk to the sinks (when a sink skips zeros).
	zeroRuns []zeroRun
	refs     atomic.Int32
	pool     *bufferPool
	// parent, for a view (buf lies in the parent's bytes), is released
	// when the view is.
	parent *chunk
}

func (c *chunk) data() []byte { return c.buf[:c.n] }

func (c *chunk) release() {
	if c.refs.Add(-1) != 0 {
		return
	}
	switch {
	case c.pool != nil:
		c.pool.put(c)
	case c.parent != nil:
		c.parent.release()
	}
}

// Retain and Release let the qcow2 converter hold input chunks it was
// lent (qcow2.Buffer).
func (c *chunk) Retain()  { c.refs.Add(1) }
func (c *chunk) Release() { c.release() }

// view returns a chunk of p, which lies in c's bytes, at offset off; it
// holds a reference to c until it is released itself.
func (c *chunk) view(p []byte, off int64) *chunk {
	c.refs.Add(1)
	return &chunk{buf: p[:len(p):len(p)], n: len(p), off: off, parent: c}
}

// bufferPool is a fixed set of aligned buffers: a stage's whole memory
// budget. Its size bounds how far the stage before it can run ahead. The
// buffers are cut from one slab, allocated on first use, so that buffers
// smaller than a huge page share huge pages too (alignedBuffer).
type bufferPool struct {
	free  chan *chunk
	size  int
	made  atomic.Int32
	count int32
	once  sync.Once
	slab  []byte
}

func newBufferPool(count, size int) *bufferPool {
	return &bufferPool{free: make(chan *chunk, count), size: size, count: int32(count)}
}

// get returns a free buffer, taking a new one from the slab while the
// pool is not full, or waits for one; it fails only when ctx ends.
func (p *bufferPool) get(ctx context.Context) (*chunk, error) {
	select {
	case c := <-p.free:
		return c, nil
	default:
	}
	if i := int(p.made.Add(1)); i <= int(p.count) {
		p.once.Do(func() { p.slab = alignedBuffer(int(p.count) * p.size) })
		return &chunk{buf: p.slab[(i-1)*p.size : i*p.size : i*p.size], pool: p}, nil
	}
	p.made.Add(-1)
	select {
	case c := <-p.free:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *bufferPool) put(c *chunk) {
	c.n, c.off, c.zero, c.zeroRuns = 0, 0, 0, c.zeroRuns[:0]
	p.free <- c
}

// hugePage is the size of a transparent huge page (x86-64 and arm64 with
// 4 KiB pages).
const hugePage = 2 << 20

// alignedBuffer returns a slice of size bytes whose start is aligned for
// O_DIRECT. A buffer of a huge page or more starts on a huge page and is
// marked for transparent huge pages where the kernel offers them
// (adviseHugePages): the image bytes pass through these buffers three
// times (the socket read's copy, the hash, the direct write's page
// pinning), and with 4 KiB pages each pass pays a TLB miss and the write
// a page reference for every 4 KiB. The alignment costs address space,
// not memory: the unused head and tail are never touched.
func alignedBuffer(size int) []byte {
	align := alignment
	if size >= hugePage {
		align = hugePage
	}
	raw := make([]byte, size+align)
	shift := 0
	if rem := int(uintptr(unsafe.Pointer(&raw[0])) % uintptr(align)); rem != 0 {
		shift = align - rem
	}
	b := raw[shift : shift+size : shift+size]
	if align == hugePage {
		adviseHugePages(b)
	}
	return b
}

var zeros = alignedBuffer(1 << 20)

// zeroBuffer is a shared, read-only, aligned MiB of zeros.
func zeroBuffer() []byte { return zeros }
