package qcow2

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// synth describes a hand-built image: the guest clusters that hold data,
// which of them are compressed, and where the data sits relative to its L2
// table (before it, to test out-of-order layouts).
type synth struct {
	clusterBits uint32
	size        int64
	data        map[int64][]byte // guest cluster index → contents
	compressed  map[int64]bool
	zstd        bool
	dataFirst   bool // place data clusters before the L1/L2 tables
	zeroFlag    int64
	// alias maps guest clusters to a cluster of data whose L2 entry
	// they share (deduplicated clusters: one host range, several guest
	// ones).
	alias map[int64]int64
	// stretch makes every compressed cluster's L2 entry claim the most
	// sectors it can hold (two clusters' worth), over the clusters after
	// it, as a writer that rounds its lengths up generously may.
	stretch bool
}

// build returns the qcow2 file and the raw disk it describes.
func (s synth) build(t testing.TB) (file, raw []byte) {
	t.Helper()
	cs := int64(1) << s.clusterBits
	raw = make([]byte, s.size)
	l2n := cs / 8
	l1n := (s.size + cs*l2n - 1) / (cs * l2n)
	var body bytes.Buffer // data area
	entries := map[int64]uint64{}
	dataStart := int64(0)
	tablesAt := int64(cs) // L1 at cluster 1, L2s after it
	l1Clusters := (l1n*8 + cs - 1) / cs
	l2At := tablesAt + l1Clusters*cs
	tablesEnd := l2At + l1n*cs
	if s.dataFirst {
		dataStart = cs // data from cluster 1, tables after
	} else {
		dataStart = tablesEnd
	}
	idx := make([]int64, 0, len(s.data))
	for g := range s.data {
		idx = append(idx, g)
	}
	// deterministic order: descending guest order, so host order differs
	for i := 0; i < len(idx); i++ {
		for j := i + 1; j < len(idx); j++ {
			if idx[j] > idx[i] {
				idx[i], idx[j] = idx[j], idx[i]
			}
		}
	}
	for _, g := range idx {
		d := s.data[g]
		copy(raw[g*cs:], d)
		host := dataStart + int64(body.Len())
		if s.compressed[g] {
			var c bytes.Buffer
			if s.zstd {
				zw, _ := zstd.NewWriter(&c)
				zw.Write(d)
				zw.Close()
			} else {
				fw, _ := flate.NewWriter(&c, 6)
				fw.Write(d)
				fw.Close()
			}
			x := 62 - (s.clusterBits - 8)
			n := int64(c.Len())
			sectors := (host%512 + n + 511) / 512
			if s.stretch {
				sectors = 1 << (s.clusterBits - 8)
			}
			entries[g] = 1<<62 | uint64(sectors-1)<<x | uint64(host)
			body.Write(c.Bytes())
			// compressed clusters are packed: no padding
		} else {
			if pad := (cs - int64(body.Len())%cs) % cs; pad != 0 {
				body.Write(make([]byte, pad))
				host += pad
			}
			entries[g] = 1<<63 | uint64(host)
			full := make([]byte, cs)
			copy(full, d)
			body.Write(full)
		}
	}
	if s.zeroFlag > 0 {
		entries[s.zeroFlag] = 1 // reads as zeros
	}
	for a, src := range s.alias {
		entries[a] = entries[src]
		copy(raw[a*cs:], s.data[src][:min(int64(len(s.data[src])), s.size-a*cs)])
	}
	if pad := (cs - int64(body.Len())%cs) % cs; pad != 0 {
		body.Write(make([]byte, pad))
	}
	if s.dataFirst {
		tablesAt = dataStart + int64(body.Len())
		l2At = tablesAt + l1Clusters*cs
		tablesEnd = l2At + l1n*cs
	}
	total := max(tablesEnd, dataStart+int64(body.Len()))
	file = make([]byte, total)
	copy(file[dataStart:], body.Bytes())
	h := file[:112]
	copy(h, Magic)
	be := binary.BigEndian
	be.PutUint32(h[4:], 3)
	be.PutUint32(h[20:], s.clusterBits)
	be.PutUint64(h[24:], uint64(s.size))
	be.PutUint32(h[36:], uint32(l1n))
	be.PutUint64(h[40:], uint64(tablesAt))
	be.PutUint32(h[96:], 4)
	be.PutUint32(h[100:], 112)
	if s.zstd {
		be.PutUint64(h[72:], incompatCompression)
		h[104] = CompressionZstd
	}
	for i := int64(0); i < l1n; i++ {
		be.PutUint64(file[tablesAt+i*8:], 1<<63|uint64(l2At+i*cs))
	}
	for g, e := range entries {
		l1i, l2i := g/l2n, g%l2n
		be.PutUint64(file[l2At+l1i*cs+l2i*8:], e)
	}
	return file, raw
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// convert runs ReadMap and Convert over file and returns the guest disk.
func convert(t testing.TB, file []byte, size int64) ([]byte, *Map, error) {
	t.Helper()
	m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{})
	if err != nil {
		return nil, nil, err
	}
	out := make([]byte, m.Header.Size)
	n, err := m.Convert(context.Background(), bytes.NewReader(file), func(p []byte, off int64) error {
		copy(out[off:], p)
		return nil
	})
	if err == nil && n != int64(len(file)) {
		t.Fatalf("Convert read %d of %d bytes", n, len(file))
	}
	return out, m, err
}

func TestConvertSynthetic(t *testing.T) {
	text := bytes.Repeat([]byte("compressible cluster "), 4000)
	for _, tc := range []struct {
		name string
		s    synth
	}{
		{"standard 64K", synth{clusterBits: 16, size: 5<<20 + 4096, data: map[int64][]byte{0: randBytes(65536), 1: randBytes(100), 7: randBytes(65536), 80: randBytes(4096)}}},
		{"data before tables", synth{clusterBits: 16, size: 3 << 20, dataFirst: true, data: map[int64][]byte{2: randBytes(65536), 3: randBytes(65536), 40: randBytes(1)}}},
		{"deflate clusters packed", synth{clusterBits: 16, size: 2 << 20, data: map[int64][]byte{0: text[:65536], 1: text[5:65541], 5: randBytes(65536), 9: text[:65536]},
			compressed: map[int64]bool{0: true, 1: true, 9: true}}},
		{"zstd clusters", synth{clusterBits: 16, size: 2 << 20, zstd: true, data: map[int64][]byte{3: text[:65536], 4: text[7:65543]}, compressed: map[int64]bool{3: true, 4: true}}},
		{"512-byte clusters, two L2 tables", synth{clusterBits: 9, size: 64*512 + 300, data: map[int64][]byte{0: randBytes(512), 63: randBytes(512), 64: randBytes(300)}}},
		{"zero flag", synth{clusterBits: 16, size: 1 << 20, zeroFlag: 3, data: map[int64][]byte{1: randBytes(65536)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, raw := tc.s.build(t)
			got, m, err := convert(t, file, tc.s.size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Fatal("converted disk differs from the raw disk")
			}
			var holes int64
			for _, h := range m.Holes() {
				holes += h.Len
				if !bytes.Equal(raw[h.Off:h.Off+h.Len], make([]byte, h.Len)) {
					t.Fatalf("hole %+v is not zero in the raw disk", h)
				}
			}
			if holes+m.DataBytes != tc.s.size {
				t.Fatalf("holes %d + data %d != size %d", holes, m.DataBytes, tc.s.size)
			}
		})
	}
}

func TestConvertDetectsMetadataChange(t *testing.T) {
	s := synth{clusterBits: 16, size: 1 << 20, data: map[int64][]byte{0: randBytes(65536)}}
	file, _ := s.build(t)
	m, err := ReadMap(context.Background(), bytes.NewReader(file), int64(len(file)), Limits{Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The stream maps cluster 0 elsewhere than the range reads said.
	tampered := bytes.Clone(file)
	l2 := int64(binary.BigEndian.Uint64(file[65536:]) & offsetMask)
	binary.BigEndian.PutUint64(tampered[l2+8:], 1<<63|uint64(l2))
	_, err = m.Convert(context.Background(), bytes.NewReader(tampered), func([]byte, int64) error { return nil })
	if !errors.Is(err, ErrMetadataMismatch) {
		t.Fatalf("Convert over a changed stream: %v", err)
	}
	_, err = m.Convert(context.Background(), bytes.NewReader(file[:len(file)-10]), func([]byte, int64) error { return nil })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Convert over a truncated stream: %v", err)
	}
}

func TestParseHeaderRefuses(t *testing.T) {
	s := synth{clusterBits: 16, size: 1 << 20}
	good, _ := s.build(t)
	be := binary.BigEndian
	cases := []struct {
		name string
		edit func(b []byte)
		want error
		msg  string
	}{
		{"magic", func(b []byte) { b[0] = 'X' }, ErrInvalid, "magic"},
		{"version 4", func(b []byte) { be.PutUint32(b[4:], 4) }, ErrUnsupported, "version"},
		{"backing file", func(b []byte) { be.PutUint64(b[8:], 512); be.PutUint32(b[16:], 5) }, ErrUnsafe, "backing file"},
		{"external data file bit", func(b []byte) { be.PutUint64(b[72:], incompatExternalData) }, ErrUnsafe, "external data file"},
		{"data file extension", func(b []byte) {
			be.PutUint32(b[112:], extDataFile)
			be.PutUint32(b[116:], 8)
			copy(b[120:], "/etc/pwd")
		}, ErrUnsafe, "/etc/pwd"},
		{"backing format extension", func(b []byte) {
			be.PutUint32(b[112:], extBackingFmt)
			be.PutUint32(b[116:], 3)
			copy(b[120:], "raw")
		}, ErrUnsafe, "backing file format"},
		{"encrypted", func(b []byte) { be.PutUint32(b[32:], 2) }, ErrUnsupported, "encrypted"},
		{"extended l2", func(b []byte) { be.PutUint64(b[72:], incompatExtendedL2) }, ErrUnsupported, "extended L2"},
		{"unknown feature", func(b []byte) { be.PutUint64(b[72:], 1<<40) }, ErrUnsupported, "unknown incompatible"},
		{"corrupt", func(b []byte) { be.PutUint64(b[72:], incompatCorrupt) }, ErrInvalid, "corrupt"},
		{"cluster bits", func(b []byte) { be.PutUint32(b[20:], 30) }, ErrInvalid, "cluster_bits"},
		{"small L1", func(b []byte) { be.PutUint64(b[24:], 1<<40) }, ErrInvalid, "cannot map"},
		{"huge L1", func(b []byte) { be.PutUint32(b[36:], 1<<30) }, ErrInvalid, "L1 table"},
		{"short header length", func(b []byte) { be.PutUint32(b[100:], 72) }, ErrInvalid, "header length"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(good[:65536])
			c.edit(b)
			_, err := ParseHeader(b)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("ParseHeader = %v; want %v containing %q", err, c.want, c.msg)
			}
		})
	}
}

func TestParseTablesRefuses(t *testing.T) {
	h := &Header{Version: 3, ClusterBits: 9, Size: 64 * 512, L1Size: 1, L1TableOffset: 512}
	be := binary.BigEndian
	l1 := make([]byte, 8)
	be.PutUint64(l1, 1<<63|0x200|0x2)
	if _, err := ParseL1(l1, h); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("L1 with reserved bits: %v", err)
	}
	be.PutUint64(l1, 0x600)
	if _, err := ParseL1(l1, &Header{Version: 3, ClusterBits: 12, Size: 1 << 20, L1Size: 1}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "unaligned") {
		t.Fatalf("unaligned L1: %v", err)
	}
	l2 := make([]byte, 512)
	be.PutUint64(l2[8:], 0x1200)
	l2b := make([]byte, 4096)
	be.PutUint64(l2b[8:], 0x1200)
	err := ParseL2(l2b, &Header{Version: 3, ClusterBits: 12, Size: 1 << 20}, 0, func(Extent) error { return nil })
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "unaligned") {
		t.Fatalf("unaligned L2 entry: %v", err)
	}
	be.PutUint64(l2[8:], 1<<63|1<<62|0x400)
	if err := ParseL2(l2, h, 0, func(Extent) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("compressed+copied: %v", err)
	}
}

// TestConvertQemuImg checks the reader against images qemu-img writes:
// sparse data, zero runs, compression (zlib and zstd), v2 and v3, cluster
// sizes from 4 KiB to 2 MiB.
func TestConvertQemuImg(t *testing.T) {
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
	copy(raw[len(raw)-5000:], randBytes(5000))
	rawPath := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"v3 64K", []string{"-o", "cluster_size=65536"}},
		{"v2 compat", []string{"-o", "compat=0.10"}},
		{"4K clusters", []string{"-o", "cluster_size=4096"}},
		{"2M clusters", []string{"-o", "cluster_size=2097152"}},
		{"zlib compressed", []string{"-c"}},
		{"zstd compressed", []string{"-c", "-o", "compression_type=zstd"}},
		{"preallocated metadata", []string{"-o", "preallocation=metadata"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".qcow2")
			args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, tc.args...)
			args = append(args, rawPath, out)
			if b, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img %v: %v: %s", args, err, b)
			}
			file, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := convert(t, file, int64(len(raw)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < len(raw) || !bytes.Equal(got[:len(raw)], raw) || !bytes.Equal(got[len(raw):], make([]byte, len(got)-len(raw))) {
				t.Fatal("converted disk differs from the raw disk")
			}
		})
	}
	// qemu-img refuses to write these without their companions; they must
	// be refused by the reader too.
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"backing file", []string{"create", "-f", "qcow2", "-b", rawPath, "-F", "raw", filepath.Join(dir, "b.qcow2")}, ErrUnsafe},
		{"external data file", []string{"create", "-f", "qcow2", "-o", "data_file=" + filepath.Join(dir, "data.raw"), filepath.Join(dir, "d.qcow2"), "1M"}, ErrUnsafe},
		{"extended l2", []string{"create", "-f", "qcow2", "-o", "extended_l2=on", filepath.Join(dir, "e.qcow2"), "1M"}, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := exec.Command("qemu-img", tc.args...).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img %v: %v: %s", tc.args, err, b)
			}
			file, err := os.ReadFile(tc.args[len(tc.args)-1])
			if err != nil {
				file, err = os.ReadFile(tc.args[len(tc.args)-2])
			}
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = convert(t, file, 0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}
