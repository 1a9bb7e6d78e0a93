package imagewriter

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/rivetmetal/rivet/imagewriter/qcow2"
)

// unreadableTarget is a disk whose reads fail, as a dying one's do.
type unreadableTarget struct{ *memTarget }

func (unreadableTarget) ReadAt([]byte, int64) (int, error) { return 0, syscall.EIO }

// TestSpoolReadErrorIsTheDisks: the spooled qcow2 file read back from a
// disk that fails is the disk's error (ErrTarget), not a fault of the
// image, through the map's reads and the conversion's classification.
func TestSpoolReadErrorIsTheDisks(t *testing.T) {
	spool := spoolReader{t: unreadableTarget{newMemTarget(1 << 20)}, base: 4096, size: 64 << 10}
	if _, err := spool.ReadAt(make([]byte, 512), 0); !errors.Is(err, ErrTarget) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("spool read = %v; want ErrTarget wrapping EIO", err)
	}
	if _, err := spool.ReadAt(make([]byte, 512), 64<<10); err != io.EOF {
		t.Fatalf("read past the spooled file = %v; want io.EOF", err)
	}
	_, err := qcow2.ReadMap(context.Background(), spool, spool.size, qcow2.Limits{})
	w := &writer{req: Request{}}
	if err = w.qcowError(err); !errors.Is(err, ErrTarget) || errors.Is(err, ErrFormat) || errors.Is(err, ErrTruncated) {
		t.Fatalf("classified as %v; want the target's error alone", err)
	}
}

// unflushableTarget is a disk whose cache flush fails.
type unflushableTarget struct{ *memTarget }

func (unflushableTarget) Flush() error { return syscall.EIO }

// TestInvalidateSaysWhenTheWipeMayNotHaveReachedTheDisk: a failed write
// wipes the disk's partition tables and flushes it; when the flush fails,
// the wipe may still sit in the device's cache, so the error says not to
// boot the disk instead of claiming it was wiped.
func TestInvalidateSaysWhenTheWipeMayNotHaveReachedTheDisk(t *testing.T) {
	cause := errors.New("the image failed")
	ok := &writer{req: Request{Targets: []string{"mem"}}, targets: []target{newMemTarget(1 << 20)}}
	if err := ok.invalidate(cause); !errors.Is(err, cause) || !strings.Contains(err.Error(), "wiped so the partial image cannot boot") {
		t.Fatalf("invalidate = %v", err)
	}
	bad := &writer{req: Request{Targets: []string{"mem"}}, targets: []target{unflushableTarget{newMemTarget(1 << 20)}}}
	if err := bad.invalidate(cause); !errors.Is(err, cause) || !strings.Contains(err.Error(), "do not boot") || strings.Contains(err.Error(), "wiped so") {
		t.Fatalf("invalidate with a failing flush = %v; want it to say not to boot the disk", err)
	}
}
