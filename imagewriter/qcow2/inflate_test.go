package qcow2

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// manyCompressed is a synthetic image of n compressed 64 KiB clusters
// (every third one stored uncompressed), enough for many jobs of the
// inflater, with the disk it describes.
func manyCompressed(t *testing.T, n int, zstd bool) (file, raw []byte, s synth) {
	t.Helper()
	text := bytes.Repeat([]byte("a line of a cloud image that compresses well\n"), 3000)
	s = synth{clusterBits: 16, size: int64(n+7) << 16, zstd: zstd, data: map[int64][]byte{}, compressed: map[int64]bool{}}
	for i := range n {
		g := int64(i + 3)
		d := bytes.Clone(text[i%40 : i%40+65536])
		copy(d, randBytes(64)) // no two clusters alike
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
	for _, procs := range []int{1, 4} {
		for _, zstd := range []bool{false, true} {
			prev := runtime.GOMAXPROCS(procs)
			file, raw, s := manyCompressed(t, 300, zstd)
			got, _, err := convert(t, file, s.size)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("GOMAXPROCS %d, zstd %v: Convert: %v (equal %v)", procs, zstd, err, bytes.Equal(got, raw))
			}
			got, err = stream(t, file, s.size, Limits{})
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("GOMAXPROCS %d, zstd %v: Stream: %v (equal %v)", procs, zstd, err, bytes.Equal(got, raw))
			}
			runtime.GOMAXPROCS(prev)
		}
	}
}

// TestInflaterDecodesOnSeveralWorkers holds each worker at the start of
// its job until another worker has started one too: the conversion
// finishes only if two jobs decode at once.
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
	before := runtime.NumGoroutine()
	_, _, err = convert(t, corrupt, s.size)
	if !errors.Is(err, ErrInvalid) || !bytes.Contains([]byte(err.Error()), []byte("compressed cluster at host")) {
		t.Fatalf("Convert of a corrupt cluster: %v", err)
	}
	if _, err = stream(t, corrupt, s.size, Limits{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Stream of a corrupt cluster: %v", err)
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
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after the conversions, %d before", n, before)
	}
}

// TestInflaterBoundsItsQueue feeds an inflater faster than its workers
// decode: the jobs it holds (queued, being filled, kept for reuse) reach
// its queue bound and never pass it (the job being filled is made once
// the oldest has been emitted), and the bound keeps their buffers
// within inflateMaxBytes whatever the cluster size and the cores.
func TestInflaterBoundsItsQueue(t *testing.T) {
	prev := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(prev)
	file, raw, s := manyCompressed(t, 300, false)
	m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	inflateHook = func() { time.Sleep(2 * time.Millisecond) }
	defer func() { inflateHook = nil }()
	got := make([]byte, s.size)
	f := newInflater(CompressionZlib, 64<<10, func(p []byte, off int64, _ Buffer) error { copy(got[off:], p); return nil })
	defer f.close()
	w := newWindow(bytes.NewReader(file), 256<<10)
	defer w.close()
	held := 0
	for _, e := range m.Extents {
		if !e.Compressed {
			copy(got[e.Guest:], file[e.Host:e.Host+e.Len])
			continue
		}
		if err := f.add(w, []Extent{e}); err != nil {
			t.Fatal(err)
		}
		n := len(f.queue) + len(f.free)
		if f.cur != nil {
			n++
		}
		held = max(held, n)
	}
	if err := f.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, raw) {
		t.Fatal("the inflater's output differs from the disk")
	}
	if held != f.maxQueue {
		t.Fatalf("the inflater held up to %d jobs, want its queue bound %d", held, f.maxQueue)
	}
	for _, cs := range []int{512, 64 << 10, 2 << 20} {
		for _, procs := range []int{1, 2, 64} {
			runtime.GOMAXPROCS(procs)
			g := newInflater(CompressionZlib, cs, nil)
			if job := 2 * (inflateJobBytes + cs); g.workers < 1 || g.workers > min(procs, inflateMaxWorkers) || g.maxQueue < 2 || g.maxQueue*job > inflateMaxBytes {
				t.Fatalf("cluster %d, %d procs: %d workers, queue %d of %d-byte jobs", cs, procs, g.workers, g.maxQueue, job)
			}
		}
	}
}
