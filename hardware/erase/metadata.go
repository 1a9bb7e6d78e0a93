package erase

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rivetmetal/rivet/hardware"
)

// metadataSpan is how much is zeroed at each end of a partition and of
// the disk: it covers the MBR, both GPT copies (33 sectors of 512 B or 5 of
// 4 KiB), and the signatures of the filesystems, RAID (md 0.90/1.0 at the
// end, 1.1/1.2 at the start), LVM, LUKS, swap, ISO 9660 and ZFS (whose
// labels sit in the first and last 512 KiB).
const metadataSpan = 1 << 20

// Metadata destroys the partition table and every signature on d and on
// its partitions (wipefs --all plus sgdisk -Z), then asks the kernel to
// drop its view of the old partitions.
func Metadata(ctx context.Context, d hardware.BlockDevice, progress ProgressFunc) error {
	if progress == nil {
		progress = func(Progress) {}
	}
	dev, err := openDevice(d.Path, false)
	if err != nil {
		return fmt.Errorf("erase metadata of %s: %w", d.Path, err)
	}
	defer dev.Close()
	type region struct{ off, n int64 }
	var regions []region
	ends := func(start, size int64) {
		if size <= 2*metadataSpan {
			regions = append(regions, region{start, size})
			return
		}
		regions = append(regions, region{start, metadataSpan}, region{start + size - metadataSpan, metadataSpan})
	}
	for _, p := range d.Partitions {
		if p.Size > 0 && p.Start+p.Size <= dev.Size() {
			ends(p.Start, p.Size)
		}
	}
	ends(0, dev.Size())
	start := time.Now()
	var total int64
	for _, r := range regions {
		total += r.n
	}
	var done int64
	for _, r := range regions {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("erase metadata of %s: %w", d.Path, err)
		}
		if err := zeroRange(dev, r.off, r.n); err != nil {
			return fmt.Errorf("erase metadata of %s at offset %d: %w", d.Path, r.off, err)
		}
		done += r.n
		progress(Progress{Device: d.Path, Method: MethodMetadata, Done: done, Total: total, StartedAt: start, UpdatedAt: time.Now()})
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("erase metadata of %s: sync: %w", d.Path, err)
	}
	// The kernel still lists the old partitions until it re-reads the
	// (now empty) table; a busy partition keeps it from doing so, which is
	// not a failure of the erase itself.
	_ = dev.RereadPartitions()
	return nil
}

// zeroRange zeroes [off, off+n): BLKZEROOUT when the device offers it,
// else plain writes.
func zeroRange(dev device, off, n int64) error {
	err := dev.ZeroOut(off, n)
	if err == nil || !errors.Is(err, errUnsupported) {
		return err
	}
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := dev.WriteAt(buf[:c], off); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}
