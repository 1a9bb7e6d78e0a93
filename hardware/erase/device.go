package erase

import (
	"errors"
	"io"
)

// device is an open disk.
type device interface {
	io.ReaderAt
	io.WriterAt
	// Size is the device's size in bytes.
	Size() int64
	// Sync flushes written data to the device.
	Sync() error
	Close() error
	// ZeroOut zeroes [off, off+n) through the kernel (BLKZEROOUT), which
	// offloads it to the device or the loop file; errUnsupported when
	// the device cannot.
	ZeroOut(off, n int64) error
	// Discard discards [off, off+n) (BLKSECDISCARD when secure, else
	// BLKDISCARD); errUnsupported when the device cannot.
	Discard(off, n int64, secure bool) error
	// RereadPartitions asks the kernel to re-read the partition table
	// (BLKRRPART).
	RereadPartitions() error
}

// errUnsupported marks an operation or hardware erase method the device
// does not support; the caller moves on to the next method.
var errUnsupported = errors.New("not supported by the device")

// openDevice opens a disk for erasing: read-write, O_EXCL, and O_DIRECT
// when direct is set (full-disk overwrites bypass the page cache).
var openDevice = openBlockDevice

// alignment is the buffer alignment O_DIRECT needs (a page covers every
// logical block size in use).
const alignment = 4096

// alignedBuffer returns a zeroed buffer of n bytes whose start is aligned
// for O_DIRECT.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+alignment)
	off := 0
	if r := int(uintptrOf(b) % alignment); r != 0 {
		off = alignment - r
	}
	return b[off : off+n : off+n]
}
