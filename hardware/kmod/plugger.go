package kmod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ReportBuses are the buses whose devices Report lists when no driver is
// bound to them: the ones a NIC, a disk or their controller sits on.
// Devices of other buses (cpu, acpi, platform ...) often have no driver on
// purpose.
var ReportBuses = []string{"pci", "usb", "virtio", "scsi", "nvme", "hid", "pcmcia", "vmbus"}

// DefaultWorkers is how many modules a Plugger loads at once when
// PluggerOptions.Workers is zero: driver probes often sleep (controller
// resets, firmware handshakes), so some overlap shortens the boot.
const DefaultWorkers = 4

// PluggerOptions configure a Plugger.
type PluggerOptions struct {
	// SysRoot is the directory holding sys/ (sysfs). Zero: "/".
	SysRoot string
	// Workers bounds the modules loaded at once. Zero: DefaultWorkers.
	Workers int
	// Logger receives device and summary lines. Zero: slog.Default().
	Logger *slog.Logger
}

// Plugger loads the modules for devices: those in sysfs now (Coldplug)
// and those announced later by uevents (Follow).
type Plugger struct {
	ix      *Index
	loader  *Loader
	sysRoot string
	log     *slog.Logger
	sem     chan struct{}
	wg      sync.WaitGroup
	// pending counts loads started by Handle and not finished; lastAdd
	// is when Handle last saw a device (UnixNano): Settle watches both.
	pending atomic.Int64
	lastAdd atomic.Int64

	mu      sync.Mutex
	devices map[string]*Device // by DevPath
}

// Device is a device with a modalias and the modules that match it.
type Device struct {
	// DevPath is the device's path under /sys.
	DevPath string `json:"devpath"`
	// Subsystem is its bus.
	Subsystem string `json:"subsystem"`
	// Modalias is what the device announced.
	Modalias string `json:"modalias"`
	// Modules are the modules whose aliases match (none: this ramdisk has
	// no driver for it).
	Modules []string `json:"modules,omitempty"`
}

// Report is what the module loading did.
type Report struct {
	// Loaded are the modules loaded into the kernel, in order
	// (dependencies included).
	Loaded []string `json:"loaded"`
	// Failed are the modules that could not be loaded.
	Failed []Failure `json:"failed,omitempty"`
	// Devices is how many devices with a modalias were seen.
	Devices int `json:"devices"`
	// NoDriver are the devices on ReportBuses with no driver bound.
	NoDriver []Device `json:"no_driver,omitempty"`
}

// NewPlugger returns a Plugger loading modules of ix with loader.
func NewPlugger(ix *Index, loader *Loader, opts PluggerOptions) *Plugger {
	p := &Plugger{ix: ix, loader: loader, sysRoot: opts.SysRoot, log: opts.Logger, devices: map[string]*Device{}}
	if p.sysRoot == "" {
		p.sysRoot = "/"
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	w := opts.Workers
	if w <= 0 {
		w = DefaultWorkers
	}
	p.sem = make(chan struct{}, w)
	return p
}

// Coldplug loads the modules of every device in sysfs that has a modalias
// and waits for the loads to finish. A module that fails is logged and
// the others go on; the error is only for an unreadable sysfs or ctx.
func (p *Plugger) Coldplug(ctx context.Context) error {
	entries, err := filepath.Glob(filepath.Join(p.sysRoot, "sys", "bus", "*", "devices", "*"))
	if err != nil {
		return fmt.Errorf("kmod: list devices: %w", err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("kmod: no devices under %s: %w", filepath.Join(p.sysRoot, "sys", "bus"), os.ErrNotExist)
	}
	var devs []Device
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(e, "modalias"))
		if err != nil {
			continue // no modalias: nothing to load for it
		}
		alias := strings.TrimSpace(string(b))
		if alias == "" {
			continue
		}
		devs = append(devs, Device{DevPath: p.devPath(e), Subsystem: filepath.Base(filepath.Dir(filepath.Dir(e))), Modalias: alias})
	}
	var wg sync.WaitGroup
	for _, d := range devs {
		for _, m := range p.add(d) {
			if err := p.acquire(ctx); err != nil {
				wg.Wait()
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer p.release()
				_ = p.loader.Load(ctx, m)
			}()
		}
	}
	wg.Wait()
	return ctx.Err()
}

// devPath is a device's path under /sys, as uevents name it: the target
// of a /sys/bus/*/devices/* link.
func (p *Plugger) devPath(entry string) string {
	sys := filepath.Join(p.sysRoot, "sys")
	if real, err := filepath.EvalSymlinks(entry); err == nil {
		entry = real
		if rs, err := filepath.EvalSymlinks(sys); err == nil {
			sys = rs
		}
	}
	rel, err := filepath.Rel(sys, entry)
	if err != nil {
		return entry
	}
	return "/" + filepath.ToSlash(rel)
}

// add records a device and returns the modules to load for it.
func (p *Plugger) add(d Device) []string {
	d.Modules = p.ix.Lookup(d.Modalias)
	p.mu.Lock()
	_, seen := p.devices[d.DevPath]
	dc := d
	p.devices[d.DevPath] = &dc
	p.mu.Unlock()
	if !seen {
		if len(d.Modules) == 0 {
			p.log.Debug("device has no module in this ramdisk", "device", d.DevPath, "modalias", d.Modalias)
		} else {
			p.log.Debug("device", "device", d.DevPath, "modalias", d.Modalias, "modules", strings.Join(d.Modules, ","))
		}
	}
	return d.Modules
}

func (p *Plugger) acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Plugger) release() { <-p.sem }

// Handle loads the modules for a uevent that announces a device with a
// modalias ("add") and forgets a device that was removed; other events are
// ignored. The loads run in the
// background (Wait waits for them).
func (p *Plugger) Handle(ctx context.Context, ev Event) {
	if ev.Action == "remove" {
		p.mu.Lock()
		delete(p.devices, ev.DevPath)
		p.mu.Unlock()
		return
	}
	if ev.Action != "add" || ev.Modalias == "" {
		return
	}
	p.lastAdd.Store(time.Now().UnixNano())
	mods := p.add(Device{DevPath: ev.DevPath, Subsystem: ev.Subsystem, Modalias: ev.Modalias})
	for _, m := range mods {
		p.wg.Add(1)
		p.pending.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.pending.Add(-1)
			if p.acquire(ctx) != nil {
				return
			}
			defer p.release()
			_ = p.loader.Load(ctx, m)
		}()
	}
}

// EventSource yields uevents; *Listener is one.
type EventSource interface {
	Next(ctx context.Context) (Event, error)
}

// Follow handles the events of src until ctx ends, then waits for the
// loads it started. When src overflowed it walks sysfs again, so that no
// device is missed. It returns ctx's error, or src's if src fails.
func (p *Plugger) Follow(ctx context.Context, src EventSource) error {
	defer p.Wait()
	for {
		ev, err := src.Next(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrOverflow):
			p.log.Warn("uevents were lost; walking sysfs again")
			if err := p.Coldplug(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("sysfs walk after lost uevents", "error", err)
			}
		case err != nil:
			return err
		default:
			p.Handle(ctx, ev)
		}
	}
}

// Wait waits for the loads Handle started.
func (p *Plugger) Wait() { p.wg.Wait() }

// Settle waits, while Follow runs, until no load is in progress and no
// device has been announced for quiet, or until limit has passed, or ctx
// ends (what udevadm settle does for udev). It reports whether the
// devices settled.
func (p *Plugger) Settle(ctx context.Context, quiet, limit time.Duration) bool {
	start := time.Now()
	tick := time.NewTicker(quiet / 5)
	defer tick.Stop()
	for {
		last := time.Unix(0, p.lastAdd.Load())
		if p.pending.Load() == 0 && time.Since(last) >= quiet && time.Since(start) >= quiet {
			return true
		}
		if time.Since(start) >= limit {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// Report says which modules were loaded or failed and which devices on
// ReportBuses have no driver bound now.
func (p *Plugger) Report() Report {
	r := Report{Loaded: p.loader.Loaded(), Failed: p.loader.Failed()}
	if r.Loaded == nil {
		r.Loaded = []string{}
	}
	p.mu.Lock()
	devs := make([]Device, 0, len(p.devices))
	for _, d := range p.devices {
		devs = append(devs, *d)
	}
	p.mu.Unlock()
	r.Devices = len(devs)
	sort.Slice(devs, func(i, j int) bool { return devs[i].DevPath < devs[j].DevPath })
	for _, d := range devs {
		if !slices.Contains(ReportBuses, d.Subsystem) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(p.sysRoot, "sys", filepath.FromSlash(strings.TrimPrefix(d.DevPath, "/")), "driver")); err == nil {
			continue
		}
		r.NoDriver = append(r.NoDriver, d)
	}
	return r
}

// LogReport logs a report: one summary line, then one line per device
// without a driver.
func LogReport(log *slog.Logger, r Report) {
	failed := make([]string, len(r.Failed))
	for i, f := range r.Failed {
		failed[i] = f.Module
	}
	log.Info("kernel modules loaded by device", "loaded", len(r.Loaded), "modules", strings.Join(r.Loaded, ","),
		"failed", strings.Join(failed, ","), "devices", r.Devices, "without_driver", len(r.NoDriver))
	for _, d := range r.NoDriver {
		why := "no module for it in this ramdisk"
		if len(d.Modules) > 0 {
			why = "module " + strings.Join(d.Modules, ",") + " did not bind"
		}
		log.Info("device without a driver", "device", d.DevPath, "subsystem", d.Subsystem, "modalias", d.Modalias, "reason", why)
	}
}
