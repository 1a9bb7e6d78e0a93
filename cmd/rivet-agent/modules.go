package main

import (
	"context"
	"log/slog"

	"github.com/rivetmetal/rivet/hardware/kmod"
)

// startModuleLoading loads the kernel module of every device of the
// machine, by modalias (coldplug), returns once they settled, and keeps
// loading modules for devices that appear later (hotplug) until the
// returned function is called. A failure is logged and the agent goes on
// with the drivers it has.
func startModuleLoading(ctx context.Context, log *slog.Logger) (stop func()) {
	s, err := kmod.Start(ctx, kmod.Config{Logger: log.With("component", "kmod")})
	if err != nil {
		log.Warn("kernel modules not loaded by device", "error", err)
		return func() {}
	}
	return s.Stop
}
