package efivar

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// makeMutable clears efivarfs's immutable flag on an existing variable so
// that it can be rewritten or deleted. Filesystems without the flag
// (a test's temp directory) are left alone.
func makeMutable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			return nil
		}
		return os.NewSyscallError("ioctl(FS_IOC_GETFLAGS)", err)
	}
	if flags&fsImmutableFL == 0 {
		return nil
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags&^fsImmutableFL); err != nil {
		return os.NewSyscallError("ioctl(FS_IOC_SETFLAGS)", err)
	}
	return nil
}

// fsImmutableFL is FS_IMMUTABLE_FL from linux/fs.h.
const fsImmutableFL = 0x00000010
