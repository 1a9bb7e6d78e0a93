package initramfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
	uinitramfs "github.com/u-root/mkuimage/uimage/initramfs"
	"github.com/ulikunitz/xz"
)

// zstdWindow keeps zstd frames within what the kernel's initramfs
// unpacker accepts.
const zstdWindow = 8 << 20

// compressedFile is a uinitramfs.WriteOpener that writes a newc cpio stream
// through a compressor into a temporary file, renamed to path on Finish.
type compressedFile struct {
	path        string
	compression Compression

	// Set by OpenWriter and Finish.
	w              *archiveWriter
	size, cpioSize int64
}

var _ uinitramfs.WriteOpener = (*compressedFile)(nil)

// OpenWriter implements uinitramfs.WriteOpener.
func (c *compressedFile) OpenWriter() (uinitramfs.Writer, error) {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return nil, fmt.Errorf("initramfs: create output dir: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(c.path), "."+filepath.Base(c.path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("initramfs: create output: %w", err)
	}
	fileCount := &countingWriter{w: f}
	zw, err := newCompressor(fileCount, c.compression)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	cpioCount := &countingWriter{w: zw}
	c.w = &archiveWriter{
		RecordWriter: cpio.Newc.Writer(cpioCount),
		dst:          c,
		f:            f,
		zw:           zw,
		fileCount:    fileCount,
		cpioCount:    cpioCount,
	}
	return c.w, nil
}

// abort removes the temporary file of an archive that was opened but not
// finished (uimage does not call Finish after a failed write).
func (c *compressedFile) abort() {
	if c.w != nil {
		c.w.abort()
	}
}

// newCompressor wraps w with the compressor for c.
func newCompressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Zstd, "":
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(zstdWindow))
		if err != nil {
			return nil, fmt.Errorf("initramfs: zstd writer: %w", err)
		}
		return zw, nil
	case Gzip:
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return nil, fmt.Errorf("initramfs: gzip writer: %w", err)
		}
		return zw, nil
	case XZ:
		// The kernel's xz unpacker checks CRC32 but not CRC64 or SHA-256.
		zw, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("initramfs: xz writer: %w", err)
		}
		return zw, nil
	case None:
		return nopCloser{w}, nil
	default:
		return nil, fmt.Errorf("initramfs: unknown compression %q", c)
	}
}

// archiveWriter is the uinitramfs.Writer returned by compressedFile.
type archiveWriter struct {
	cpio.RecordWriter
	dst                  *compressedFile
	f                    *os.File
	zw                   io.WriteCloser
	fileCount, cpioCount *countingWriter
	finished             bool
}

// Finish writes the cpio trailer, flushes the compressor, syncs the file and
// moves it into place.
func (w *archiveWriter) Finish() error {
	if w.finished {
		return nil
	}
	w.finished = true
	err := cpio.WriteTrailer(w.RecordWriter)
	err = errors.Join(err, w.zw.Close())
	err = errors.Join(err, w.f.Sync())
	err = errors.Join(err, w.f.Close())
	if err == nil {
		err = os.Rename(w.f.Name(), w.dst.path)
	}
	if err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("initramfs: write %s: %w", w.dst.path, err)
	}
	w.dst.size = w.fileCount.n
	w.dst.cpioSize = w.cpioCount.n
	return nil
}

// abort removes the temporary file of an archive that was not finished.
func (w *archiveWriter) abort() {
	if !w.finished {
		w.finished = true
		w.zw.Close()
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
