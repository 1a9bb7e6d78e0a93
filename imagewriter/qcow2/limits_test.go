package qcow2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rivetmetal/rivet/internal/hostileimage"
)

// countingReader is a ReaderAt that records every read, as a server sees
// range requests.
type countingReader struct {
	r     io.ReaderAt
	mu    sync.Mutex
	reads []Range
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	c.reads = append(c.reads, Range{off, int64(len(p))})
	c.mu.Unlock()
	return c.r.ReadAt(p, off)
}

// stream runs Stream over file and returns the guest disk it wrote (holes
// zeroed over a disk prefilled with 0xee). When it succeeds, what it says
// it found must be what the file's map says.
func stream(t testing.TB, file []byte, size int64, lim Limits) ([]byte, error) {
	t.Helper()
	out := bytes.Repeat([]byte{0xee}, int(size))
	st, err := Stream(context.Background(), bytes.NewReader(file), int64(len(file)), lim,
		func(p []byte, off int64) error { copy(out[off:], p); return nil },
		func(off, n int64) error { clear(out[off : off+n]); return nil })
	if err != nil {
		return out, err
	}
	if st.Read != int64(len(file)) || st.Header == nil {
		t.Fatalf("Stream read %d of %d bytes (header %v)", st.Read, len(file), st.Header)
	}
	if m, merr := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), lim); merr == nil &&
		(st.DataBytes != m.DataBytes || st.CompressedBytes != m.CompressedBytes) {
		t.Errorf("Stream found %d data bytes, %d compressed; the map says %d, %d", st.DataBytes, st.CompressedBytes, m.DataBytes, m.CompressedBytes)
	}
	return out, nil
}

func TestL1PrefixOnly(t *testing.T) {
	// The header declares 2^20 L1 entries (8 MiB) for a 4 MiB disk that
	// needs one: only that entry is read.
	q := hostileimage.QCOW2{ClusterBits: 16, Size: 4 << 20, L1Entries: 1 << 20, Data: map[int64][]byte{3: randBytes(65536)}}
	file := q.Build()
	cr := &countingReader{r: bytes.NewReader(file)}
	m, err := ReadMap(context.Background(), cr, int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var read int64
	for _, r := range cr.reads {
		read += r.Len
	}
	if read > 256<<10 {
		t.Fatalf("read %d bytes of tables; the L1 prefix the disk needs is 8 bytes", read)
	}
	got := make([]byte, q.Size)
	if _, err := m.Convert(context.Background(), bytes.NewReader(file), func(p []byte, off int64) error { copy(got[off:], p); return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, q.Raw()) {
		t.Fatal("converted disk differs")
	}
	if got, err := stream(t, file, q.Size, Limits{}); err != nil || !bytes.Equal(got, q.Raw()) {
		t.Fatalf("Stream: %v", err)
	}
}

func TestSharedL2TableReadOnceAndWritten(t *testing.T) {
	// 4 KiB clusters: one L2 table maps 2 MiB; 64 L1 entries all point at
	// the same table, which maps three clusters.
	q := hostileimage.QCOW2{ClusterBits: 12, Size: 128 << 20, SharedL2: true,
		Data: map[int64][]byte{0: randBytes(4096), 1: randBytes(4096), 300: randBytes(4096)}}
	file := q.Build()
	cr := &countingReader{r: bytes.NewReader(file)}
	m, err := ReadMap(context.Background(), cr, int64(len(file)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.reads) != 3 { // header, L1, the one L2 table
		t.Fatalf("%d reads %v; want 3 (header, L1, the shared L2 table once)", len(cr.reads), cr.reads)
	}
	got := make([]byte, q.Size)
	if _, err := m.Convert(context.Background(), bytes.NewReader(file), func(p []byte, off int64) error { copy(got[off:], p); return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, q.Raw()) {
		t.Fatal("converted disk differs")
	}
	if got, err := stream(t, file, q.Size, Limits{}); err != nil || !bytes.Equal(got, q.Raw()) {
		t.Fatalf("Stream: %v", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	// 512-byte clusters: every 32 KiB of disk needs an L1 entry; a 1 GiB
	// disk needs 32768 (512 KiB of L1 budget).
	q := hostileimage.QCOW2{ClusterBits: 9, Size: 1 << 30, Data: map[int64][]byte{0: randBytes(512)}}
	file := q.Build()
	for name, run := range map[string]func() error{
		"ReadMap": func() error {
			_, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{MaxMemory: 256 << 10})
			return err
		},
		"Stream": func() error { _, err := stream(t, file, 1<<20, Limits{MaxMemory: 256 << 10}); return err },
	} {
		if err := run(); !errors.Is(err, ErrMemoryLimit) {
			t.Errorf("%s under 256 KiB: %v, want ErrMemoryLimit", name, err)
		}
	}
	// Extents: an L2 table shared by many L1 entries, full of clusters
	// that do not coalesce, multiplies them.
	data := map[int64][]byte{}
	for g := int64(0); g < 64; g += 2 {
		data[g] = randBytes(512)
	}
	q = hostileimage.QCOW2{ClusterBits: 9, Size: 64 << 20, SharedL2: true, Data: data}
	file = q.Build()
	if _, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{MaxMemory: 4 << 20}); !errors.Is(err, ErrMemoryLimit) {
		t.Errorf("ReadMap: 2048 × 32 extents under 4 MiB: %v", err)
	}
	if _, err := stream(t, file, q.Size, Limits{MaxMemory: 4 << 20}); !errors.Is(err, ErrMemoryLimit) {
		t.Errorf("Stream: 2048 × 32 extents under 4 MiB: %v", err)
	}
	if got, err := stream(t, file, q.Size, Limits{}); err != nil || !bytes.Equal(got, q.Raw()) {
		t.Errorf("Stream within the default limit: %v", err)
	}
}

func TestScatteredTablesBoundReads(t *testing.T) {
	// 512 L2 tables, each 128 KiB from the next: no two share a read.
	data := map[int64][]byte{}
	for i := int64(0); i < 512; i++ {
		data[i*512] = randBytes(4096) // first cluster of each 2 MiB span
	}
	q := hostileimage.QCOW2{ClusterBits: 12, Size: 1 << 30, L2Gap: 32, Data: data}
	file := q.Build()
	cr := &countingReader{r: bytes.NewReader(file)}
	_, err := ReadMap(context.Background(), cr, int64(len(file)), Limits{MaxReads: 256})
	if !errors.Is(err, ErrTooManyReads) {
		t.Fatalf("ReadMap with MaxReads 256: %v", err)
	}
	if len(cr.reads) > 256 {
		t.Fatalf("%d reads made before refusing; the limit is 256", len(cr.reads))
	}
	// Stream needs no random read at all.
	if got, err := stream(t, file, q.Size, Limits{}); err != nil || !bytes.Equal(got, q.Raw()) {
		t.Fatalf("Stream: %v", err)
	}
	// Close tables are read together.
	q.L2Gap = 0
	file = q.Build()
	cr = &countingReader{r: bytes.NewReader(file)}
	if _, err := ReadMap(context.Background(), cr, int64(len(file)), Limits{MaxReads: 256}); err != nil {
		t.Fatal(err)
	}
	if len(cr.reads) > 8 {
		t.Fatalf("%d reads for 512 adjacent 4 KiB tables; want them merged into 1 MiB reads", len(cr.reads))
	}
}

func TestStreamRefusesDataBeforeTables(t *testing.T) {
	// Data close before its table is still in the window; 6 MiB of it
	// is not.
	data := map[int64][]byte{}
	for g := int64(0); g < 100; g++ {
		data[g] = randBytes(65536)
	}
	q := hostileimage.QCOW2{ClusterBits: 16, Size: 8 << 20, DataFirst: true, Data: data}
	_, err := stream(t, q.Build(), q.Size, Limits{})
	if !errors.Is(err, ErrNotStreamable) {
		t.Fatalf("Stream: %v, want ErrNotStreamable", err)
	}
	// The random-access path handles it.
	got, _, err := convert(t, q.Build(), q.Size)
	if err != nil || !bytes.Equal(got, q.Raw()) {
		t.Fatalf("ReadMap+Convert: %v", err)
	}
}

// TestStreamMatchesConvert converts synthetic and qemu-img images both
// ways and compares.
func TestStreamMatchesConvert(t *testing.T) {
	text := bytes.Repeat([]byte("compressible cluster "), 4000)
	synths := []synth{
		{clusterBits: 16, size: 5<<20 + 4096, data: map[int64][]byte{0: randBytes(65536), 1: randBytes(100), 7: randBytes(65536), 80: randBytes(4096)}},
		{clusterBits: 16, size: 2 << 20, data: map[int64][]byte{0: text[:65536], 1: text[5:65541], 5: randBytes(65536), 9: text[:65536]}, compressed: map[int64]bool{0: true, 1: true, 9: true}},
		{clusterBits: 16, size: 2 << 20, zstd: true, data: map[int64][]byte{3: text[:65536], 4: text[7:65543]}, compressed: map[int64]bool{3: true, 4: true}},
		{clusterBits: 9, size: 64*512 + 300, data: map[int64][]byte{0: randBytes(512), 63: randBytes(512), 64: randBytes(300)}},
		{clusterBits: 16, size: 1 << 20, zeroFlag: 3, data: map[int64][]byte{1: randBytes(65536)}},
	}
	for i, s := range synths {
		file, raw := s.build(t)
		got, err := stream(t, file, s.size, Limits{})
		if err != nil {
			t.Fatalf("synth %d: %v", i, err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("synth %d: streamed disk differs", i)
		}
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatal("RIVET_REQUIRE_E2E=1 but qemu-img (qemu-utils) is not installed")
		}
		t.Skip("qemu-img (qemu-utils) is not installed")
	}
	dir := t.TempDir()
	raw := make([]byte, 24<<20+12345)
	copy(raw[0:], randBytes(3<<20))
	copy(raw[5<<20:], bytes.Repeat([]byte("text that compresses "), 100000))
	copy(raw[20<<20+777:], randBytes(100000))
	rawPath := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-o", "cluster_size=65536"}, {"-o", "compat=0.10"}, {"-o", "cluster_size=4096"}, {"-o", "cluster_size=2097152"},
		{"-c"}, {"-c", "-o", "compression_type=zstd"}, {"-o", "preallocation=metadata"},
	} {
		out := filepath.Join(dir, "img.qcow2")
		os.Remove(out)
		cmd := append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, args...), rawPath, out)
		if b, err := exec.Command("qemu-img", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v: %s", cmd, err, b)
		}
		file, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseHeader(file[:65536])
		if err != nil {
			t.Fatal(err)
		}
		got, err := stream(t, file, int64(h.Size), Limits{})
		if err != nil {
			t.Fatalf("qemu-img %v: Stream: %v", args, err)
		}
		if !bytes.Equal(got[:len(raw)], raw) || !bytes.Equal(got[len(raw):], make([]byte, len(got)-len(raw))) {
			t.Fatalf("qemu-img %v: streamed disk differs", args)
		}
	}
}
