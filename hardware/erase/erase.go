package erase

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/hardware"
)

// Settings are the node's erase settings, as Ironic passes them in
// driver_internal_info. DefaultSettings gives Ironic's defaults.
type Settings struct {
	// Iterations is the number of random overwrite passes
	// (agent_erase_devices_iterations).
	Iterations int
	// Zeroize adds a final pass of zeros (agent_erase_devices_zeroize).
	Zeroize bool
	// ATASecureErase allows ATA security erase
	// (agent_enable_ata_secure_erase).
	ATASecureErase bool
	// NVMeSecureErase allows NVMe format (agent_enable_nvme_secure_erase).
	NVMeSecureErase bool
	// ContinueIfSecureEraseFailed falls back to overwriting when a
	// hardware erase fails (agent_continue_if_secure_erase_failed);
	// otherwise the failure is the device's result.
	ContinueIfSecureEraseFailed bool
}

// DefaultSettings are Ironic's defaults: one random pass plus zeros,
// hardware erase allowed, no fallback after a failed hardware erase.
func DefaultSettings() Settings {
	return Settings{Iterations: 1, Zeroize: true, ATASecureErase: true, NVMeSecureErase: true}
}

// Methods a disk was erased with.
const (
	MethodNVMeCrypto   = "nvme-format-crypto-erase"
	MethodNVMeUserData = "nvme-format-user-data-erase"
	MethodATA          = "ata-secure-erase"
	MethodATAEnhanced  = "ata-enhanced-secure-erase"
	MethodOverwrite    = "overwrite"
	MethodDiscard      = "discard"
	MethodMetadata     = "metadata"
)

// Progress is the state of one disk's erase.
type Progress struct {
	Device string
	Method string
	// Pass is the current pass (1-based) of Passes; zero for one-shot
	// methods.
	Pass, Passes int
	// Done and Total count bytes of the current pass.
	Done, Total int64
	StartedAt   time.Time
	UpdatedAt   time.Time
}

// Result is the outcome for one disk.
type Result struct {
	Device string
	// Method is what erased the disk; empty when skipped or failed.
	Method string
	// Skipped says why the disk was left alone (read-only, boot medium,
	// settings asking for no passes); empty otherwise.
	Skipped string
	// Err is the failure, nil on success or skip.
	Err      error
	Duration time.Duration
}

// ProgressFunc receives progress; it must not block.
type ProgressFunc func(Progress)

// Func erases one device.
type Func func(ctx context.Context, d hardware.BlockDevice, progress ProgressFunc) Result

// orNop returns p, or a no-op when p is nil.
func orNop(p ProgressFunc) ProgressFunc {
	if p == nil {
		return func(Progress) {}
	}
	return p
}

// SkipReason returns why a disk must never be erased (it is read-only, or
// the medium the ramdisk itself came from), or "" when it may be.
func SkipReason(d hardware.BlockDevice) string {
	switch {
	case d.ReadOnly:
		return "read-only device"
	case d.BootMedia != "":
		return "boot medium of this ramdisk: " + d.BootMedia
	}
	return ""
}

// All erases devs with fn, at most concurrency at a time (values below 1
// mean 1), and returns their results in the order of devs. A cancelled
// context stops disks not yet started; those report the context's error.
func All(ctx context.Context, devs []hardware.BlockDevice, concurrency int, fn Func, progress ProgressFunc, log *slog.Logger) []Result {
	if concurrency < 1 {
		concurrency = 1
	}
	if log == nil {
		log = slog.Default()
	}
	if progress == nil {
		progress = func(Progress) {}
	}
	results := make([]Result, len(devs))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, d := range devs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = Result{Device: d.Path, Err: fmt.Errorf("erase %s: not started: %w", d.Path, ctx.Err())}
			continue
		}
		wg.Add(1)
		go func(i int, d hardware.BlockDevice) {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			log.Info("erasing disk", "device", d.Path, "size", d.Size)
			r := fn(ctx, d, progress)
			r.Device = d.Path
			r.Duration = time.Since(start)
			switch {
			case r.Err != nil:
				log.Error("erasing disk failed", "device", d.Path, "seconds", r.Duration.Seconds(), "error", r.Err)
			case r.Skipped != "":
				log.Warn("disk not erased", "device", d.Path, "reason", r.Skipped)
			default:
				log.Info("disk erased", "device", d.Path, "method", r.Method, "seconds", r.Duration.Seconds())
			}
			results[i] = r
		}(i, d)
	}
	wg.Wait()
	return results
}

// Errors joins the failures of results, nil when every disk succeeded or
// was skipped.
func Errors(results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

// unlessSkipped wraps an erase so that the devices skip names (read-only
// devices, the ramdisk's boot medium) are reported as skipped and never
// reach it.
func unlessSkipped(erase Func) Func {
	return func(ctx context.Context, d hardware.BlockDevice, progress ProgressFunc) Result {
		if why := SkipReason(d); why != "" {
			return Result{Skipped: why}
		}
		return erase(ctx, d, progress)
	}
}

// MetadataFunc is the Func of erase_devices_metadata.
func MetadataFunc() Func {
	return unlessSkipped(func(ctx context.Context, d hardware.BlockDevice, progress ProgressFunc) Result {
		if err := Metadata(ctx, d, progress); err != nil {
			return Result{Err: err}
		}
		return Result{Method: MethodMetadata}
	})
}

// DeviceFunc is the Func of erase_devices with the node's settings.
func DeviceFunc(s Settings, log *slog.Logger) Func {
	if log == nil {
		log = slog.Default()
	}
	return unlessSkipped(func(ctx context.Context, d hardware.BlockDevice, progress ProgressFunc) Result {
		return eraseDevice(ctx, d, s, orNop(progress), log)
	})
}

// ExpressFunc is the Func of erase_devices_express.
func ExpressFunc(s Settings, log *slog.Logger) Func {
	if log == nil {
		log = slog.Default()
	}
	return unlessSkipped(func(ctx context.Context, d hardware.BlockDevice, progress ProgressFunc) Result {
		return eraseExpress(ctx, d, s, orNop(progress), log)
	})
}
