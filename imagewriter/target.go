package imagewriter

// target is a destination of the image: a block device (or, in tests, a
// regular file) opened for aligned direct writes.
type target interface {
	// WriteAt writes p at off. Aligned, sector-multiple writes go straight
	// to the device; an unaligned tail goes through the page cache.
	WriteAt(p []byte, off int64) (int, error)
	// Size is the capacity in bytes.
	Size() int64
	// Flush makes every written byte durable (fsync, BLKFLSBUF).
	Flush() error
	// RereadPartitions asks the kernel to re-read the partition table; a
	// device that cannot (a loop device without partscan) is not an error.
	RereadPartitions() error
	// Close releases the device.
	Close() error
	// Path names the device.
	Path() string
}
