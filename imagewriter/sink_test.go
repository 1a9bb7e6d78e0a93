package imagewriter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
)

// memTarget is a target in memory that records the order of its writes
// and zero requests; zeroFail makes ZeroRange fail from that call on.
type memTarget struct {
	mu       sync.Mutex
	b        []byte
	ops      []memOp
	zeroFail int // 1-based index of the first failing ZeroRange; 0: none
	zeros    int
	// zeroGate, when set, holds every ZeroRange until it is closed.
	zeroGate chan struct{}
}

type memOp struct {
	zero   bool
	off, n int64
}

func newMemTarget(size int) *memTarget {
	return &memTarget{b: bytes.Repeat([]byte{0xee}, size)}
}

func (m *memTarget) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("%w: write past the end", ErrTooLarge)
	}
	copy(m.b[off:], p)
	m.ops = append(m.ops, memOp{off: off, n: int64(len(p))})
	return len(p), nil
}

func (m *memTarget) ZeroRange(off, n int64) error {
	if m.zeroGate != nil {
		<-m.zeroGate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.zeros++
	if m.zeroFail > 0 && m.zeros >= m.zeroFail {
		return fmt.Errorf("%w: mem [%d, %d): device refused to zero", ErrTarget, off, off+n)
	}
	clear(m.b[off : off+n])
	m.ops = append(m.ops, memOp{zero: true, off: off, n: n})
	return nil
}

func (m *memTarget) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.b[off:]), nil
}
func (m *memTarget) ReadDirectAt(p []byte, off int64) (int, error) { return m.ReadAt(p, off) }
func (m *memTarget) ZeroOffload() bool                             { return true }
func (m *memTarget) Size() int64                                   { return int64(len(m.b)) }
func (m *memTarget) SectorSize() int64                             { return 512 }
func (m *memTarget) Flush() error                                  { return nil }
func (m *memTarget) SyncPartitions([]kernelPartition) error        { return nil }
func (m *memTarget) PartitionPath(int) string                      { return "" }
func (m *memTarget) File() *os.File                                { return nil }
func (m *memTarget) IsBlock() bool                                 { return false }
func (m *memTarget) Close() error                                  { return nil }
func (m *memTarget) Path() string                                  { return "mem" }

func (m *memTarget) zeroOps() []memOp {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []memOp
	for _, o := range m.ops {
		if o.zero {
			out = append(out, o)
		}
	}
	return out
}

// feed sends image to s in chunks of size bytes, with their zero runs
// found as the producing stage finds them, and returns drain's error.
func feed(t *testing.T, s *sink, image []byte, size int) error {
	t.Helper()
	ch := make(chan *chunk, 4)
	errc := make(chan error, 1)
	go func() { errc <- s.drain(context.Background(), ch) }()
	for off := 0; off < len(image); off += size {
		c := &chunk{buf: alignedBuffer(size), off: int64(off)}
		c.n = copy(c.buf, image[off:])
		c.zeroRuns = findZeroRuns(c.data(), nil)
		c.refs.Store(1)
		select {
		case ch <- c:
		case err := <-errc:
			return err
		}
	}
	close(ch)
	return <-errc
}

// zeroed is an image of 1 MiB of data, 40 MiB of zeros spread over many
// chunks, 1 MiB of data, and a 9 MiB zero tail.
func zeroed() []byte {
	img := make([]byte, 51<<20)
	for _, r := range [][2]int{{0, 1 << 20}, {41 << 20, 42 << 20}} {
		for i := r[0]; i < r[1]; i++ {
			img[i] = byte(i*7 + 1)
		}
	}
	return img
}

func TestFindZeroRuns(t *testing.T) {
	data := make([]byte, 2<<20)
	data[0] = 1                       // block 0 holds data
	data[5*zeroBlock+3] = 1           // a 4-block run [1, 5): long enough
	data[7*zeroBlock] = 1             // [6, 7) is one block: too short
	data[len(data)-zeroBlock+100] = 1 // the last block holds data
	want := []zeroRun{{zeroBlock, 5 * zeroBlock}, {8 * zeroBlock, len(data) - zeroBlock}}
	if got := findZeroRuns(data, nil); !slices.Equal(got, want) {
		t.Errorf("findZeroRuns = %v, want %v", got, want)
	}
	if got := findZeroRuns(make([]byte, minZeroRun-1), nil); len(got) != 0 {
		t.Errorf("a chunk shorter than a run has runs %v", got)
	}
	// A chunk ending in a partial block of zeros: the run reaches its end.
	tail := make([]byte, minZeroRun+zeroBlock+100)
	tail[0] = 1
	if got := findZeroRuns(tail, nil); !slices.Equal(got, []zeroRun{{zeroBlock, len(tail)}}) {
		t.Errorf("partial last block: %v", got)
	}
}

func TestSinkMergesZeroRunsAcrossChunks(t *testing.T) {
	img := zeroed()
	m := newMemTarget(len(img) + 1<<20)
	s := newSink(m, 0, int64(len(m.b)), true, true)
	if err := feed(t, s, img, 4<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.b[:len(img)], img) {
		t.Fatal("the target holds other bytes than the image")
	}
	// Two runs, each one request, whatever the chunks they spanned.
	want := []memOp{{zero: true, off: 1 << 20, n: 40 << 20}, {zero: true, off: 42 << 20, n: 9 << 20}}
	if got := m.zeroOps(); !slices.Equal(got, want) {
		t.Errorf("zero requests %v, want %v", got, want)
	}
	if s.skipped.Load() != 49<<20 || s.written.Load() != 2<<20 {
		t.Errorf("skipped %d, written %d", s.skipped.Load(), s.written.Load())
	}
	n, err := s.readBack(context.Background(), alignedBuffer(1<<20))
	if err != nil || n != int64(len(img)) {
		t.Errorf("read-back %d bytes, %v", n, err)
	}
}

func TestSinkSplitsLongZeroRuns(t *testing.T) {
	m := newMemTarget(maxZeroRequest + 8<<20)
	s := newSink(m, 0, int64(len(m.b)), true, false)
	ch := make(chan *chunk, 2)
	ch <- &chunk{off: 4 << 20, zero: maxZeroRequest + 1<<20}
	ch <- &chunk{off: 4<<20 + maxZeroRequest + 1<<20, zero: 1 << 20}
	close(ch)
	if err := s.drain(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	for _, o := range m.zeroOps() {
		if o.n > maxZeroRequest {
			t.Errorf("a zero request of %d bytes, over %d", o.n, maxZeroRequest)
		}
	}
	if s.skipped.Load() != maxZeroRequest+2<<20 || !bytes.Equal(m.b[4<<20:4<<20+maxZeroRequest+2<<20], make([]byte, maxZeroRequest+2<<20)) {
		t.Errorf("skipped %d", s.skipped.Load())
	}
}

func TestSinkZeroesUnalignedRunsInOrder(t *testing.T) {
	// An image whose end is not page-aligned ends in a zero run that is
	// not either: it must be zeroed after everything before it is on the
	// device, never beside a write that may share its page.
	img := zeroed()[:45<<20+3000]
	m := newMemTarget(len(img) + 1<<20)
	m.zeroGate = make(chan struct{})
	s := newSink(m, 0, int64(len(m.b)), true, false)
	done := make(chan error, 1)
	go func() { done <- feed(t, s, img, 4<<20) }()
	close(m.zeroGate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ops := m.zeroOps()
	want := []memOp{{zero: true, off: 1 << 20, n: 40 << 20}, {zero: true, off: 42 << 20, n: 2 << 20}, {zero: true, off: 44 << 20, n: 1<<20 + 3000}}
	if !slices.Equal(ops, want) {
		t.Fatalf("zero requests %v, want %v", ops, want)
	}
	m.mu.Lock()
	last := m.ops[len(m.ops)-1]
	m.mu.Unlock()
	if last != ops[2] {
		t.Errorf("the unaligned zero run was not the last request: %v", m.ops)
	}
	if !bytes.Equal(m.b[:len(img)], img) {
		t.Fatal("the target holds other bytes than the image")
	}
}

func TestSinkZeroErrorEndsTheWrite(t *testing.T) {
	img := zeroed()
	for _, fail := range []int{1, 2} {
		m := newMemTarget(len(img))
		m.zeroFail = fail
		s := newSink(m, 0, int64(len(m.b)), true, false)
		err := feed(t, s, img, 4<<20)
		if !errors.Is(err, ErrTarget) || !bytes.Contains([]byte(err.Error()), []byte("refused to zero")) {
			t.Errorf("zero request %d failing: drain = %v", fail, err)
		}
	}
}

func TestSinkZeroesOnlyWhereTheDeviceOffloads(t *testing.T) {
	img := zeroed()
	m := newMemTarget(len(img))
	s := newSink(m, 0, int64(len(m.b)), false, false) // NoZeroSkip
	if err := feed(t, s, img, 4<<20); err != nil {
		t.Fatal(err)
	}
	if ops := m.zeroOps(); len(ops) != 0 || s.written.Load() != int64(len(img)) || !bytes.Equal(m.b, img) {
		t.Errorf("zero requests %v, written %d", ops, s.written.Load())
	}
}
