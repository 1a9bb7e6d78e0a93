//go:build !linux

package qemu

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

var sigterm = os.Interrupt

func detached() *syscall.SysProcAttr { return nil }

// attached is unused outside Linux: re-attaching needs pidfds and /proc.
type attached struct{ pid int }

func (a *attached) close()                                              {}
func (a *attached) alive() bool                                         { return false }
func (a *attached) stop(ctx context.Context, grace time.Duration) error { return errors.ErrUnsupported }

func attach(pidFile, uuid string) (*attached, error) { return nil, nil }
