package erase

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blockDevice is a disk opened through its device node.
type blockDevice struct {
	*os.File
	size int64
}

func openBlockDevice(path string, direct bool) (device, error) {
	flags := os.O_RDWR | unix.O_EXCL | unix.O_CLOEXEC
	if direct {
		flags |= unix.O_DIRECT
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s for erasing: %w", path, err)
	}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		err := error(errno)
		// Not a block device (tests hand regular files): use the length.
		fi, serr := f.Stat()
		if serr != nil || fi.Mode().IsDir() {
			f.Close()
			return nil, fmt.Errorf("size of %s: %w", path, os.NewSyscallError("ioctl(BLKGETSIZE64)", err))
		}
		size = uint64(fi.Size())
	}
	return &blockDevice{File: f, size: int64(size)}, nil
}

func (d *blockDevice) Size() int64 { return d.size }

func (d *blockDevice) ZeroOut(off, n int64) error {
	return d.rangeIoctl(unix.BLKZEROOUT, "BLKZEROOUT", off, n)
}

func (d *blockDevice) Discard(off, n int64, secure bool) error {
	if secure {
		return d.rangeIoctl(unix.BLKSECDISCARD, "BLKSECDISCARD", off, n)
	}
	return d.rangeIoctl(unix.BLKDISCARD, "BLKDISCARD", off, n)
}

func (d *blockDevice) rangeIoctl(req uint, name string, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), uintptr(req), uintptr(unsafe.Pointer(&r[0])))
	switch {
	case errno == 0:
		return nil
	case errors.Is(errno, unix.ENOTTY), errors.Is(errno, unix.EOPNOTSUPP), errors.Is(errno, unix.EINVAL):
		return fmt.Errorf("ioctl(%s) on %s: %w (%w)", name, d.Name(), errUnsupported, errno)
	default:
		return fmt.Errorf("%s: %w", d.Name(), os.NewSyscallError("ioctl("+name+")", errno))
	}
}

func (d *blockDevice) RereadPartitions() error {
	if _, err := unix.IoctlRetInt(int(d.Fd()), unix.BLKRRPART); err != nil {
		return fmt.Errorf("%s: %w", d.Name(), os.NewSyscallError("ioctl(BLKRRPART)", err))
	}
	return nil
}
