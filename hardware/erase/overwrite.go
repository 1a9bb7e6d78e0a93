package erase

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/rivetmetal/rivet/hardware"
)

// chunk is the size of each overwrite write.
const chunk = 4 << 20

// The hardware erase methods; tests replace them.
var (
	nvmeErase = nvmeFormat
	ataErase  = ataSecureErase
)

// eraseDevice is erase_devices for one disk: a hardware erase when the
// disk supports one and the settings allow it, else overwriting.
func eraseDevice(ctx context.Context, d hardware.BlockDevice, s Settings, progress ProgressFunc, log *slog.Logger) Result {
	hw := []struct {
		allowed bool
		run     func(context.Context, hardware.BlockDevice) (string, error)
	}{
		{s.NVMeSecureErase, nvmeErase},
		{s.ATASecureErase, ataErase},
	}
	for _, h := range hw {
		if !h.allowed {
			continue
		}
		method, err := h.run(ctx, d)
		switch {
		case err == nil:
			return Result{Method: method}
		case errors.Is(err, errUnsupported):
			continue
		case !s.ContinueIfSecureEraseFailed:
			return Result{Err: err}
		default:
			log.Warn("hardware erase failed; overwriting the disk instead (agent_continue_if_secure_erase_failed)", "device", d.Path, "error", err)
		}
	}
	if s.Iterations <= 0 && !s.Zeroize {
		return Result{Skipped: "the node's erase settings ask for no overwrite pass (agent_erase_devices_iterations=0, agent_erase_devices_zeroize=false)"}
	}
	if err := overwrite(ctx, d, s, progress); err != nil {
		return Result{Err: err}
	}
	return Result{Method: MethodOverwrite}
}

// eraseExpress is erase_devices_express for one disk: NVMe format, else a
// discard of the whole disk, else the metadata erase.
func eraseExpress(ctx context.Context, d hardware.BlockDevice, s Settings, progress ProgressFunc, log *slog.Logger) Result {
	if s.NVMeSecureErase {
		method, err := nvmeErase(ctx, d)
		switch {
		case err == nil:
			return Result{Method: method}
		case !errors.Is(err, errUnsupported):
			log.Warn("NVMe format failed; trying a discard", "device", d.Path, "error", err)
		}
	}
	dev, err := openDevice(d.Path, false)
	if err != nil {
		return Result{Err: fmt.Errorf("erase %s: %w", d.Path, err)}
	}
	start := time.Now()
	err = dev.Discard(0, dev.Size(), true)
	if errors.Is(err, errUnsupported) {
		err = dev.Discard(0, dev.Size(), false)
	}
	dev.Close()
	if err == nil {
		progress(Progress{Device: d.Path, Method: MethodDiscard, Done: d.Size, Total: d.Size, StartedAt: start, UpdatedAt: time.Now()})
		// A discard does not promise zeros; drop the metadata as well so
		// that nothing reads as a partition table afterwards.
		if err := Metadata(ctx, d, nil); err != nil {
			return Result{Err: err}
		}
		return Result{Method: MethodDiscard}
	}
	if !errors.Is(err, errUnsupported) {
		log.Warn("discard failed; erasing the metadata only", "device", d.Path, "error", err)
	}
	if err := Metadata(ctx, d, progress); err != nil {
		return Result{Err: err}
	}
	return Result{Method: MethodMetadata}
}

// overwrite writes s.Iterations passes of random data over the whole disk,
// then a pass of zeros when s.Zeroize is set (shred -n N [-z]).
func overwrite(ctx context.Context, d hardware.BlockDevice, s Settings, progress ProgressFunc) error {
	dev, err := openDevice(d.Path, true)
	if err != nil {
		return fmt.Errorf("erase %s: %w", d.Path, err)
	}
	defer dev.Close()
	passes := max(s.Iterations, 0)
	if s.Zeroize {
		passes++
	}
	start := time.Now()
	report := func(pass int, done int64) {
		progress(Progress{Device: d.Path, Method: MethodOverwrite, Pass: pass, Passes: passes, Done: done, Total: dev.Size(),
			StartedAt: start, UpdatedAt: time.Now()})
	}
	for p := 1; p <= s.Iterations; p++ {
		if err := randomPass(ctx, dev, func(done int64) { report(p, done) }); err != nil {
			return fmt.Errorf("erase %s: random pass %d of %d: %w", d.Path, p, s.Iterations, err)
		}
	}
	if s.Zeroize {
		if err := zeroPass(ctx, dev, func(done int64) { report(passes, done) }); err != nil {
			return fmt.Errorf("erase %s: zero pass: %w", d.Path, err)
		}
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("erase %s: sync: %w", d.Path, err)
	}
	_ = dev.RereadPartitions()
	return nil
}

// randomPass fills the device with ChaCha8 output (seeded from the OS) in
// aligned chunks. A second goroutine generates the next chunk while the
// current one is written.
func randomPass(ctx context.Context, dev device, report func(int64)) error {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return err
	}
	rng := rand.NewChaCha8(seed)
	size := dev.Size()
	free := make(chan []byte, 3)
	full := make(chan []byte, 3)
	for i := 0; i < 3; i++ {
		free <- alignedBuffer(chunk)
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	genDone := make(chan struct{})
	go func() {
		defer close(genDone)
		defer close(full)
		for off := int64(0); off < size; off += chunk {
			var b []byte
			select {
			case b = <-free:
			case <-gctx.Done():
				return
			}
			_, _ = rng.Read(b) // ChaCha8.Read never fails
			full <- b
		}
	}()
	defer func() { cancel(); <-genDone }()
	var off int64
	last := time.Now()
	for b := range full {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(b)), size-off)
		if _, err := dev.WriteAt(b[:n], off); err != nil {
			return fmt.Errorf("write at offset %d: %w", off, err)
		}
		off += n
		free <- b
		if time.Since(last) > 500*time.Millisecond || off == size {
			report(off)
			last = time.Now()
		}
	}
	if off != size {
		return ctx.Err()
	}
	return nil
}

// zeroPass zeroes the device, through BLKZEROOUT when the device offers it
// (in 1 GiB steps, for progress and cancellation), else with writes.
func zeroPass(ctx context.Context, dev device, report func(int64)) error {
	size := dev.Size()
	const step = 1 << 30
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(step, size-off)
		err := dev.ZeroOut(off, n)
		if errors.Is(err, errUnsupported) && off == 0 {
			return zeroWrites(ctx, dev, report)
		}
		if err != nil {
			return fmt.Errorf("zero out at offset %d: %w", off, err)
		}
		off += n
		report(off)
	}
	return nil
}

func zeroWrites(ctx context.Context, dev device, report func(int64)) error {
	b := alignedBuffer(chunk)
	size := dev.Size()
	last := time.Now()
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(b)), size-off)
		if _, err := dev.WriteAt(b[:n], off); err != nil {
			return fmt.Errorf("write zeros at offset %d: %w", off, err)
		}
		off += n
		if time.Since(last) > 500*time.Millisecond || off == size {
			report(off)
			last = time.Now()
		}
	}
	return nil
}
