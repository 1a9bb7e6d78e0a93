package xzlimit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/internal/hostileimage"
	"github.com/therootcompany/xz"
	uxz "github.com/ulikunitz/xz"
)

// splitDecode splits data into its blocks and decodes each as a stream of
// its own with the decoder Rivet uses, block after block. It returns the
// concatenated output and whether each block declared its size.
func splitDecode(data []byte, maxMemory int64, maxOut int) ([]byte, []bool, error) {
	sp := NewSplitter(bytes.NewReader(data), maxMemory)
	var out []byte
	var sized []bool
	for {
		b, err := sp.Next()
		if err == io.EOF {
			return out, sized, nil
		}
		if err != nil {
			return out, sized, err
		}
		sized = append(sized, b.Size() >= 0)
		var body []byte
		if b.Size() >= 0 {
			// Read the block first, as the parallel decoder does.
			if body, err = io.ReadAll(b); err != nil {
				return out, sized, err
			}
			if int64(len(body)) != b.Size() {
				return out, sized, errors.New("a block's length is not its declared size")
			}
		}
		var src io.Reader = b
		if body != nil {
			src = bytes.NewReader(body)
		}
		d, err := xz.NewReader(b.Stream(src), uint32(maxMemory/2))
		if err != nil {
			return out, sized, err
		}
		got, err := io.ReadAll(io.LimitReader(d, int64(maxOut-len(out)+1)))
		out = append(out, got...)
		if err != nil {
			return out, sized, err
		}
		if int64(len(got)) != b.DecodedSize() {
			return out, sized, errors.New("a block decoded to other than its walked size")
		}
		if len(out) > maxOut {
			return out, sized, errors.New("too much output")
		}
	}
}

func requireXZ(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatal("RIVET_REQUIRE_E2E=1 but xz (xz-utils) is not installed")
		}
		t.Skip("xz (xz-utils) is not installed")
	}
}

func xzCLI(t *testing.T, data []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("xz", append([]string{"-c", "-q"}, args...)...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %v: %v", args, err)
	}
	return out
}

func splitTestData() []byte {
	raw := make([]byte, 3<<20+12345)
	for i := 1 << 20; i < len(raw); i += 7 {
		raw[i] = byte(i * 31)
	}
	copy(raw[100:], strings.Repeat("the splitter cuts an xz file into blocks; ", 500))
	return raw
}

// TestSplitterCutsWhatXZWrites: the blocks of what XZ Utils writes, each
// decoded as a stream of its own, give the input back; threaded xz
// declares every block's size, single-threaded xz none; concatenated
// streams with padding between them split too.
func TestSplitterCutsWhatXZWrites(t *testing.T) {
	requireXZ(t)
	raw := splitTestData()
	for _, tc := range []struct {
		args   []string
		blocks int
		sized  bool
	}{
		{[]string{"-T2", "--block-size=300KiB"}, 11, true},
		{[]string{"-T2", "--block-size=1MiB", "--check=sha256"}, 4, true},
		{[]string{"-T2", "--block-size=1MiB", "--check=none", "--x86", "--lzma2=preset=1"}, 4, true},
		{[]string{"-6"}, 1, false},
		{[]string{"--block-size=1MiB", "--check=crc32"}, 4, false},
	} {
		stream := xzCLI(t, raw, tc.args...)
		twice := append(append(bytes.Clone(stream), 0, 0, 0, 0), stream...)
		got, sized, err := splitDecode(twice, 128<<20, 2*len(raw))
		if err != nil {
			t.Errorf("xz %v: %v", tc.args, err)
			continue
		}
		if !bytes.Equal(got, append(bytes.Clone(raw), raw...)) {
			t.Errorf("xz %v: decoded bytes differ", tc.args)
		}
		if len(sized) != 2*tc.blocks {
			t.Errorf("xz %v: %d blocks, want %d", tc.args, len(sized), 2*tc.blocks)
		}
		for i, s := range sized {
			if s != tc.sized {
				t.Errorf("xz %v: block %d declares its size: %v, want %v", tc.args, i, s, tc.sized)
			}
		}
	}
}

// reindex rewrites a one-stream file's index with edit applied to its
// records, and its CRC and the footer's backward size to match, so only
// the records' meaning is wrong.
func reindex(t *testing.T, b []byte, edit func(recs [][2]uint64) [][2]uint64) []byte {
	t.Helper()
	foot := b[len(b)-12:]
	idxLen := int(binary.LittleEndian.Uint32(foot[4:8])+1) * 4
	idx := b[len(b)-12-idxLen : len(b)-12]
	p := idx[1:]
	count, k := binary.Uvarint(p)
	p = p[k:]
	var recs [][2]uint64
	for range count {
		u, k1 := binary.Uvarint(p)
		v, k2 := binary.Uvarint(p[k1:])
		p = p[k1+k2:]
		recs = append(recs, [2]uint64{u, v})
	}
	recs = edit(recs)
	n := []byte{0}
	n = binary.AppendUvarint(n, uint64(len(recs)))
	for _, r := range recs {
		n = binary.AppendUvarint(n, r[0])
		n = binary.AppendUvarint(n, r[1])
	}
	for len(n)%4 != 0 {
		n = append(n, 0)
	}
	n = binary.LittleEndian.AppendUint32(n, crc32.ChecksumIEEE(n))
	f := binary.LittleEndian.AppendUint32(nil, uint32(len(n)/4-1))
	f = append(f, foot[8:10]...)
	f = append(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(f)), f...)
	f = append(f, footerMagic...)
	out := append(bytes.Clone(b[:len(b)-12-idxLen]), n...)
	return append(out, f...)
}

// TestSplitterChecksTheFraming: an index, footer or block header whose
// CRCs are right but whose sizes or flags do not match the blocks is
// refused, as is a stream that ends early or has bytes after it. A
// decoder given the blocks one by one never sees the file's index, so
// the Splitter must check it.
func TestSplitterChecksTheFraming(t *testing.T) {
	requireXZ(t)
	good := xzCLI(t, splitTestData(), "-T2", "--block-size=1MiB")
	if _, _, err := splitDecode(good, 128<<20, 8<<20); err != nil {
		t.Fatalf("the intact stream: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func([]byte) []byte
		want string
	}{
		"index uncompressed size": {func(b []byte) []byte {
			return reindex(t, b, func(r [][2]uint64) [][2]uint64 { r[1][1]++; return r })
		}, "the index says block 1"},
		"index unpadded size": {func(b []byte) []byte {
			return reindex(t, b, func(r [][2]uint64) [][2]uint64 { r[2][0] += 4; return r })
		}, "the index says block 2"},
		"index lists a block less": {func(b []byte) []byte {
			return reindex(t, b, func(r [][2]uint64) [][2]uint64 { return r[:len(r)-1] })
		}, "the index lists 3 blocks"},
		"footer flags": {func(b []byte) []byte {
			f := b[len(b)-12:]
			f[9] = 1 // CRC32, the header says CRC64
			binary.LittleEndian.PutUint32(f, crc32.ChecksumIEEE(f[4:10]))
			return b
		}, "flags differ"},
		"footer backward size": {func(b []byte) []byte {
			f := b[len(b)-12:]
			binary.LittleEndian.PutUint32(f[4:], binary.LittleEndian.Uint32(f[4:])+1)
			binary.LittleEndian.PutUint32(f, crc32.ChecksumIEEE(f[4:10]))
			return b
		}, "the stream footer says the index is"},
		"block declares fewer compressed bytes": {func(b []byte) []byte { return redeclare(t, b, -1, 0) }, "compressed bytes its header declares"},
		"block declares more compressed bytes":  {func(b []byte) []byte { return redeclare(t, b, +1, 0) }, "compressed bytes, its header declares"},
		"block declares fewer decoded bytes":    {func(b []byte) []byte { return redeclare(t, b, 0, -1) }, "more than the"},
		"block declares more decoded bytes":     {func(b []byte) []byte { return redeclare(t, b, 0, +1) }, "its header declares"},
		"truncated":                             {func(b []byte) []byte { return b[:len(b)-30] }, "unexpected EOF"},
		"bytes after the stream":                {func(b []byte) []byte { return append(b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12) }, "stream header magic"},
		"three stray bytes":                     {func(b []byte) []byte { return append(b, 0, 0, 0) }, "stray bytes"},
		"empty":                                 {func(b []byte) []byte { return nil }, "no xz stream"},
		"padding before the first stream":       {func(b []byte) []byte { return append([]byte{0, 0, 0, 0}, b...) }, "stream header magic"},
	} {
		_, _, err := splitDecode(tc.edit(bytes.Clone(good)), 128<<20, 8<<20)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
	}
}

// redeclare changes the sizes the first block's header declares by dc
// and du (its header CRC made to match).
func redeclare(t *testing.T, b []byte, dc, du int64) []byte {
	t.Helper()
	h := b[12 : 12+(int(b[12])+1)*4]
	if h[1]&0xc0 != 0xc0 {
		t.Fatal("the first block declares no sizes")
	}
	c, k1 := binary.Uvarint(h[2:])
	u, k2 := binary.Uvarint(h[2+k1:])
	nh := []byte{0, h[1]}
	nh = binary.AppendUvarint(nh, uint64(int64(c)+dc))
	nh = binary.AppendUvarint(nh, uint64(int64(u)+du))
	nh = append(nh, h[2+k1+k2:len(h)-4]...)
	for len(nh)+4 > len(h) && nh[len(nh)-1] == 0 {
		nh = nh[:len(nh)-1]
	}
	for len(nh)+4 < len(h) {
		nh = append(nh, 0)
	}
	if len(nh)+4 != len(h) {
		t.Fatal("the new sizes do not fit the header")
	}
	nh[0] = h[0]
	nh = binary.LittleEndian.AppendUint32(nh, crc32.ChecksumIEEE(nh))
	copy(h, nh)
	return b
}

// TestSplitterBoundsItsIndex: the Splitter keeps one record per block
// of a stream, so a stream of more blocks than the limit allows records
// for is refused for memory.
func TestSplitterBoundsItsIndex(t *testing.T) {
	// 4 KiB dictionaries (8 KiB of the limit): 16 KiB allows 512 records.
	data := hostileimage.XZ(bytes.Repeat([]byte("b"), 600), 0, 1) // 600 blocks
	_, _, err := splitDecode(data, 16<<10, 1<<20)
	var le *LimitError
	if !errors.Is(err, ErrLimit) || !errors.As(err, &le) || !strings.Contains(le.What, "index of more than 512 blocks") {
		t.Fatalf("600 blocks under a limit for 512: %v", err)
	}
	if got, _, err := splitDecode(data[:0:0], 16<<10, 1<<20); err == nil {
		t.Fatalf("no stream: %d bytes", len(got))
	}
	data = hostileimage.XZ(bytes.Repeat([]byte("b"), 400), 0, 1)
	if got, _, err := splitDecode(data, 16<<10, 1<<20); err != nil || len(got) != 400 {
		t.Fatalf("400 blocks under a limit for 512: %d bytes, %v", len(got), err)
	}
}

// TestSplitterRefusesLargeDictionaries: as the guard, before any of the
// block's data is handed out.
func TestSplitterRefusesLargeDictionaries(t *testing.T) {
	data := hostileimage.XZ(bytes.Repeat([]byte("x"), 1000), 30, 64<<10) // 48 MiB
	_, err := NewSplitter(bytes.NewReader(data), 64<<20).Next()
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("a 48 MiB dictionary under 64 MiB: %v", err)
	}
}

// FuzzSplitter: whatever the bytes, the blocks decoded one by one give
// exactly what the whole file decodes to behind the guard, or an error
// where it fails; nothing panics.
func FuzzSplitter(f *testing.F) {
	f.Add(hostileimage.XZ([]byte("hello, world"), 12, 8))
	f.Add(append(append(hostileimage.XZ([]byte("a"), 0, 1), 0, 0, 0, 0), hostileimage.XZ([]byte("b"), 1, 1)...))
	text := bytes.Repeat([]byte("the image writer decodes xz; "), 200)
	for _, check := range []byte{uxz.None, uxz.CRC32, uxz.CRC64, uxz.SHA256} {
		f.Add(compressedSeed(f, text, check, 1500))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 20
		const maxOut = 4 << 20
		got, _, err := splitDecode(data, limit, maxOut)
		want, werr := decode(data, limit)
		if len(want) > maxOut {
			return
		}
		switch {
		case err == nil && werr != nil:
			t.Fatalf("the blocks decode, the whole file does not: %v", werr)
		case err == nil && !bytes.Equal(got, want):
			t.Fatalf("the blocks decode to %d bytes, the whole file to %d", len(got), len(want))
		case err != nil && werr == nil:
			t.Fatalf("the whole file decodes to %d bytes, the blocks fail: %v", len(want), err)
		}
	})
}
