//go:build !linux || !(amd64 || arm64 || ppc64le || riscv64 || s390x)

package bmc

import (
	"context"
	"errors"
	"runtime"
)

// DefaultDevice is the first IPMI device.
const DefaultDevice = "/dev/ipmi0"

// ErrUnsupported is returned where the Linux IPMI device interface is not
// available.
var ErrUnsupported = errors.New("bmc: the Linux IPMI device needs 64-bit Linux, not " + runtime.GOOS + "/" + runtime.GOARCH)

// Device is an IPMI device; on this platform it cannot be opened.
type Device struct{}

// Open fails with ErrUnsupported.
func Open(path string) (*Device, error) { return nil, ErrUnsupported }

// Close does nothing.
func (d *Device) Close() error { return nil }

// Exchange fails with ErrUnsupported.
func (d *Device) Exchange(ctx context.Context, netFn, cmd byte, data []byte) ([]byte, error) {
	return nil, ErrUnsupported
}
