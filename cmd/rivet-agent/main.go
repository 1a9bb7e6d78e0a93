// Command rivet-agent is the Rivet deploy agent, a drop-in for the Ironic
// Python Agent. In the deploy ramdisk it reads its settings from the kernel
// command line; for local runs every kernel parameter is also a flag of the
// same name, and flags win.
//
//	rivet-agent --ipa-api-url=http://127.0.0.1:6385 --ipa-block-devices=/dev/loop3
//	rivet-agent --ipa-standalone --ipa-listen-host=127.0.0.1 --ipa-block-devices=/dev/loop3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/rivetmetal/rivet/agent"
	"github.com/rivetmetal/rivet/agent/netup"
	"github.com/rivetmetal/rivet/internal/kernelcmdline"
)

func main() {
	inRamdisk := agent.InRamdisk()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if inRamdisk {
		defer startModuleLoading(ctx, slog.Default())()
	}
	for {
		err := run(ctx, os.Args[1:], os.Stderr, inRamdisk)
		if err == nil || ctx.Err() != nil {
			return
		}
		if !inRamdisk {
			fmt.Fprintln(os.Stderr, "rivet-agent:", err)
			os.Exit(1)
		}
		// In the ramdisk the agent is the machine's only purpose: never
		// exit (init would fall through to a shell or panic); start over,
		// as systemd restarts IPA.
		slog.Error("rivet-agent failed; restarting in 10 s", "error", err)
		time.Sleep(10 * time.Second)
	}
}

// run builds the configuration (defaults < /proc/cmdline < flags) and runs
// the agent.
func run(ctx context.Context, args []string, stderr io.Writer, inRamdisk bool) error {
	cfg := agent.DefaultConfig()
	// Outside Linux there is no /proc/cmdline, and nothing to apply.
	switch params, err := kernelcmdline.Read(); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := cfg.ApplyKernelParams(params); err != nil {
			return fmt.Errorf("kernel command line: %w", err)
		}
	}
	fs := flag.NewFlagSet("rivet-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, p := range agent.Params() {
		p := p
		set := func(v string) error { return p.Set(&cfg, v) }
		if p.IsBool {
			fs.BoolFunc(p.Name, p.Usage, set)
		} else {
			fs.Func(p.Name, p.Usage, set)
		}
	}
	standalone := fs.Bool("standalone", false, "serve the API with no lookup and no heartbeat (same as --ipa-standalone)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *standalone {
		cfg.Standalone = true
	}
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	// The log also goes to memory, for log.collect_system_logs.
	logs := agent.NewLogBuffer(4 << 20)
	log := slog.New(slog.NewTextHandler(io.MultiWriter(stderr, logs), &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	for name, v := range cfg.Ignored {
		log.Warn("IPA parameter accepted, but it has no effect in rivet-agent", "param", name, "value", v, "reason", agent.IgnoredReason(name))
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit())
	}
	log.Info("memory bounds", "max_decoder_memory_mib", cfg.MaxDecoderMemory>>20, "go_memory_limit_mib", debug.SetMemoryLimit(-1)>>20)
	if !inRamdisk && len(cfg.BlockDevices) == 0 && !cfg.Standalone {
		log.Warn("running outside the deploy ramdisk with no --ipa-block-devices: any local disk can be chosen",
			"hint", "pass --ipa-block-devices=/dev/loopN,...")
	}
	opts := agent.Options{Logger: log, LogBuffer: logs}
	if inRamdisk {
		opts.Network = netup.Configurator{Log: log}
	}
	a, err := agent.New(cfg, opts)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
