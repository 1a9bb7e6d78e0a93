package qcow2

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/rivetmetal/rivet/internal/hostileimage"
)

// TestSharedL2TableCutByTheDiskEnd maps one L2 table at two L1 entries of
// a disk whose end falls 1000 bytes short of the second span: the two
// runs of the table's clusters start at the same host bytes and differ in
// length. Both ways read those bytes once and give each run its share.
func TestSharedL2TableCutByTheDiskEnd(t *testing.T) {
	data := map[int64][]byte{}
	for g := range int64(512) { // every cluster of the table's 2 MiB span
		data[g] = randBytes(4096)
	}
	q := hostileimage.QCOW2{ClusterBits: 12, Size: 4<<20 - 1000, SharedL2: true, Data: data}
	file := q.Build()
	got, m, err := convert(t, file, q.Size)
	if err != nil || !bytes.Equal(got, q.Raw()) {
		t.Fatalf("Convert: %v (equal %v)", err, err == nil && bytes.Equal(got, q.Raw()))
	}
	if len(m.Extents) != 2 || m.Extents[0].Host != m.Extents[1].Host || m.Extents[0].Len == m.Extents[1].Len {
		t.Fatalf("extents %+v; want two runs from the same host bytes, of different lengths", m.Extents)
	}
	if got, err := stream(t, file, q.Size, Limits{}); err != nil || !bytes.Equal(got, q.Raw()) {
		t.Fatalf("Stream: %v", err)
	}
	// And lent in pieces smaller than the runs.
	l := &lender{b: file, size: 300 << 10}
	k := &keeper{out: make([]byte, q.Size)}
	if _, err := m.ConvertRef(context.Background(), l, k.emit); err != nil {
		t.Fatalf("ConvertRef: %v", err)
	}
	k.done()
	if !bytes.Equal(k.out, q.Raw()) || l.live.Load() != 0 {
		t.Fatalf("ConvertRef of lent pieces: disk equal %v, %d references left", bytes.Equal(k.out, q.Raw()), l.live.Load())
	}
}

// TestMapRefusesARunEndingOutsideTheFile: two clusters of consecutive
// guest and host offsets, mapped by two L2 tables, form one run; the
// file ends inside the second. The map refuses the file as invalid, as
// the stream does, instead of leaving the conversion to find the file
// short (which the writer would report as a truncated download).
func TestMapRefusesARunEndingOutsideTheFile(t *testing.T) {
	q := hostileimage.QCOW2{ClusterBits: 12, Size: 4 << 20, Data: map[int64][]byte{511: randBytes(4096), 512: randBytes(4096)}}
	whole := q.Build()
	file := whole[:len(whole)-4096+512] // the second cluster's first sector only
	if _, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ReadMap = %v; want ErrInvalid", err)
	}
	if _, err := stream(t, file, q.Size, Limits{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Stream = %v; want ErrInvalid", err)
	}
	// The whole file still converts, its two clusters as one run.
	got, m, err := convert(t, whole, q.Size)
	if err != nil || !bytes.Equal(got, q.Raw()) || len(m.Extents) != 1 {
		t.Fatalf("Convert of the whole file: %v, extents %+v", err, m)
	}
}

// TestConvertStretchedCompressedLengths converts images whose compressed
// clusters each claim two clusters' worth of sectors, reaching over the
// clusters after them and across the boundaries of the pieces the input
// comes in: the window keeps what the next cluster needs, both ways, read
// or lent, with zlib and zstd.
func TestConvertStretchedCompressedLengths(t *testing.T) {
	text := bytes.Repeat([]byte("half of this cluster compresses "), 2100)
	for _, zstd := range []bool{false, true} {
		s := synth{clusterBits: 16, size: 80 << 16, zstd: zstd, stretch: true, data: map[int64][]byte{}, compressed: map[int64]bool{}}
		for g := range int64(72) {
			d := append(randBytes(32<<10), text[:32<<10]...) // about 32 KiB compressed
			s.data[g], s.compressed[g] = d, g%9 != 4
		}
		file, raw := s.build(t)
		if len(file) < 2<<20 {
			t.Fatalf("a %d-byte file spans fewer than two pieces", len(file))
		}
		got, m, err := convert(t, file, s.size)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("zstd %v: Convert: %v (equal %v)", zstd, err, err == nil && bytes.Equal(got, raw))
		}
		stretched := 0
		for _, e := range m.Extents {
			if e.Compressed && e.Len > 3*e.GuestLen/2 {
				stretched++
			}
		}
		if stretched < 50 {
			t.Fatalf("only %d compressed clusters claim more than they hold", stretched)
		}
		if got, err := stream(t, file, s.size, Limits{}); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("zstd %v: Stream: %v", zstd, err)
		}
		for _, piece := range []int{64 << 10, 1 << 20, 4 << 20} {
			l := &lender{b: file, size: piece}
			k := &keeper{out: make([]byte, s.size)}
			if _, err := m.ConvertRef(context.Background(), l, k.emit); err != nil {
				t.Fatalf("zstd %v, %d-byte pieces: ConvertRef: %v", zstd, piece, err)
			}
			k.done()
			if !bytes.Equal(k.out, raw) || l.live.Load() != 0 {
				t.Fatalf("zstd %v, %d-byte pieces: disk equal %v, %d references left", zstd, piece, bytes.Equal(k.out, raw), l.live.Load())
			}
		}
	}
}

// TestInflaterKeepsSharedRunsByReference: a compressed cluster shared by
// thousands of guest clusters costs a job no copy of their extents (the
// map already holds them, charged to its memory limit).
func TestInflaterKeepsSharedRunsByReference(t *testing.T) {
	text := bytes.Repeat([]byte("one cluster, mapped everywhere "), 3000)
	s := synth{clusterBits: 9, size: 4096 << 9, data: map[int64][]byte{0: text[:512]}, compressed: map[int64]bool{0: true},
		alias: map[int64]int64{}}
	for g := int64(1); g < 4096; g++ {
		s.alias[g] = 0
	}
	file, raw := s.build(t)
	m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	first := -1
	for i, e := range m.Extents {
		if e.Compressed {
			first = i
			break
		}
	}
	if first < 0 || len(m.Extents)-first != 4096 {
		t.Fatalf("%d extents from %d; want 4096 sharing one compressed cluster", len(m.Extents), first)
	}
	got := make([]byte, s.size)
	f := newInflater(m.Header.CompressionType, 512, func(p []byte, off int64, _ Buffer) error { copy(got[off:], p); return nil })
	defer f.close()
	w := newWindow(bytes.NewReader(file), 1<<20)
	defer w.close()
	run := m.Extents[first:]
	if err := f.add(w, run); err != nil {
		t.Fatal(err)
	}
	if c := f.cur.clusters[0]; len(c.run) != len(run) || &c.run[0] != &run[0] {
		t.Fatal("the job holds a copy of the shared cluster's extents")
	}
	if err := f.flush(); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("flush: %v (equal %v)", err, bytes.Equal(got, raw))
	}
}
