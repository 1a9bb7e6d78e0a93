package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/erase"
	"github.com/rivetmetal/rivet/hardware/manager"
	"github.com/rivetmetal/rivet/wire"
)

// eraseSettings are the node's erase settings (driver_internal_info) and
// the concurrency of the erase.
type eraseSettings struct {
	erase.Settings
	concurrency int
	// guard refuses disks holding shared filesystems.
	guard bool
}

// eraseSettingsFromNode reads the settings Ironic passes in the node's
// driver_internal_info; a value of the wrong type is logged and the
// default kept.
func (a *Agent) eraseSettingsFromNode() eraseSettings {
	s := eraseSettings{Settings: erase.DefaultSettings(), concurrency: 4, guard: a.cfg.GuardSpecialFilesystems}
	dii := a.nodes.section("driver_internal_info")
	intOpt := func(key string, dst *int) {
		if v, ok := dii[key]; ok && v != nil {
			if f, ok := v.(float64); ok && f >= 0 && f == float64(int(f)) {
				*dst = int(f)
				return
			}
			a.log.Warn("ignoring a node erase setting of the wrong type; using the default", "key", key, "value", v, "default", *dst)
		}
	}
	boolOpt := func(key string, dst *bool) {
		if v, ok := dii[key]; ok && v != nil {
			if b, ok := v.(bool); ok {
				*dst = b
				return
			}
			a.log.Warn("ignoring a node erase setting of the wrong type; using the default", "key", key, "value", v, "default", *dst)
		}
	}
	intOpt("agent_erase_devices_iterations", &s.Iterations)
	boolOpt("agent_erase_devices_zeroize", &s.Zeroize)
	boolOpt("agent_enable_ata_secure_erase", &s.ATASecureErase)
	boolOpt("agent_enable_nvme_secure_erase", &s.NVMeSecureErase)
	boolOpt("agent_continue_if_ata_erase_failed", &s.ContinueIfSecureEraseFailed)
	boolOpt("agent_continue_if_secure_erase_failed", &s.ContinueIfSecureEraseFailed)
	intOpt("disk_erasure_concurrency", &s.concurrency)
	boolOpt("wipe_special_filesystems", &s.guard)
	s.guard = s.guard && a.cfg.GuardSpecialFilesystems
	if s.concurrency < 1 {
		s.concurrency = 1
	}
	return s
}

// diskLister lists the disks this agent may touch: every disk, or only
// ipa-block-devices when set.
func (a *Agent) diskLister() hardware.Lister {
	return hardware.Lister{Root: a.cfg.SysRoot, Allow: a.cfg.BlockDevices}
}

// eraseMetadataStep is erase_devices_metadata: each disk goes to the
// hardware managers' metadata erasers, the most supported first.
func (a *Agent) eraseMetadataStep(ctx context.Context, job manager.Progress) (any, error) {
	return a.eraseDisks(ctx, job, "erase_devices_metadata", func(s eraseSettings) erase.Func {
		return func(ctx context.Context, d hardware.BlockDevice, p erase.ProgressFunc) erase.Result {
			return a.managers.EraseMetadata(ctx, d, a.eraseRequest(s, p))
		}
	})
}

// eraseDevicesStep is erase_devices: each disk goes to the hardware
// managers' device erasers (IPA's erase_block_device), the most supported
// first.
func (a *Agent) eraseDevicesStep(ctx context.Context, job manager.Progress) (any, error) {
	return a.eraseDisks(ctx, job, "erase_devices", func(s eraseSettings) erase.Func {
		return func(ctx context.Context, d hardware.BlockDevice, p erase.ProgressFunc) erase.Result {
			return a.managers.EraseDevice(ctx, d, a.eraseRequest(s, p))
		}
	})
}

// eraseExpressStep is the generic erase_devices_express: a hardware erase
// where the disk offers a fast one, else its metadata.
func (a *Agent) eraseExpressStep(ctx context.Context, job manager.Progress) (any, error) {
	return a.eraseDisks(ctx, job, "erase_devices_express", func(s eraseSettings) erase.Func { return erase.ExpressFunc(s.Settings, a.log) })
}

// eraseRequest is what a hardware manager is told about one disk's erase.
func (a *Agent) eraseRequest(s eraseSettings, p erase.ProgressFunc) manager.EraseRequest {
	a.nodes.mu.Lock()
	node := a.nodes.node
	a.nodes.mu.Unlock()
	return manager.EraseRequest{NodeInfo: manager.NodeInfo{Node: node}, Settings: s.Settings, Progress: p}
}

// eraseDisks runs an erase over every disk this agent may touch, in
// parallel, publishing per-disk progress, and returns the per-disk
// results. Any failed disk fails the step (after the others finished).
// Disks that are read-only, the ramdisk's boot medium or in use never
// reach method.
func (a *Agent) eraseDisks(ctx context.Context, job manager.Progress, step string, method func(eraseSettings) erase.Func) (any, error) {
	s := a.eraseSettingsFromNode()
	devs, err := a.diskLister().List()
	if err != nil {
		return nil, newError("BlockDeviceEraseError", http.StatusInternalServerError, "Error erasing block device", err, "%s: %v", step, err)
	}
	if s.guard {
		var protected []string
		for _, d := range devs {
			if err := hardware.CheckSpecialFilesystems(a.devRoot(), d); errors.Is(err, hardware.ErrProtectedDevice) {
				protected = append(protected, err.Error())
			}
		}
		if len(protected) > 0 {
			a.log.Error("refusing to clean: a disk holds a shared filesystem; cleaning fails (set driver_internal_info.wipe_special_filesystems=false to override)",
				"step", step, "devices", protected)
			return nil, newError("ProtectedDeviceError", http.StatusInternalServerError, "Protected device located, cleaning aborted", nil,
				"%s", strings.Join(protected, "; "))
		}
	}
	a.log.Info("erase step starting", "step", step, "disks", len(devs), "concurrency", s.concurrency,
		"iterations", s.Iterations, "zeroize", s.Zeroize, "ata_secure_erase", s.ATASecureErase, "nvme_secure_erase", s.NVMeSecureErase)
	for _, d := range devs {
		job.SetDiskProgress(wire.DiskProgress{Device: d.Path, State: "pending", TotalBytes: d.Size})
	}
	inner := method(s)
	fn := func(ctx context.Context, d hardware.BlockDevice, p erase.ProgressFunc) erase.Result {
		if err := hardware.InUse(a.cfg.SysRoot, d); err != nil {
			return erase.Result{Err: fmt.Errorf("refusing to erase %s: %w", d.Path, err)}
		}
		if why := erase.SkipReason(d); why != "" {
			job.SetDiskProgress(wire.DiskProgress{Device: d.Path, State: "skipped", Message: why, TotalBytes: d.Size})
			return erase.Result{Skipped: why}
		}
		job.SetDiskProgress(wire.DiskProgress{Device: d.Path, State: "running", TotalBytes: d.Size})
		r := inner(ctx, d, p)
		dp := wire.DiskProgress{Device: d.Path, Method: r.Method, State: "done", TotalBytes: d.Size, BytesDone: d.Size}
		switch {
		case r.Err != nil:
			dp.State, dp.Message, dp.BytesDone = "failed", r.Err.Error(), 0
		case r.Skipped != "":
			dp.State, dp.Message, dp.BytesDone = "skipped", r.Skipped, 0
		}
		job.SetDiskProgress(dp)
		return r
	}
	progress := func(p erase.Progress) {
		rate := 0.0
		if el := p.UpdatedAt.Sub(p.StartedAt).Seconds(); el > 0 {
			rate = float64(p.Done) / el
		}
		job.SetDiskProgress(wire.DiskProgress{Device: p.Device, Method: p.Method, State: "running", Pass: p.Pass, Passes: p.Passes,
			BytesDone: p.Done, TotalBytes: p.Total, RateBytesPerSec: rate})
	}
	start := time.Now()
	results := erase.All(ctx, devs, s.concurrency, fn, progress, a.log)
	out := map[string]wire.EraseResult{}
	var failed []string
	for _, r := range results {
		er := wire.EraseResult{Method: r.Method, Skipped: r.Skipped, Seconds: r.Duration.Seconds()}
		if r.Err != nil {
			er.Error = r.Err.Error()
			failed = append(failed, r.Err.Error())
		}
		out[r.Device] = er
	}
	if len(failed) > 0 {
		return nil, newError("BlockDeviceEraseError", http.StatusInternalServerError, "Error erasing block device", erase.Errors(results),
			"%s failed on %d of %d disks: %s", step, len(failed), len(results), strings.Join(failed, "; "))
	}
	a.log.Info("erase step done", "step", step, "disks", len(results), "seconds", time.Since(start).Seconds())
	return out, nil
}

// devRoot is where device nodes are opened: the same root as sysfs.
func (a *Agent) devRoot() string { return a.cfg.SysRoot }

// erasePstoreStep removes the kernel's saved crash records
// (/sys/fs/pstore), which survive a reboot in firmware storage.
func (a *Agent) erasePstoreStep(ctx context.Context, _ manager.Progress) (any, error) {
	dir := filepath.Join(a.cfg.SysRoot, "sys/fs/pstore")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		a.log.Info("no pstore filesystem; nothing to erase", "dir", dir)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("erase pstore: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("erase pstore: %w", err)
	}
	a.log.Info("pstore erased", "records", len(ents))
	return nil, nil
}
