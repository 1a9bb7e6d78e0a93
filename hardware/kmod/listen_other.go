//go:build !linux

package kmod

import (
	"context"
	"errors"
)

// ErrOverflow is returned by Listener.Next when the kernel dropped events
// because the socket's buffer was full: the caller should rescan sysfs.
var ErrOverflow = errors.New("uevent socket overflowed: events were lost")

// Listener receives kernel uevents; only Linux has them.
type Listener struct{}

// Listen fails outside Linux.
func Listen() (*Listener, error) { return nil, errors.ErrUnsupported }

// Next fails outside Linux.
func (*Listener) Next(context.Context) (Event, error) { return Event{}, errors.ErrUnsupported }

// Close does nothing outside Linux.
func (*Listener) Close() error { return nil }
