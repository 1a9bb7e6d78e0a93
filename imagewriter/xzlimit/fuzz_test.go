package xzlimit

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/rivetmetal/rivet/internal/hostileimage"
	"github.com/therootcompany/xz"
)

// FuzzReader runs arbitrary bytes through the guard and the decoder under
// a 1 MiB limit: nothing panics, a refusal for memory names a dictionary
// over half the limit, and what decodes had every dictionary within it.
func FuzzReader(f *testing.F) {
	f.Add(hostileimage.XZ([]byte("hello, world"), 12, 8))
	f.Add(hostileimage.XZ(bytes.Repeat([]byte("ab"), 5000), 18, 4096))
	f.Add(hostileimage.XZ([]byte("x"), 40, 1))
	f.Add(append(append(hostileimage.XZ([]byte("a"), 0, 1), 0, 0, 0, 0), hostileimage.XZ([]byte("b"), 1, 1)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 20
		g := NewReader(bytes.NewReader(data), limit)
		d, err := xz.NewReader(g, limit/2)
		if err == nil {
			_, err = io.Copy(io.Discard, io.LimitReader(d, 16<<20))
		}
		switch {
		case errors.Is(err, ErrLimit):
			var le *LimitError
			if !errors.As(err, &le) || le.Need <= limit {
				t.Fatalf("refused for memory without a need over the limit: %v", err)
			}
		case err == nil && 2*g.MaxDictionary() > limit:
			t.Fatalf("decoded a stream with a %d-byte dictionary under a %d-byte limit", g.MaxDictionary(), limit)
		}
	})
}
