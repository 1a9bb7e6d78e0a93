//go:build !linux

package erase

import "fmt"

// openBlockDevice fails off Linux: erasing needs Linux block ioctls.
func openBlockDevice(path string, direct bool) (device, error) {
	return nil, fmt.Errorf("open %s for erasing: %w", path, errUnsupported)
}
