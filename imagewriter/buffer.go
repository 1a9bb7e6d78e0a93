package imagewriter

import (
	"context"
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

// bufferPool is a fixed set of aligned buffers, allocated on first use: a
// stage's whole memory budget. Its size bounds how far the stage before it
// can run ahead.
type bufferPool struct {
	free  chan *chunk
	size  int
	made  atomic.Int32
	count int32
}

func newBufferPool(count, size int) *bufferPool {
	return &bufferPool{free: make(chan *chunk, count), size: size, count: int32(count)}
}

// get returns a free buffer, allocating one while the pool is not full, or
// waits for one; it fails only when ctx ends.
func (p *bufferPool) get(ctx context.Context) (*chunk, error) {
	select {
	case c := <-p.free:
		return c, nil
	default:
	}
	if p.made.Add(1) <= p.count {
		return &chunk{buf: alignedBuffer(p.size), pool: p}, nil
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

// alignedBuffer returns a slice of size bytes whose start is aligned for
// O_DIRECT.
func alignedBuffer(size int) []byte {
	raw := make([]byte, size+alignment)
	shift := 0
	if rem := int(uintptr(unsafe.Pointer(&raw[0])) % alignment); rem != 0 {
		shift = alignment - rem
	}
	return raw[shift : shift+size : shift+size]
}

var zeros = alignedBuffer(1 << 20)

// zeroBuffer is a shared, read-only, aligned MiB of zeros.
func zeroBuffer() []byte { return zeros }
