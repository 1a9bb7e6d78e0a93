//go:build !linux

package writebench

import "errors"

// allocate needs Linux's fallocate; the benchmark's loop devices need
// Linux anyway.
func allocate(path string, size int64) error {
	return errors.New("writebench: allocating " + path + " needs Linux")
}
