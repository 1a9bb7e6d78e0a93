//go:build !linux

package lldp

import (
	"errors"
	"fmt"
	"log/slog"
)

// openPort fails: raw packet sockets are Linux's.
func openPort(name string, _ *slog.Logger) (port, error) {
	return nil, fmt.Errorf("lldp: listen on %s: %w", name, errors.ErrUnsupported)
}
