package qcow2

import (
	"bytes"
	"context"
	"testing"
)

// FuzzParseHeader: any bytes either parse into a header that satisfies the
// invariants the rest of the package relies on, or fail without panicking.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []synth{
		{clusterBits: 16, size: 1 << 20},
		{clusterBits: 9, size: 64*512 + 1, zstd: true},
	} {
		file, _ := s.build(f)
		f.Add(file[:min(len(file), 4096)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		if h.ClusterBits < 9 || h.ClusterBits > 21 || h.BackingFileOffset != 0 || h.CryptMethod != 0 ||
			uint64(h.L1Size)*8 > MaxL1Bytes || h.Size > MaxVirtualSize {
			t.Fatalf("accepted header breaks an invariant: %+v", h)
		}
	})
}

// FuzzReadMap: a whole (small) file goes through ReadMap, Holes and
// Convert; every emitted write must lie inside the virtual disk.
func FuzzReadMap(f *testing.F) {
	text := bytes.Repeat([]byte("abc"), 30000)
	for _, s := range []synth{
		{clusterBits: 9, size: 64*512 + 300, data: map[int64][]byte{0: randBytes(512), 64: randBytes(300)}},
		{clusterBits: 12, size: 1 << 20, dataFirst: true, data: map[int64][]byte{1: text[:4096], 2: text[:4096]}, compressed: map[int64]bool{1: true}},
		{clusterBits: 12, size: 1 << 20, zstd: true, data: map[int64][]byte{3: text[:4096]}, compressed: map[int64]bool{3: true}},
	} {
		file, _ := s.build(f)
		f.Add(file)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{Parallel: 2})
		if err != nil {
			return
		}
		size := int64(m.Header.Size)
		var holes int64
		for _, h := range m.Holes() {
			if h.Off < 0 || h.Len <= 0 || h.Off+h.Len > size {
				t.Fatalf("hole %+v outside the %d-byte disk", h, size)
			}
			holes += h.Len
		}
		if holes+m.DataBytes != size {
			t.Fatalf("holes %d + data %d != size %d", holes, m.DataBytes, size)
		}
		_, _ = m.Convert(context.Background(), bytes.NewReader(file), func(p []byte, off int64) error {
			if off < 0 || off+int64(len(p)) > size {
				t.Fatalf("write of %d bytes at %d outside the %d-byte disk", len(p), off, size)
			}
			return nil
		})
	})
}
