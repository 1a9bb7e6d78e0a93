package imagewriter

import (
	"sync/atomic"
	"unsafe"
)

// alignment satisfies O_DIRECT on every device we meet (4 KiB sectors).
const alignment = 4096

// chunk is one buffer of image data travelling through the pipeline. It is
// shared read-only by the hash stage and every writer; the last stage to
// release it returns it to the pool.
type chunk struct {
	buf  []byte // aligned, cap = pool chunk size
	n    int    // valid bytes
	off  int64  // image offset of buf[0]
	refs atomic.Int32
	pool *bufferPool
}

func (c *chunk) data() []byte { return c.buf[:c.n] }

func (c *chunk) release() {
	if c.refs.Add(-1) == 0 {
		c.pool.put(c)
	}
}

// bufferPool is a fixed set of aligned buffers: the pipeline's whole memory
// budget. Its size bounds how far the fetch stage can run ahead.
type bufferPool struct {
	free chan *chunk
	size int
}

func newBufferPool(count, size int) *bufferPool {
	p := &bufferPool{free: make(chan *chunk, count), size: size}
	for i := 0; i < count; i++ {
		p.free <- &chunk{buf: alignedBuffer(size), pool: p}
	}
	return p
}

func (p *bufferPool) put(c *chunk) {
	c.n, c.off = 0, 0
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
