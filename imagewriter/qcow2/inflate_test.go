package qcow2

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// manyCompressed is a synthetic image of n compressed 64 KiB clusters
// (every third one stored uncompressed), enough for many jobs of the
// inflater, with the disk it describes.
func manyCompressed(t *testing.T, n int, zstd bool) (file, raw []byte, s synth) {
	return compressedImage(t, n, zstd, 16)
}

// compressedImage is manyCompressed with clusters of 1<<clusterBits
// bytes.
func compressedImage(t *testing.T, n int, zstd bool, clusterBits uint32) (file, raw []byte, s synth) {
	t.Helper()
	cs := 1 << clusterBits
	text := bytes.Repeat([]byte("a line of a cloud image that compresses well\n"), cs/45+2)
	s = synth{clusterBits: clusterBits, size: int64(n+7) << clusterBits, zstd: zstd, data: map[int64][]byte{}, compressed: map[int64]bool{}}
	for i := range n {
		g := int64(i + 3)
		d := bytes.Clone(text[i%40 : i%40+cs])
		copy(d, randBytes(min(64, cs/8))) // no two clusters alike
		s.data[g] = d
		s.compressed[g] = i%3 != 2
	}
	file, raw = s.build(t)
	return file, raw, s
}

// TestConvertManyCompressedClusters converts images with more compressed
// clusters than the inflater keeps in flight, both ways, on one worker
// and on several, and checks every byte.
func TestConvertManyCompressedClusters(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 4} {
		for _, zstd := range []bool{false, true} {
			runtime.GOMAXPROCS(procs)
			file, raw, s := manyCompressed(t, 300, zstd)
			got, _, err := convert(t, file, s.size)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("GOMAXPROCS %d, zstd %v: Convert: %v (equal %v)", procs, zstd, err, bytes.Equal(got, raw))
			}
			got, err = stream(t, file, s.size, Limits{})
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("GOMAXPROCS %d, zstd %v: Stream: %v (equal %v)", procs, zstd, err, bytes.Equal(got, raw))
			}
		}
	}
}

// TestConvertSharedCompressedClusters maps one compressed cluster at
// several guest clusters, the last of them cut short by the disk's end:
// the cluster decodes once and each guest range gets its share, both
// ways.
func TestConvertSharedCompressedClusters(t *testing.T) {
	text := bytes.Repeat([]byte("a cluster stored once and mapped three times "), 2000)
	for _, zstd := range []bool{false, true} {
		s := synth{clusterBits: 16, size: 10<<16 + 1000, zstd: zstd,
			data:       map[int64][]byte{2: text[:65536], 4: text[3 : 65536+3]},
			compressed: map[int64]bool{2: true, 4: true},
			alias:      map[int64]int64{5: 2, 7: 2, 10: 2}}
		file, raw := s.build(t)
		got, m, err := convert(t, file, s.size)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("zstd %v: Convert: %v (equal %v)", zstd, err, bytes.Equal(got, raw))
		}
		byHost := map[int64]int{}
		shared := 0
		for _, e := range m.Extents {
			if e.Compressed {
				byHost[e.Host]++
				shared = max(shared, byHost[e.Host])
			}
		}
		if shared != 4 {
			t.Fatalf("zstd %v: at most %d extents share a compressed cluster, want 4: %+v", zstd, shared, m.Extents)
		}
		if got, err = stream(t, file, s.size, Limits{}); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("zstd %v: Stream: %v (equal %v)", zstd, err, bytes.Equal(got, raw))
		}
	}
}

// TestInflaterDecodesOnSeveralWorkers holds each worker at the start of
// its job until another worker has started one too (for at most 5 s, so
// a single worker fails the test instead of hanging it): two jobs must
// have decoded at once.
func TestInflaterDecodesOnSeveralWorkers(t *testing.T) {
	prev := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(prev)
	file, raw, s := manyCompressed(t, 64, false)
	var mu sync.Mutex
	active, peak := 0, 0
	both := make(chan struct{})
	var once sync.Once
	inflateHook = func() {
		mu.Lock()
		active++
		if active > peak {
			peak = active
		}
		if active == 2 {
			once.Do(func() { close(both) })
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(5 * time.Second):
			once.Do(func() { close(both) }) // no second worker: let it finish
		}
		mu.Lock()
		active--
		mu.Unlock()
	}
	defer func() { inflateHook = nil }()
	got, _, err := convert(t, file, s.size)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Convert: %v", err)
	}
	if peak < 2 {
		t.Fatalf("at most %d job decoded at once, want 2", peak)
	}
}

// TestConvertRefusesACorruptCompressedCluster garbles one compressed
// cluster among many: the conversion fails naming it, on both paths,
// and its workers are gone when it returns.
func TestConvertRefusesACorruptCompressedCluster(t *testing.T) {
	prev := runtime.GOMAXPROCS(4)
	defer runtime.GOMAXPROCS(prev)
	file, _, s := manyCompressed(t, 200, false)
	m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var bad Extent
	seen := 0
	for _, e := range m.Extents {
		if e.Compressed {
			if seen++; seen == 120 {
				bad = e
			}
		}
	}
	if bad.Len == 0 {
		t.Fatal("the image has fewer than 120 compressed clusters")
	}
	corrupt := bytes.Clone(file)
	for i := bad.Host; i < bad.Host+16; i++ {
		corrupt[i] = 0xff // a deflate block of the reserved type
	}
	_, _, err = convert(t, corrupt, s.size)
	if !errors.Is(err, ErrInvalid) || !bytes.Contains([]byte(err.Error()), []byte("compressed cluster at host")) {
		t.Fatalf("Convert of a corrupt cluster: %v", err)
	}
	if n := inflateWorkersLive.Load(); n != 0 {
		t.Fatalf("%d workers still running after Convert returned", n)
	}
	if _, err = stream(t, corrupt, s.size, Limits{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Stream of a corrupt cluster: %v", err)
	}
	if n := inflateWorkersLive.Load(); n != 0 {
		t.Fatalf("%d workers still running after Stream returned", n)
	}
	// A failing emit stops the conversion too.
	stop := errors.New("the disk went away")
	calls := 0
	_, err = m.Convert(context.Background(), bytes.NewReader(file), func([]byte, int64) error {
		if calls++; calls == 50 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Convert with a failing emit: %v", err)
	}
	if n := inflateWorkersLive.Load(); n != 0 {
		t.Fatalf("%d workers still running after a failed emit", n)
	}
	// So does a cancelled context, with jobs queued.
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	_, err = m.Convert(ctx, bytes.NewReader(file), func([]byte, int64) error {
		if calls++; calls == 50 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Convert cancelled: %v", err)
	}
	if n := inflateWorkersLive.Load(); n != 0 {
		t.Fatalf("%d workers still running after a cancelled conversion", n)
	}
}

// TestInflaterBoundsItsQueue feeds inflaters faster than their workers
// decode, every compressed cluster claiming the longest stored length
// its L2 entry can give (two clusters), uncompressed runs carried among
// them: the jobs held (queued, being
// filled, kept for reuse) reach the queue bound and never pass it, and
// their buffers stay within inflateMaxBytes, for clusters of 512 bytes
// to 2 MiB and any number of cores; the disk still comes out right.
func TestInflaterBoundsItsQueue(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	inflateHook = func() { time.Sleep(time.Millisecond) }
	defer func() { inflateHook = nil }()
	for _, tc := range []struct {
		bits  uint32
		n     int
		procs int
	}{{9, 8000, 2}, {12, 1000, 2}, {16, 300, 2}, {16, 300, 64}, {21, 12, 2}} {
		runtime.GOMAXPROCS(tc.procs)
		file, raw, s := compressedImage(t, tc.n, false, tc.bits)
		m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		cs := 1 << tc.bits
		got := make([]byte, s.size)
		f := newInflater(CompressionZlib, cs, func(p []byte, off int64, _ Buffer) error { copy(got[off:], p); return nil })
		// Lengths stretched over the next clusters reach back further than
		// a conversion's window keeps: this one keeps them all.
		w := newWindow(bytes.NewReader(file), 2<<20+4*cs)
		held, peak := 0, 0
		for _, e := range m.Extents {
			switch {
			case !e.Compressed && f.carries(e.Len):
				if err := f.addStored(w, []Extent{e}); err != nil {
					t.Fatal(err)
				}
			case !e.Compressed:
				copy(got[e.Guest:], file[e.Host:e.Host+e.Len])
			default:
				e.Len = min(2*int64(cs), int64(len(file))-e.Host)
				if err := f.add(w, []Extent{e}); err != nil {
					t.Fatal(err)
				}
			}
			jobs := append(append([]*inflateJob{f.cur}, f.queue...), f.free...)
			n, size := 0, 0
			for _, j := range jobs {
				if j != nil {
					n++
					size += cap(j.src) + cap(j.out)
				}
			}
			held, peak = max(held, n), max(peak, size)
		}
		if err := f.flush(); err != nil {
			t.Fatal(err)
		}
		f.close()
		w.close()
		if !bytes.Equal(got, raw) {
			t.Fatalf("%d-byte clusters: the inflater's output differs from the disk", cs)
		}
		if held != f.maxQueue || peak > inflateMaxBytes {
			t.Fatalf("%d-byte clusters, %d procs: up to %d jobs held (queue bound %d), %d bytes of buffers (bound %d)",
				cs, tc.procs, held, f.maxQueue, peak, inflateMaxBytes)
		}
	}
}

// TestInflaterEmitsInReadOrder converts an image whose uncompressed
// clusters lie one by one among compressed ones: every cluster is
// emitted in the order the file holds it, the uncompressed ones carried
// in the jobs around them, so the writer's emitter can merge neighbours
// into large writes.
func TestInflaterEmitsInReadOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(2)
	file, raw, s := manyCompressed(t, 300, false)
	m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, e := range m.Extents {
		if !e.Compressed {
			stored++
		}
	}
	if stored < 50 {
		t.Fatalf("only %d uncompressed extents", stored)
	}
	got := make([]byte, s.size)
	var order []int64
	_, err = m.Convert(context.Background(), bytes.NewReader(file), func(p []byte, off int64) error {
		copy(got[off:], p)
		if n := len(order); n == 0 || order[n-1] != off {
			order = append(order, off)
		}
		return nil
	})
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Convert: %v (equal %v)", err, bytes.Equal(got, raw))
	}
	var want []int64
	for _, e := range m.Extents { // in host order
		want = append(want, e.Guest)
	}
	if !slices.Equal(order, want) {
		t.Fatalf("emitted at %v…, want the file's order %v…", order[:min(12, len(order))], want[:min(12, len(want))])
	}
}
