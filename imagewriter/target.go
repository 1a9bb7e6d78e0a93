package imagewriter

import "os"

// target is a destination of the image: a block device (or, in tests, a
// regular file) opened for aligned direct writes.
type target interface {
	// WriteAt writes p at off. Aligned, sector-multiple writes go straight
	// to the device; anything else goes through the page cache.
	WriteAt(p []byte, off int64) (int, error)
	// ReadAt reads through the page cache (partition tables, signatures).
	ReadAt(p []byte, off int64) (int, error)
	// ReadDirectAt reads bypassing the page cache where it can; p must be
	// aligned (read-back verify).
	ReadDirectAt(p []byte, off int64) (int, error)
	// ZeroRange makes [off, off+n) read as zeros without sending the
	// zeros: BLKZEROOUT on a device, fallocate on a file. The kernel
	// writes zero pages itself where the device cannot offload it.
	ZeroRange(off, n int64) error
	// ZeroOffload reports whether the device zeroes ranges without
	// writing them (write-zeroes support).
	ZeroOffload() bool
	// Size is the capacity in bytes.
	Size() int64
	// SectorSize is the logical sector size.
	SectorSize() int64
	// Flush makes every written byte durable (fsync, BLKFLSBUF).
	Flush() error
	// SyncPartitions makes the kernel's partitions of the device match
	// the table on it (BLKRRPART, then BLKPG for what that missed).
	SyncPartitions(parts []kernelPartition) error
	// PartitionPath is the device node of partition number n.
	PartitionPath(n int) string
	// File is the buffered descriptor, for go-diskfs.
	File() *os.File
	// IsBlock reports whether the target is a block device.
	IsBlock() bool
	// Close releases the device.
	Close() error
	// Path names the device.
	Path() string
}

// kernelPartition is a partition as the kernel should know it, in bytes.
type kernelPartition struct {
	Number        int
	Start, Length int64
}
