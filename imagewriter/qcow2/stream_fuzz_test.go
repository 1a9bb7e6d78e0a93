package qcow2

import (
	"bytes"
	"context"
	"testing"

	"github.com/rivetmetal/rivet/internal/hostileimage"
)

// FuzzStream converts arbitrary (small) files with Stream and, where it
// succeeds, with ReadMap and Convert too: every write lies inside the
// virtual disk, and when both succeed they produce the same disk.
func FuzzStream(f *testing.F) {
	text := bytes.Repeat([]byte("abc"), 30000)
	for _, s := range []synth{
		{clusterBits: 9, size: 64*512 + 300, data: map[int64][]byte{0: randBytes(512), 64: randBytes(300)}},
		{clusterBits: 12, size: 1 << 20, data: map[int64][]byte{1: text[:4096], 2: text[:4096]}, compressed: map[int64]bool{1: true}},
		{clusterBits: 12, size: 1 << 20, zstd: true, data: map[int64][]byte{3: text[:4096]}, compressed: map[int64]bool{3: true}},
	} {
		file, _ := s.build(f)
		f.Add(file)
	}
	f.Add(hostileimage.QCOW2{ClusterBits: 9, Size: 1 << 20, SharedL2: true, Data: map[int64][]byte{0: []byte("a"), 3: []byte("b")}}.Build())
	f.Add(hostileimage.QCOW2{ClusterBits: 9, Size: 256 << 10, L2Gap: 3, L1Entries: 40, Data: map[int64][]byte{70: []byte("c")}}.Build())
	f.Fuzz(func(t *testing.T, file []byte) {
		h, err := ParseHeader(file)
		if err != nil || h.Size > 8<<20 {
			return // only disks the test can hold
		}
		size := int64(h.Size)
		streamed := make([]byte, size)
		check := func(off, n int64) {
			if off < 0 || n < 0 || off+n > size {
				t.Fatalf("write of %d bytes at %d outside the %d-byte disk", n, off, size)
			}
		}
		st, serr := Stream(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{MaxMemory: 4 << 20},
			func(p []byte, off int64) error { check(off, int64(len(p))); copy(streamed[off:], p); return nil },
			func(off, n int64) error { check(off, n); clear(streamed[off : off+n]); return nil })
		m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{MaxMemory: 4 << 20})
		if err != nil {
			return
		}
		mapped := make([]byte, size)
		_, cerr := m.Convert(context.Background(), bytes.NewReader(file), func(p []byte, off int64) error {
			check(off, int64(len(p)))
			copy(mapped[off:], p)
			return nil
		})
		if serr == nil && cerr == nil && !bytes.Equal(streamed, mapped) {
			t.Fatal("Stream and ReadMap+Convert disagree")
		}
		if serr == nil && (st.DataBytes != m.DataBytes || st.CompressedBytes != m.CompressedBytes) {
			t.Fatalf("Stream found %d data bytes, %d compressed; the map %d, %d", st.DataBytes, st.CompressedBytes, m.DataBytes, m.CompressedBytes)
		}
	})
}
