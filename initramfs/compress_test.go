package initramfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
	"github.com/ulikunitz/xz"
)

// decompress returns the cpio stream inside an archive file, checking the
// format's magic bytes on the way.
func decompress(t *testing.T, path string, c Compression) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader
	switch c {
	case Zstd:
		d, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r = d
	case Gzip:
		if r, err = gzip.NewReader(f); err != nil {
			t.Fatal(err)
		}
	case XZ:
		if r, err = xz.NewReader(f); err != nil {
			t.Fatal(err)
		}
	default:
		r = f
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress %s: %v", c, err)
	}
	return b
}

func TestCompressedFile(t *testing.T) {
	for _, c := range []Compression{Zstd, Gzip, XZ, None} {
		t.Run(string(c), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out", "initrd")
			cf := &compressedFile{path: path, compression: c}
			w, err := cf.OpenWriter()
			if err != nil {
				t.Fatal(err)
			}
			content := bytes.Repeat([]byte("rivet "), 10000)
			recs := []cpio.Record{cpio.Directory("etc", 0o755), cpio.StaticFile("etc/hello", string(content), 0o644)}
			if err := cpio.WriteRecords(w, recs); err != nil {
				t.Fatal(err)
			}
			if err := w.Finish(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if cf.size != fi.Size() {
				t.Errorf("counted %d bytes, file has %d", cf.size, fi.Size())
			}
			raw := decompress(t, path, c)
			if int64(len(raw)) != cf.cpioSize {
				t.Errorf("counted %d cpio bytes, stream has %d", cf.cpioSize, len(raw))
			}
			if c != None && cf.size >= cf.cpioSize {
				t.Errorf("%s: %d bytes from %d: not compressed", c, cf.size, cf.cpioSize)
			}
			got, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[1].Name != "etc/hello" {
				t.Fatalf("records = %v", got)
			}
			if !bytes.Contains(raw[len(raw)-512:], []byte(cpio.Trailer)) {
				t.Error("no cpio trailer at the end of the stream")
			}
			b, _ := io.ReadAll(io.NewSectionReader(got[1].ReaderAt, 0, int64(got[1].FileSize)))
			if !bytes.Equal(b, content) {
				t.Error("file content changed in the round trip")
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestCompressedFileAbort(t *testing.T) {
	dir := t.TempDir()
	cf := &compressedFile{path: filepath.Join(dir, "initrd"), compression: Zstd}
	if _, err := cf.OpenWriter(); err != nil {
		t.Fatal(err)
	}
	cf.abort()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("files left after abort: %v", left)
	}
}
