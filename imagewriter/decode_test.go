package imagewriter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// emitted collects what an emitter sends to one sink: the data it would
// write and the zero chunks it would zero, in order.
type emitted struct {
	mu    sync.Mutex
	img   []byte
	zeros []zeroRun // [off, off+n) of every zero chunk, as offsets
	// zeroSeen counts zero chunks received so far.
	zeroSeen atomic.Int32
	done     chan struct{}
}

func collect(ch <-chan *chunk, size int) *emitted {
	e := &emitted{img: bytes.Repeat([]byte{0xee}, size), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		for c := range ch {
			e.mu.Lock()
			if c.zero > 0 {
				clear(e.img[c.off : c.off+c.zero])
				e.zeros = append(e.zeros, zeroRun{int(c.off), int(c.off + c.zero)})
				e.zeroSeen.Add(1)
			} else {
				copy(e.img[c.off:], c.data())
			}
			e.mu.Unlock()
			c.release()
		}
	}()
	return e
}

// finish ends the stream as decompress does (the pending zeros, then the
// emitter's last chunk) and waits until the collector has everything.
func (e *emitted) finish(t *testing.T, zs *zeroSkipper, em *emitter, ch chan *chunk) {
	t.Helper()
	if err := zs.flush(); err != nil {
		t.Fatal(err)
	}
	if err := em.flush(); err != nil {
		t.Fatal(err)
	}
	close(ch)
	<-e.done
}

// decoderBlocks cuts img into the pieces a decoder would hand over:
// mostly 128 KiB blocks, some odd-sized.
func decoderBlocks(img []byte, r *rand.Rand) [][]byte {
	var out [][]byte
	for len(img) > 0 {
		k := 128 << 10
		if r.IntN(4) == 0 {
			k = 1 + r.IntN(100<<10)
		}
		k = min(k, len(img))
		out = append(out, img[:k])
		img = img[k:]
	}
	return out
}

func TestZeroSkipperCopiesDataAndSkipsLongZeroRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// data | 128 KiB zeros (short) | data | 1000 bytes | 3 MiB zeros
	// starting unaligned | data | 600 KiB zero tail.
	var img []byte
	data := func(n int) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(255) + 1)
		}
		img = append(img, b...)
	}
	zero := func(n int) { img = append(img, make([]byte, n)...) }
	data(512 << 10)
	zero(128 << 10)
	data(256 << 10)
	data(1000)
	zero(3 << 20)
	data(300 << 10)
	zero(600 << 10)

	for _, skip := range []bool{true, false} {
		ctx := context.Background()
		ch := make(chan *chunk, 64)
		em := &emitter{ctx: ctx, pool: newBufferPool(8, 256<<10), outs: []chan *chunk{ch}}
		got := collect(ch, len(img))
		var decoded atomic.Int64
		zs := &zeroSkipper{em: em, skip: skip, decoded: &decoded}
		for _, b := range decoderBlocks(img, r) {
			if n, err := zs.Write(b); err != nil || n != len(b) {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		got.finish(t, zs, em, ch)
		if !bytes.Equal(got.img, img) {
			t.Fatalf("skip=%v: the emitted image differs from the decoded one", skip)
		}
		if decoded.Load() != int64(len(img)) || zs.off != int64(len(img)) {
			t.Fatalf("skip=%v: decoded %d, offset %d; want %d", skip, decoded.Load(), zs.off, len(img))
		}
		if !skip {
			if len(got.zeros) != 0 {
				t.Fatalf("without skipping, zero chunks were emitted: %v", got.zeros)
			}
			continue
		}
		var skipped int
		for _, z := range got.zeros {
			if z.start%alignment != 0 || z.end%alignment != 0 || z.end-z.start < minZeroRun {
				t.Errorf("zero chunk [%d, %d) is unaligned or shorter than %d", z.start, z.end, minZeroRun)
			}
			skipped += z.end - z.start
		}
		// Only whole zero blocks are skipped: of the 3 MiB run and the
		// 600 KiB tail, at most the three blocks that also hold data
		// (each at most 128 KiB) and the unaligned ends are copied.
		if want := (3<<20 + 600<<10) - 3*(128<<10+alignment); skipped < want {
			t.Errorf("zero chunks cover %d bytes (%v); want at least %d", skipped, got.zeros, want)
		}
		// The 128 KiB run is too short to skip.
		for _, z := range got.zeros {
			if z.start < 640<<10 && z.end > 512<<10 {
				t.Errorf("the short run was skipped: [%d, %d)", z.start, z.end)
			}
		}
	}
}

func TestZeroSkipperEmitsAnEndlessRunAsItGrows(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan *chunk, 64)
	em := &emitter{ctx: ctx, pool: newBufferPool(4, 1<<20), outs: []chan *chunk{ch}}
	const total = maxZeroRequest + 40<<20
	got := collect(ch, total)
	var decoded atomic.Int64
	zs := &zeroSkipper{em: em, skip: true, decoded: &decoded}
	block := make([]byte, 128<<10)
	for zs.off < total {
		if _, err := zs.Write(block); err != nil {
			t.Fatal(err)
		}
	}
	// The decoder has not ended, but the sinks already have most of the
	// run: a too-small disk fails here, not after the whole stream.
	// (The chunk was sent before the last Write returned; the collector
	// takes it in its own time.)
	for deadline := time.Now().Add(30 * time.Second); got.zeroSeen.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no zero chunk reached the sinks before the stream ended")
		}
	}
	got.mu.Lock()
	first := got.zeros[0]
	got.mu.Unlock()
	if first.start != 0 || first.end < maxZeroRequest {
		t.Fatalf("first zero chunk [%d, %d); want [0, ≥%d)", first.start, first.end, maxZeroRequest)
	}
	got.finish(t, zs, em, ch)
	var skipped int
	for _, z := range got.zeros {
		skipped += z.end - z.start
	}
	if skipped != total {
		t.Fatalf("zero chunks cover %d of %d bytes: %v", skipped, total, got.zeros)
	}

	// A cancelled write notices it inside a run of zeros.
	cancel()
	if _, err := zs.Write(block); !errors.Is(err, context.Canceled) || !errors.Is(zs.err, context.Canceled) {
		t.Fatalf("Write after cancel = %v (err field %v); want context.Canceled", err, zs.err)
	}
}

// TestDecodeStageCountsItsWaits holds back a chunk reader's next chunk
// and an emitter's sink: each counts the time it waited, and only that.
func TestDecodeStageCountsItsWaits(t *testing.T) {
	const hold = 100 * time.Millisecond
	ctx := context.Background()

	inPool := newBufferPool(2, 4096)
	fed := func(s string) *chunk {
		c, err := inPool.get(ctx)
		if err != nil {
			t.Error(err)
			return nil
		}
		c.n = copy(c.buf, s)
		c.refs.Store(1)
		return c
	}
	in := make(chan *chunk, 1)
	in <- fed("ab")
	cr := &chunkReader{ctx: ctx, ch: in}
	p := make([]byte, 2)
	if n, err := cr.Read(p); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if cr.waited >= hold {
		t.Fatalf("waited %v for a chunk that was there", cr.waited)
	}
	go func() {
		time.Sleep(hold)
		in <- fed("cd")
		close(in)
	}()
	if n, err := cr.Read(p); n != 2 || err != nil || string(p) != "cd" {
		t.Fatalf("Read = %d %q, %v", n, p, err)
	}
	if cr.waited < hold {
		t.Fatalf("waited %v for a chunk held back %v", cr.waited, hold)
	}
	if _, err := cr.Read(p); err != io.EOF {
		t.Fatalf("Read at the end = %v; want io.EOF", err)
	}

	out := make(chan *chunk) // a sink that takes nothing until it is ready
	em := &emitter{ctx: ctx, pool: newBufferPool(1, 4096), outs: []chan *chunk{out}}
	taken := make(chan *chunk, 1)
	go func() {
		time.Sleep(hold)
		taken <- <-out
	}()
	if err := em.write(make([]byte, 100), 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := em.flush(); err != nil {
		t.Fatal(err)
	}
	if em.waited < hold {
		t.Fatalf("emitter waited %v for a sink held back %v", em.waited, hold)
	}
	(<-taken).release()
}
