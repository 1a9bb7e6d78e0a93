//go:build !linux

package imagewriter

import "fmt"

func openTarget(path string) (target, error) {
	return nil, fmt.Errorf("%w: writing block devices is only supported on Linux", ErrTarget)
}
