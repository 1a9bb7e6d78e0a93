package manager

import (
	"context"
	"errors"
	"fmt"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/erase"
)

// EraseRequest is one disk's erase: the node's erase settings (from its
// driver_internal_info) and where progress goes.
type EraseRequest struct {
	NodeInfo
	Settings erase.Settings
	// Progress receives the disk's progress; it is never nil and must not
	// block.
	Progress erase.ProgressFunc
}

// DeviceEraser erases whole disks (IPA's erase_block_device), for the
// erase_devices clean step. It is called for one disk at a time, possibly
// for several disks at once, and only for disks the agent may erase (not
// read-only, not the ramdisk's boot medium, not in use, no shared
// filesystem).
type DeviceEraser interface {
	// EraseDevice erases d and reports the method it used. A Result
	// whose Err wraps ErrNotHandled hands the disk to the next manager.
	EraseDevice(ctx context.Context, d hardware.BlockDevice, req EraseRequest) erase.Result
}

// MetadataEraser destroys the partition tables and signatures of disks,
// for erase_devices_metadata; it is called like DeviceEraser.
type MetadataEraser interface {
	// EraseMetadata erases d's metadata. A Result whose Err wraps
	// ErrNotHandled hands the disk to the next manager.
	EraseMetadata(ctx context.Context, d hardware.BlockDevice, req EraseRequest) erase.Result
}

// EraseDevice erases d with the most supported DeviceEraser that handles
// it.
func (s *Set) EraseDevice(ctx context.Context, d hardware.BlockDevice, req EraseRequest) erase.Result {
	return s.eraseWith(d, "erase_devices", func(m Manager) (erase.Result, bool) {
		e, ok := m.(DeviceEraser)
		if !ok {
			return erase.Result{}, false
		}
		return e.EraseDevice(ctx, d, s.withProgress(req)), true
	})
}

// EraseMetadata erases d's metadata with the most supported
// MetadataEraser that handles it.
func (s *Set) EraseMetadata(ctx context.Context, d hardware.BlockDevice, req EraseRequest) erase.Result {
	return s.eraseWith(d, "erase_devices_metadata", func(m Manager) (erase.Result, bool) {
		e, ok := m.(MetadataEraser)
		if !ok {
			return erase.Result{}, false
		}
		return e.EraseMetadata(ctx, d, s.withProgress(req)), true
	})
}

func (s *Set) withProgress(req EraseRequest) EraseRequest {
	if req.Progress == nil {
		req.Progress = func(erase.Progress) {}
	}
	return req
}

// eraseWith walks the managers, most supported first, until one handles
// the disk.
func (s *Set) eraseWith(d hardware.BlockDevice, what string, call func(Manager) (erase.Result, bool)) erase.Result {
	for _, m := range s.managers {
		r, ok := call(m.m)
		if !ok {
			continue
		}
		if errors.Is(r.Err, ErrNotHandled) {
			s.log.Debug("hardware manager passes the disk on", "manager", m.Name, "device", d.Path, "erase", what)
			continue
		}
		return r
	}
	return erase.Result{Err: fmt.Errorf("%s %s: %w", what, d.Path, ErrNoManager)}
}
