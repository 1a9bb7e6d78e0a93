package imagewriter

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// deviceTarget writes through two descriptors of the same device: one with
// O_DIRECT for aligned chunks and a buffered one for an unaligned tail.
type deviceTarget struct {
	path    string
	direct  *os.File
	tail    *os.File
	size    int64
	sector  int64
	isBlock bool
}

// openTarget opens path for writing. A block device is opened O_EXCL, so a
// device that is mounted or held by another claimant fails with EBUSY.
func openTarget(path string) (target, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	t := &deviceTarget{path: path, sector: 512, isBlock: fi.Mode()&os.ModeDevice != 0}
	flags := os.O_RDWR | unix.O_DIRECT | unix.O_CLOEXEC
	if t.isBlock {
		flags |= os.O_EXCL
	}
	t.direct, err = os.OpenFile(path, flags, 0)
	if err != nil && !t.isBlock && errors.Is(err, unix.EINVAL) {
		// tmpfs and some other filesystems refuse O_DIRECT.
		t.direct, err = os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%w: open %s exclusively: %w (mounted, or held by another process or device)", ErrTarget, path, err)
		}
		return nil, fmt.Errorf("%w: open %s: %w", ErrTarget, path, err)
	}
	t.tail, err = os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.direct.Close()
		return nil, fmt.Errorf("%w: open %s: %w", ErrTarget, path, err)
	}
	if t.isBlock {
		fd := int(t.direct.Fd())
		size, err := unix.IoctlGetInt(fd, unix.BLKGETSIZE64)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("%w: %s: %w", ErrTarget, path, os.NewSyscallError("ioctl(BLKGETSIZE64)", err))
		}
		t.size = int64(size)
		if ss, err := unix.IoctlGetInt(fd, unix.BLKSSZGET); err == nil && ss > 0 {
			t.sector = int64(ss)
		}
	} else {
		t.size = fi.Size()
	}
	return t, nil
}

func (t *deviceTarget) Path() string { return t.path }
func (t *deviceTarget) Size() int64  { return t.size }

func (t *deviceTarget) WriteAt(p []byte, off int64) (int, error) {
	f := t.direct
	if int64(len(p))%t.sector != 0 || off%t.sector != 0 {
		f = t.tail
	}
	n, err := f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("%w: write %s at offset %d: %w", ErrTarget, t.path, off, err)
	}
	return n, nil
}

func (t *deviceTarget) Flush() error {
	for _, f := range []*os.File{t.tail, t.direct} {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("%w: fsync %s: %w", ErrTarget, t.path, err)
		}
	}
	if t.isBlock {
		if err := unix.IoctlSetInt(int(t.direct.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrTarget, t.path, os.NewSyscallError("ioctl(BLKFLSBUF)", err))
		}
	}
	return nil
}

func (t *deviceTarget) RereadPartitions() error {
	if !t.isBlock {
		return nil
	}
	err := unix.IoctlSetInt(int(t.direct.Fd()), unix.BLKRRPART, 0)
	if err == nil || errors.Is(err, unix.EINVAL) {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrTarget, t.path, os.NewSyscallError("ioctl(BLKRRPART)", err))
}

func (t *deviceTarget) Close() error {
	err1 := t.tail.Close()
	err2 := t.direct.Close()
	return errors.Join(err1, err2)
}
