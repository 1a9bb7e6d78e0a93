//go:build !linux

package netup

import (
	"context"
	"errors"
	"log/slog"
)

// Configurator configures the ramdisk's network (Linux only).
type Configurator struct {
	Log     *slog.Logger
	SysRoot string
}

// Configure is not supported off Linux.
func (Configurator) Configure(context.Context, string) error {
	return errors.New("network configuration is only supported on Linux")
}
