package writebench

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// allocate gives the file's first size bytes blocks (fallocate mode 0),
// keeping what they hold.
func allocate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fallocate %s: %w", path, err)
	}
	return nil
}
