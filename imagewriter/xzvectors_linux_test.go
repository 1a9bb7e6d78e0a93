package imagewriter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// xzTool compresses data with the xz tool (XZ Utils, the reference
// encoder) and the given options.
func xzTool(t *testing.T, data []byte, opts ...string) []byte {
	t.Helper()
	args := append([]string{"-z", "-c", "-q", "-q"}, opts...)
	cmd := exec.Command("xz", args...)
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xz %s: %v: %s", strings.Join(opts, " "), err, stderr.String())
	}
	return out.Bytes()
}

// decodeXz runs a stream through the writer's xz decoder, its splitter
// and two workers (whatever the CPUs, so blocks that declare their sizes
// decode in parallel), to its end; output beyond max bytes is an error.
func decodeXz(stream []byte, maxMemory int64, max int) ([]byte, error) {
	img := &memImage{max: int64(max)}
	n, _, err := decodeXzBlocks(context.Background(), bytes.NewReader(stream), maxMemory, math.MaxInt64, []blockOutput{img, img})
	img.mu.Lock()
	defer img.mu.Unlock()
	if err == nil && n != int64(len(img.b)) {
		err = fmt.Errorf("decoded %d bytes, the blocks put %d", n, len(img.b))
	}
	return img.b, err
}

// memImage is an image in memory that xz workers put blocks into, at
// most max bytes of it.
type memImage struct {
	mu  sync.Mutex
	b   []byte
	max int64
}

func (m *memImage) put(_ context.Context, r io.Reader, off int64) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			end := off + n + int64(k)
			if end > m.max {
				return n, fmt.Errorf("more than %d bytes of output", m.max)
			}
			m.mu.Lock()
			if int64(len(m.b)) < end {
				m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
			}
			copy(m.b[off+n:], buf[:k])
			m.mu.Unlock()
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// xzTestData is data of several kinds (random, text, zeros, x86-like
// code with relative calls for the BCJ filters to rewrite), n bytes.
func xzTestData(n int) []byte {
	rng := rand.New(rand.NewPCG(13, 2))
	var b bytes.Buffer
	for b.Len() < n {
		switch rng.IntN(4) {
		case 0:
			r := make([]byte, 1+rng.IntN(8<<10))
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			b.Write(r)
		case 1:
			for range 1 + rng.IntN(200) {
				b.WriteString("the image writer decodes xz streams made by XZ Utils; ")
			}
		case 2:
			b.Write(make([]byte, rng.IntN(32<<10)))
		case 3:
			for range 1 + rng.IntN(500) {
				// call rel32; mov eax, imm32; bl (ARM); a PowerPC branch.
				b.Write([]byte{0xe8, byte(rng.Uint32()), byte(rng.Uint32()), 0, 0, 0xb8, 1, 2, 3, 4})
				b.Write([]byte{byte(rng.Uint32()), 0x12, 0x00, 0xeb, 0x48, 0x00, 0x01, 0x01})
			}
		}
	}
	return b.Bytes()[:n]
}

// TestXzVectors decodes what XZ Utils makes with every option that
// changes the stream's structure: each check type, single and multiple
// blocks (sized in their headers or not), concatenated streams with
// stream padding, every preset's dictionary, the BCJ and delta filters.
// The decoded bytes are the input's, under a cap that fits the stream.
func TestXzVectors(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	data := xzTestData(640 << 10)
	const capMem = 128 << 20
	for _, tc := range []struct {
		name string
		opts []string
	}{
		{"default", nil},
		{"check none", []string{"--check=none"}},
		{"check crc32", []string{"--check=crc32"}},
		{"check crc64", []string{"--check=crc64"}},
		{"check sha256", []string{"--check=sha256"}},
		{"preset 0", []string{"-0"}},
		{"preset 9 extreme", []string{"-9e"}},
		{"blocks of 64 KiB", []string{"--block-size=65536"}},
		{"block list", []string{"--block-list=4096,70000,1,200000"}},
		{"threaded blocks (sizes in headers)", []string{"-T2", "--block-size=100000", "--check=sha256"}},
		{"dictionary 3 MiB", []string{"--lzma2=dict=3MiB"}},
		{"dictionary 100000 bytes", []string{"--lzma2=dict=100000"}},
		{"lc4 lp0 pb0", []string{"--lzma2=lc=4,lp=0,pb=0"}},
		{"lc0 lp4 pb4", []string{"--lzma2=lc=0,lp=4,pb=4"}},
		{"x86 BCJ", []string{"--x86", "--lzma2"}},
		{"PowerPC BCJ", []string{"--powerpc", "--lzma2"}},
		{"IA-64 BCJ", []string{"--ia64", "--lzma2"}},
		{"ARM BCJ", []string{"--arm", "--lzma2"}},
		{"ARM-Thumb BCJ", []string{"--armthumb", "--lzma2"}},
		{"SPARC BCJ", []string{"--sparc", "--lzma2"}},
		{"x86 BCJ with start offset", []string{"--x86=start=16", "--lzma2"}},
		{"delta", []string{"--delta=dist=4", "--lzma2"}},
		{"x86 BCJ, multiple blocks", []string{"--x86", "--lzma2", "--block-size=50000"}},
		{"x86 BCJ and delta", []string{"--x86", "--delta=dist=2", "--lzma2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := xzTool(t, data, tc.opts...)
			got, err := decodeXz(stream, capMem, len(data))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("decoded %d bytes differing from the %d input bytes", len(got), len(data))
			}
		})
	}

	t.Run("empty input", func(t *testing.T) {
		got, err := decodeXz(xzTool(t, nil), capMem, 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("decoded %d bytes, err %v; want nothing", len(got), err)
		}
	})
	t.Run("concatenated streams with padding", func(t *testing.T) {
		a, b := data[:100000], data[100000:]
		var s []byte
		s = append(s, xzTool(t, a, "--check=crc32")...)
		s = append(s, 0, 0, 0, 0, 0, 0, 0, 0)
		s = append(s, xzTool(t, b, "--check=sha256", "--block-size=65536")...)
		s = append(s, 0, 0, 0, 0)
		got, err := decodeXz(s, capMem, len(data))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("decoded %d bytes (equal %v), err %v", len(got), bytes.Equal(got, data), err)
		}
	})
}

// TestXzVectorsRefused: streams the decoder cannot or must not decode end
// in an error, never in output that passes for the image.
func TestXzVectorsRefused(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	data := xzTestData(256 << 10)
	for _, tc := range []struct {
		name   string
		stream func(t *testing.T) []byte
		max    int64
		memory bool // refused as ErrMemoryLimit
		want   string
	}{
		{name: "ARM64 BCJ (not in the decoder)", stream: func(t *testing.T) []byte { return xzTool(t, data, "--arm64", "--lzma2") },
			max: 128 << 20, want: "filter"},
		{name: "64 MiB dictionary under a 64 MiB cap", stream: func(t *testing.T) []byte { return xzTool(t, data, "--lzma2=dict=64MiB") },
			max: 64 << 20, memory: true, want: "LZMA2 dictionary of 64 MiB"},
		{name: "second stream's dictionary over the cap", stream: func(t *testing.T) []byte {
			return append(xzTool(t, data[:1000], "--lzma2=dict=1MiB"), xzTool(t, data, "--lzma2=dict=48MiB")...)
		}, max: 64 << 20, memory: true, want: "LZMA2 dictionary"},
		{name: "check type 2 (reserved, 4 bytes)", stream: func(t *testing.T) []byte {
			// A CRC32 stream relabelled: the flags in the header and the
			// footer, and their CRC32s.
			b := xzTool(t, data, "--check=crc32")
			b[7] = 2
			binary.LittleEndian.PutUint32(b[8:], crc32.ChecksumIEEE(b[6:8]))
			f := b[len(b)-12:]
			f[9] = 2
			binary.LittleEndian.PutUint32(f, crc32.ChecksumIEEE(f[4:10]))
			return b
		}, max: 128 << 20, want: "integrity check"},
		{name: "padding not a multiple of four", stream: func(t *testing.T) []byte { return append(xzTool(t, data), 0, 0, 0) },
			max: 128 << 20},
		{name: "trailing bytes", stream: func(t *testing.T) []byte { return append(xzTool(t, data), "junk"...) },
			max: 128 << 20},
		{name: "legacy .lzma", stream: func(t *testing.T) []byte { return xzTool(t, data, "--format=lzma") },
			max: 128 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeXz(tc.stream(t), tc.max, len(data))
			if err == nil {
				t.Fatalf("decoded %d bytes without an error", len(got))
			}
			if tc.memory != errors.Is(err, ErrMemoryLimit) {
				t.Fatalf("err = %v; ErrMemoryLimit %v, want %v", err, errors.Is(err, ErrMemoryLimit), tc.memory)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestXzCorruptAndTruncated: every single-bit flip and every truncation of
// a checked stream (one of each check type, several blocks, sized in their
// headers or not) is an error.
// The CRC32s of the headers, index and footer and the block checks cover
// every byte of such a stream.
func TestXzCorruptAndTruncated(t *testing.T) {
	requireTool(t, "xz", "xz-utils")
	data := xzTestData(6000)
	for _, tc := range []struct{ check, threads string }{{"crc32", "-T1"}, {"crc64", "-T1"}, {"sha256", "-T1"}, {"crc64", "-T2"}} {
		check := tc.check
		// -T2 declares every block's size, so they decode in parallel.
		t.Run(check+tc.threads, func(t *testing.T) {
			stream := xzTool(t, data, "--check="+check, tc.threads, "--block-size=2500", "--lzma2=preset=0,dict=4KiB")
			if got, err := decodeXz(stream, 16<<20, len(data)); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("the intact stream: %d bytes, err %v", len(got), err)
			}
			bad := bytes.Clone(stream)
			for i := range bad {
				for _, bit := range []byte{0x01, 0x80} {
					bad[i] ^= bit
					if got, err := decodeXz(bad, 16<<20, len(data)); err == nil {
						t.Fatalf("flipping %#x at byte %d of %d: decoded %d bytes (equal %v) without an error",
							bit, i, len(bad), len(got), bytes.Equal(got, data))
					}
					bad[i] ^= bit
				}
			}
			for n := range len(stream) {
				if got, err := decodeXz(stream[:n], 16<<20, len(data)); err == nil {
					t.Fatalf("cut to %d of %d bytes: decoded %d bytes without an error", n, len(stream), len(got))
				}
			}
		})
	}
}
