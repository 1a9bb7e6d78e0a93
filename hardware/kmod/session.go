package kmod

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Config configures Start. The zero value loads from the running kernel's
// /lib/modules/<release> with options from /proc/cmdline.
type Config struct {
	// ModulesDir is the directory of modules.dep and modules.alias.
	// Zero: /lib/modules/<uname -r>.
	ModulesDir string
	// Cmdline is the kernel command line read for module options. Zero:
	// the contents of /proc/cmdline.
	Cmdline *string
	// Workers bounds the modules loaded at once. Zero: DefaultWorkers.
	Workers int
	// SettleQuiet and SettleLimit: after coldplug, Start waits until no
	// device has been announced and no load has run for SettleQuiet, at
	// most SettleLimit (devices made by the drivers just loaded, such as
	// virtio NICs and SCSI disks, get their modules before Start
	// returns). Zero: DefaultSettleQuiet and DefaultSettleLimit.
	SettleQuiet, SettleLimit time.Duration
	// Logger receives what was loaded, what failed and which devices have
	// no driver. Zero: slog.Default().
	Logger *slog.Logger
}

// open resolves what Start and Modprobe share: the logger, the module
// index of ModulesDir (the running kernel's by default) and the module
// options of the kernel command line.
func (cfg Config) open() (*slog.Logger, *Index, ModuleOptions, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	dir := cfg.ModulesDir
	if dir == "" {
		rel, err := release()
		if err != nil {
			return nil, nil, ModuleOptions{}, err
		}
		dir = filepath.Join("/lib/modules", rel)
	}
	ix, err := LoadIndex(dir)
	if err != nil {
		return nil, nil, ModuleOptions{}, err
	}
	var cmdline string
	if cfg.Cmdline != nil {
		cmdline = *cfg.Cmdline
	} else if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		cmdline = string(b)
	}
	return log, ix, ParseCmdline(cmdline), nil
}

// Defaults for Config.SettleQuiet and Config.SettleLimit.
const (
	DefaultSettleQuiet = 300 * time.Millisecond
	DefaultSettleLimit = 10 * time.Second
)

// Session is module loading for the running machine: Start returns once
// the devices present at boot have their modules (coldplug), and the
// Session keeps loading modules for devices that appear (hotplug) until
// Stop.
type Session struct {
	plugger *Plugger
	log     *slog.Logger
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

// Start opens the uevent socket, walks sysfs loading the module of every
// device, follows uevents in the background, waits for the devices to
// settle (see Config) and logs the report. If the
// uevent socket cannot be opened, coldplug still runs and the error is
// logged. It fails only when the module index cannot be read.
func Start(ctx context.Context, cfg Config) (*Session, error) {
	log, ix, opts, err := cfg.open()
	if err != nil {
		return nil, err
	}
	loader := NewLoader(ix, LoaderOptions{Logger: log, Params: opts.Params, Blacklist: opts.Blacklist})
	p := NewPlugger(ix, loader, PluggerOptions{Workers: cfg.Workers, Logger: log})

	// Subscribe before the walk: a device created while it runs (a disk
	// found by a controller driver just loaded) arrives as an event.
	lis, lerr := Listen()
	if lerr != nil {
		log.Warn("no uevents: devices that appear after boot get no module", "error", lerr)
	}
	start := time.Now()
	if err := p.Coldplug(ctx); err != nil {
		if lis != nil {
			lis.Close()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("kmod: coldplug: %w", err)
		}
		log.Warn("coldplug", "error", err)
	}

	fctx, cancel := context.WithCancel(ctx)
	s := &Session{plugger: p, log: log, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if lis == nil {
			<-fctx.Done()
			p.Wait()
			return
		}
		defer lis.Close()
		if err := p.Follow(fctx, lis); err != nil && fctx.Err() == nil {
			log.Warn("uevents: stopped following", "error", err)
		}
	}()
	quiet, limit := cfg.SettleQuiet, cfg.SettleLimit
	if quiet <= 0 {
		quiet = DefaultSettleQuiet
	}
	if limit <= 0 {
		limit = DefaultSettleLimit
	}
	settled := lis == nil || p.Settle(ctx, quiet, limit)
	log.Info("kernel modules for the devices present loaded", "settled", settled,
		"took", time.Since(start).Round(time.Millisecond))
	LogReport(log, p.Report())
	return s, nil
}

// Report is a snapshot of what was loaded and which devices have no
// driver now.
func (s *Session) Report() Report { return s.plugger.Report() }

// Stop stops following uevents and waits for the loads in progress.
func (s *Session) Stop() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
	})
}
