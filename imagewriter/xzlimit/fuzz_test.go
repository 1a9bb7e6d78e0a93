package xzlimit

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/rivetmetal/rivet/internal/hostileimage"
	"github.com/therootcompany/xz"
	uxz "github.com/ulikunitz/xz"
)

// compressedSeed is data compressed by a second xz implementation
// (ulikunitz/xz): LZMA chunks, several blocks, the given check type.
func compressedSeed(f *testing.F, data []byte, check byte, blockSize int64) []byte {
	var b bytes.Buffer
	w, err := uxz.WriterConfig{CheckSum: check, NoCheckSum: check == uxz.None, BlockSize: blockSize, DictCap: 4096}.NewWriter(&b)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	return b.Bytes()
}

// FuzzReader runs arbitrary bytes through the guard and the decoder under
// a 1 MiB limit: nothing panics, a refusal for memory names a dictionary
// over half the limit, what decodes had every dictionary within it, and
// when the other implementation (ulikunitz/xz) decodes the same bytes too,
// both give the same output.
func FuzzReader(f *testing.F) {
	f.Add(hostileimage.XZ([]byte("hello, world"), 12, 8))
	f.Add(hostileimage.XZ(bytes.Repeat([]byte("ab"), 5000), 18, 4096))
	f.Add(hostileimage.XZ([]byte("x"), 40, 1))
	f.Add(append(append(hostileimage.XZ([]byte("a"), 0, 1), 0, 0, 0, 0), hostileimage.XZ([]byte("b"), 1, 1)...))
	text := bytes.Repeat([]byte("the image writer decodes xz; "), 200)
	for _, check := range []byte{uxz.None, uxz.CRC32, uxz.CRC64, uxz.SHA256} {
		f.Add(compressedSeed(f, text, check, 1500))
	}
	f.Add(compressedSeed(f, nil, uxz.CRC64, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 20
		const maxOut = 16 << 20
		g := NewReader(bytes.NewReader(data), limit)
		d, err := xz.NewReader(g, limit/2)
		var out []byte
		if err == nil {
			out, err = io.ReadAll(io.LimitReader(d, maxOut))
		}
		switch {
		case errors.Is(err, ErrLimit):
			var le *LimitError
			if !errors.As(err, &le) || le.Need <= limit {
				t.Fatalf("refused for memory without a need over the limit: %v", err)
			}
		case err == nil && 2*g.MaxDictionary() > limit:
			t.Fatalf("decoded a stream with a %d-byte dictionary under a %d-byte limit", g.MaxDictionary(), limit)
		case err == nil && len(out) < maxOut:
			u, uerr := uxz.ReaderConfig{DictCap: 4096}.NewReader(bytes.NewReader(data))
			if uerr != nil {
				return
			}
			other, uerr := io.ReadAll(io.LimitReader(u, maxOut))
			if uerr == nil && !bytes.Equal(out, other) {
				t.Fatalf("the decoders disagree: %d bytes against ulikunitz/xz's %d", len(out), len(other))
			}
		}
	})
}
