package fakeagent

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// zeros reads as zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func zstdOf(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b)
	if err == nil {
		_, err = io.Copy(zw, r)
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDecode decodes what the real agent decodes the way it would be
// served, and refuses a broken stream and one that decodes past the fake
// agent's bound.
func TestDecode(t *testing.T) {
	a := &Agent{}
	raw := bytes.Repeat([]byte("rivet fake agent "), 1<<14)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	zst := zstdOf(t, bytes.NewReader(raw))
	for name, img := range map[string][]byte{"gzip": gz.Bytes(), "zstd": zst} {
		n, secs, err := a.decode(img)
		if err != nil || n != int64(len(raw)) || secs <= 0 {
			t.Errorf("%s: %d bytes in %v s, %v; want %d bytes, timed", name, n, secs, err, len(raw))
		}
	}
	if n, secs, err := a.decode(raw); err != nil || n != int64(len(raw)) || secs != 0 {
		t.Errorf("raw: %d bytes in %v s, %v; want its own size, no decode", n, secs, err)
	}
	broken := bytes.Clone(zst)
	broken = broken[:len(broken)/2]
	if _, _, err := a.decode(broken); err == nil || !strings.Contains(err.Error(), "decoding the image") {
		t.Errorf("a truncated zstd stream: %v", err)
	}
	bomb := zstdOf(t, io.LimitReader(zeros{}, maxDecoded+1))
	if _, _, err := a.decode(bomb); err == nil || !strings.Contains(err.Error(), "more than the fake agent's") {
		t.Errorf("%d bytes of zstd decoding past the bound: %v", len(bomb), err)
	}
}
