package qcow2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

// lender is a PieceReader over a byte slice that hands out pieces of a
// fixed size, each in a buffer of its own whose references it counts.
type lender struct {
	b     []byte
	size  int
	off   int
	live  atomic.Int64 // references not yet released, over all buffers
	lent  int
	reads int // plain Reads (must stay 0: lent input is read by piece)
}

type lentBuf struct {
	l    *lender
	refs atomic.Int64
}

func (b *lentBuf) Retain() { b.refs.Add(1); b.l.live.Add(1) }
func (b *lentBuf) Release() {
	if b.refs.Add(-1) < 0 {
		panic("released more often than retained")
	}
	b.l.live.Add(-1)
}

func (l *lender) ReadPiece() ([]byte, Buffer, error) {
	if l.off >= len(l.b) {
		return nil, nil, io.EOF
	}
	n := min(l.size, len(l.b)-l.off)
	p := bytes.Clone(l.b[l.off : l.off+n]) // a buffer of its own
	l.off += n
	buf := &lentBuf{l: l}
	buf.Retain()
	l.lent++
	return p, buf, nil
}

func (l *lender) Read(p []byte) (int, error) { l.reads++; return 0, errors.New("lender: Read called") }

// keeper is an EmitRefFunc that keeps lent bytes by reference, as the
// image writer does, and copies the rest; check compares the disk.
type keeper struct {
	kept []keptRun
	out  []byte
	ref  int64 // bytes received by reference
}

type keptRun struct {
	p   []byte
	off int64
	buf Buffer
}

func (k *keeper) emit(p []byte, off int64, buf Buffer) error {
	if buf == nil {
		copy(k.out[off:], p)
		return nil
	}
	buf.Retain()
	k.kept = append(k.kept, keptRun{p, off, buf})
	k.ref += int64(len(p))
	return nil
}

// done writes the kept runs (still valid: they were retained) and
// releases them.
func (k *keeper) done() {
	for _, r := range k.kept {
		copy(k.out[r.off:], r.p)
		r.buf.Release()
	}
	k.kept = nil
}

func TestConvertRefLendsDataClusters(t *testing.T) {
	text := bytes.Repeat([]byte("compressible cluster "), 4000)
	s := synth{clusterBits: 16, size: 6 << 20, data: map[int64][]byte{0: randBytes(65536), 1: randBytes(65536), 2: randBytes(65536),
		9: text[:65536], 40: randBytes(300), 41: randBytes(65536)}, compressed: map[int64]bool{9: true}}
	file, raw := s.build(t)
	m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, piece := range []int{4096, 100000, 1 << 20} {
		l := &lender{b: file, size: piece}
		k := &keeper{out: make([]byte, s.size)}
		n, err := m.ConvertRef(context.Background(), l, k.emit)
		if err != nil || n != int64(len(file)) {
			t.Fatalf("pieces of %d: ConvertRef = %d, %v", piece, n, err)
		}
		if l.reads != 0 {
			t.Errorf("pieces of %d: %d plain reads of a PieceReader", piece, l.reads)
		}
		// Only the references the emit function took are left.
		if live := l.live.Load(); live != int64(len(k.kept)) {
			t.Errorf("pieces of %d: %d references live after ConvertRef, the emit function holds %d", piece, live, len(k.kept))
		}
		if k.ref == 0 {
			t.Errorf("pieces of %d: no data cluster came by reference", piece)
		}
		k.done()
		if live := l.live.Load(); live != 0 {
			t.Errorf("pieces of %d: %d references never released", piece, live)
		}
		if !bytes.Equal(k.out, raw) {
			t.Fatalf("pieces of %d: converted disk differs", piece)
		}
	}
}

func TestConvertRefReleasesOnFailure(t *testing.T) {
	s := synth{clusterBits: 16, size: 2 << 20, data: map[int64][]byte{0: randBytes(65536), 5: randBytes(65536)}}
	file, _ := s.build(t)
	m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// A truncated stream, and an emit function that fails.
	l := &lender{b: file[:len(file)-100], size: 8192}
	k := &keeper{out: make([]byte, s.size)}
	if _, err := m.ConvertRef(context.Background(), l, k.emit); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
	k.done()
	if live := l.live.Load(); live != 0 {
		t.Errorf("truncated: %d references never released", live)
	}
	l = &lender{b: file, size: 8192}
	boom := errors.New("disk gone")
	if _, err := m.ConvertRef(context.Background(), l, func([]byte, int64, Buffer) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing emit: %v", err)
	}
	if live := l.live.Load(); live != 0 {
		t.Errorf("failing emit: %d references never released", live)
	}
}

func TestStreamRefLendsDataClusters(t *testing.T) {
	s := synth{clusterBits: 16, size: 4 << 20, data: map[int64][]byte{0: randBytes(65536), 1: randBytes(65536), 30: randBytes(65536)}}
	file, raw := s.build(t)
	l := &lender{b: file, size: 50000}
	k := &keeper{out: make([]byte, s.size)}
	var zeroed int64
	st, err := StreamRef(context.Background(), l, int64(len(file)), Limits{}, k.emit, func(off, n int64) error {
		zeroed += n
		return nil
	})
	if err != nil || st.Read != int64(len(file)) || st.DataBytes != 3*65536 || st.CompressedBytes != 0 {
		t.Fatalf("StreamRef = %+v, %v", st, err)
	}
	if k.ref == 0 {
		t.Error("no data cluster came by reference")
	}
	k.done()
	if live := l.live.Load(); live != 0 {
		t.Errorf("%d references never released", live)
	}
	if !bytes.Equal(k.out, raw) || zeroed != s.size-3*65536 {
		t.Fatalf("streamed disk differs (zeroed %d)", zeroed)
	}
}
