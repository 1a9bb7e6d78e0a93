package imagewriter

import (
	"context"
	"testing"
	"unsafe"
)

// TestBufferPoolSlab checks that a pool's buffers, cut from one slab, are
// aligned for O_DIRECT (to huge pages when they are whole huge pages),
// never share bytes, and are handed out again once released, up to the
// pool's count.
func TestBufferPoolSlab(t *testing.T) {
	for _, tc := range []struct {
		count, size int
		align       uintptr
	}{
		{count: 3, size: 4 << 20, align: hugePage},
		{count: 4, size: 1 << 20, align: alignment},
		{count: 2, size: 12 << 10, align: alignment},
	} {
		p := newBufferPool(tc.count, tc.size)
		var got []*chunk
		for range tc.count {
			c, err := p.get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(c.buf) != tc.size || cap(c.buf) != tc.size {
				t.Fatalf("%d × %d: buffer of len %d cap %d", tc.count, tc.size, len(c.buf), cap(c.buf))
			}
			if a := uintptr(unsafe.Pointer(&c.buf[0])); a%tc.align != 0 {
				t.Errorf("%d × %d: buffer at %#x, not aligned to %d", tc.count, tc.size, a, tc.align)
			}
			for i := range c.buf {
				c.buf[i] = byte(len(got) + 1)
			}
			got = append(got, c)
		}
		for i, c := range got {
			for j, b := range c.buf {
				if b != byte(i+1) {
					t.Fatalf("%d × %d: buffer %d byte %d is %d: buffers overlap", tc.count, tc.size, i, j, b)
				}
			}
		}
		// The pool is empty: a get waits until one is released.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := p.get(ctx); err == nil {
			t.Fatalf("%d × %d: got a buffer past the pool's count", tc.count, tc.size)
		}
		got[1].refs.Store(1)
		got[1].release()
		c, err := p.get(context.Background())
		if err != nil || &c.buf[0] != &got[1].buf[0] {
			t.Fatalf("%d × %d: after a release, got %p (%v), want the released buffer %p", tc.count, tc.size, c, err, got[1])
		}
	}
}
