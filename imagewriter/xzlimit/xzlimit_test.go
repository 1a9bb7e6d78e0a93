package xzlimit

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/rivetmetal/rivet/internal/hostileimage"
	"github.com/therootcompany/xz"
	uxz "github.com/ulikunitz/xz"
)

// decode runs data through the guard and the decoder Rivet uses.
func decode(data []byte, maxMem int64) ([]byte, error) {
	g := NewReader(bytes.NewReader(data), maxMem)
	d, err := xz.NewReader(g, uint32(min(maxMem/2, 1<<32-1)))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(d)
}

func TestDictSize(t *testing.T) {
	for prop, want := range map[byte]int64{0: 4 << 10, 1: 6 << 10, 18: 2 << 20, 19: 3 << 20, 22: 8 << 20, 26: 32 << 20, 27: 48 << 20, 39: 3 << 30, 40: 1<<32 - 1} {
		if got, err := DictSize(prop); err != nil || got != want {
			t.Errorf("DictSize(%d) = %d, %v; want %d", prop, got, err, want)
		}
	}
	if _, err := DictSize(41); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DictSize(41): %v", err)
	}
}

func TestGuardRefusesLargeDictionaryBeforeTheDecoderSeesIt(t *testing.T) {
	data := hostileimage.XZ(bytes.Repeat([]byte("x"), 100<<10), 40, 64<<10) // 4 GiB dictionary
	var seen bytes.Buffer
	g := NewReader(io.TeeReader(bytes.NewReader(data), &seen), 128<<20)
	got, err := io.ReadAll(g)
	var le *LimitError
	if !errors.Is(err, ErrLimit) || !errors.As(err, &le) || le.Need != 2*(1<<32-1) || le.Max != 128<<20 {
		t.Fatalf("ReadAll = %v, want a LimitError for 4 GiB over 128 MiB", err)
	}
	if len(got) != 12 {
		t.Fatalf("the guard handed out %d bytes; only the 12-byte stream header may pass before the block header is checked", len(got))
	}
	if g.MaxDictionary() != 1<<32-1 {
		t.Errorf("MaxDictionary = %d", g.MaxDictionary())
	}
	if _, err := decode(data, 128<<20); !errors.Is(err, ErrLimit) {
		t.Fatalf("decoder behind the guard: %v", err)
	}
	// A later block asking for more is refused too, after the first
	// block's data passed.
	small := hostileimage.XZ(bytes.Repeat([]byte("y"), 70<<10), 18, 64<<10)
	big := hostileimage.XZ(bytes.Repeat([]byte("z"), 10), 30, 64<<10)
	if _, err := decode(append(small, big...), 128<<20); !errors.Is(err, ErrLimit) {
		t.Fatalf("second stream with a 128 MiB dictionary under a 128 MiB limit: %v", err)
	}
	if out, err := decode(append(small, big...), 256<<20); err != nil || len(out) != 70<<10+10 {
		t.Fatalf("both streams within the limit: %d bytes, %v", len(out), err)
	}
}

func TestGuardBoundsTheIndex(t *testing.T) {
	data := hostileimage.XZ(bytes.Repeat([]byte("i"), 4096), 12, 16) // 256 blocks
	if out, err := decode(data, 1<<20); err != nil || len(out) != 4096 {
		t.Fatalf("256 blocks within 1 MiB: %d bytes, %v", len(out), err)
	}
	if _, err := decode(data, 4096); !errors.Is(err, ErrLimit) {
		t.Fatalf("256 index records under a 4 KiB limit: %v", err)
	}
}

func TestGuardPassesWhatXZWrites(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatal("RIVET_REQUIRE_E2E=1 but xz (xz-utils) is not installed")
		}
		t.Skip("xz (xz-utils) is not installed")
	}
	raw := make([]byte, 3<<20+12345)
	copy(raw, hostileimage.XZ(bytes.Repeat([]byte("seed"), 1000), 18, 4096))
	for i := 1 << 20; i < len(raw); i += 7 {
		raw[i] = byte(i * 31)
	}
	for _, args := range [][]string{
		{"-0"}, {"-6"}, {"-9e"}, {"--check=crc64"}, {"--check=sha256"}, {"--check=none"},
		{"-T2", "--block-size=300KiB"}, {"--block-size=1MiB", "--check=crc32"},
		{"--lzma2=dict=64KiB"},
		// A BCJ filter before LZMA2 (the guard checks only the last
		// filter; the decoder has the BCJ filters and delta).
		{"--x86", "--lzma2=preset=6"}, {"--delta=dist=4", "--lzma2=preset=1"},
	} {
		cmd := exec.Command("xz", append([]string{"-c", "-q"}, args...)...)
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("xz %v: %v", args, err)
		}
		// Two streams with padding between them, as cat makes.
		twice := append(append(bytes.Clone(out), 0, 0, 0, 0), out...)
		got, err := decode(twice, 128<<20)
		if err != nil {
			t.Errorf("xz %v: %v", args, err)
			continue
		}
		if !bytes.Equal(got, append(bytes.Clone(raw), raw...)) {
			t.Errorf("xz %v: decoded bytes differ", args)
		}
	}
}

func TestGuardCorruptFraming(t *testing.T) {
	good := hostileimage.XZ(bytes.Repeat([]byte("c"), 1000), 18, 1<<20)
	for name, edit := range map[string]func([]byte) []byte{
		"bad magic":        func(b []byte) []byte { b[1] = 'Q'; return b },
		"header crc":       func(b []byte) []byte { b[8] ^= 1; return b },
		"block header crc": func(b []byte) []byte { b[14] ^= 1; return b },
		"control byte":     func(b []byte) []byte { b[24] = 0x05; return b },
		"truncated":        func(b []byte) []byte { return b[:len(b)-20] },
		"stray tail":       func(b []byte) []byte { return append(b, 1, 2) },
		"dictionary over 40": func(b []byte) []byte {
			b[16] = 41
			h := b[12:24]
			crc := crc32.ChecksumIEEE(h[:8])
			h[8], h[9], h[10], h[11] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
			return b
		},
	} {
		_, err := io.ReadAll(NewReader(bytes.NewReader(edit(bytes.Clone(good))), 64<<20))
		if err == nil || errors.Is(err, ErrLimit) {
			t.Errorf("%s: %v, want a framing error", name, err)
		}
	}
}

// TestGuardRefusesNonZeroRangeCoderStart: every LZMA chunk's range coder
// data starts with a zero byte; the decoder shifts that byte out unread, so
// the guard refuses any other (as liblzma does) and a flipped bit there is
// not silently accepted.
func TestGuardRefusesNonZeroRangeCoderStart(t *testing.T) {
	var buf bytes.Buffer
	w, err := uxz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte("range coder "), 2000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	if _, err := decode(good, 64<<20); err != nil {
		t.Fatalf("the intact stream: %v", err)
	}
	chunk := 12 + (int(good[12])+1)*4
	c := good[chunk]
	if c < 0x80 {
		t.Fatalf("the first chunk's control byte is %#x, not an LZMA chunk", c)
	}
	first := chunk + 5
	if (c>>5)&3 >= 2 {
		first++
	}
	if good[first] != 0 {
		t.Fatalf("byte %d is %#x; want the range coder's leading zero", first, good[first])
	}
	bad := bytes.Clone(good)
	bad[first] = 0x40
	_, err = decode(bad, 64<<20)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v; want ErrCorrupt", err)
	}
}
