package testimage

import (
	"errors"
	"fmt"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/mkuimage/cpio"
)

// writeInitrd writes a gzip-compressed newc cpio with the init binary, the
// image id and the device node the kernel opens as init's console.
func writeInitrd(path, initBinary, id string) (err error) {
	bin, err := os.ReadFile(initBinary)
	if err != nil {
		return fmt.Errorf("testimage: read init: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("testimage: create initrd: %w", err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("testimage: gzip: %w", err)
	}
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("etc", 0o755),
		cpio.StaticFile("etc/rivet-testimage-id", id+"\n", 0o644),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.StaticFile("init", string(bin), 0o755),
	}
	w := cpio.Newc.Writer(zw)
	if err := cpio.WriteRecords(w, recs); err != nil {
		return fmt.Errorf("testimage: write initrd %s: %w", path, err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fmt.Errorf("testimage: write initrd %s: %w", path, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("testimage: write initrd %s: %w", path, err)
	}
	return nil
}
