//go:build !linux

package bootloader

import (
	"context"
	"errors"
)

var errUnsupported = errors.New("bootloader installation needs Linux")

// systemMounter fails off Linux.
type systemMounter struct{}

func (systemMounter) Mount(string, string, string) error { return errUnsupported }
func (systemMounter) Bind(string, string) error          { return errUnsupported }
func (systemMounter) Unmount(string) error               { return errUnsupported }
func (systemMounter) DeviceNode(string, int, int, string) (string, error) {
	return "", errUnsupported
}

func runChroot(context.Context, string, []string) ([]byte, error) { return nil, errUnsupported }
