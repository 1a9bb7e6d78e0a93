// Command rivet-initramfs builds the deploy ramdisk: u-root's init and a few
// console commands, rivet-agent as the uinit, and the kernel modules.
//
//	go run ./cmd/rivet-initramfs -modules build/kernel/modules -o build/initramfs.cpio.zst
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rivetmetal/rivet/initramfs"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rivet-initramfs:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("rivet-initramfs", flag.ContinueOnError)
	var (
		opts     initramfs.Options
		comp     string
		commands string
		load     string
	)
	fs.StringVar(&opts.Output, "o", "", "output archive path (required)")
	fs.StringVar(&opts.ModulesDir, "modules", "", "kernel-modules tree copied to the archive root (lib/modules/<kver>/... with modules.dep)")
	fs.StringVar(&comp, "compression", "zstd", "zstd, gzip, xz or none")
	fs.StringVar(&opts.AgentPackage, "agent", initramfs.DefaultAgentPackage, "Go package built as /bin/uinit")
	fs.StringVar(&commands, "commands", "", "comma-separated u-root command packages besides init (default: "+strings.Join(initramfs.DefaultCommands, ",")+")")
	fs.StringVar(&opts.CAFile, "ca-file", "", "PEM CA bundle built into the ramdisk at /"+initramfs.CAFilePath+"; the agent trusts it for the conductor, inspection and image downloads")
	fs.StringVar(&load, "load-modules", "", "comma-separated modules for /lib/modules-load.d/rivet.conf (default: "+strings.Join(initramfs.DefaultLoadModules, ",")+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if opts.Output == "" {
		return fmt.Errorf("-o is required")
	}
	c, err := initramfs.ParseCompression(comp)
	if err != nil {
		return err
	}
	opts.Compression = c
	if commands != "" {
		opts.Commands = strings.Split(commands, ",")
	}
	if load != "" {
		opts.LoadModules = strings.Split(load, ",")
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := initramfs.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d bytes %s (%.1f MiB; cpio %.1f MiB)\n", res.Path, res.Size, res.Compression,
		float64(res.Size)/(1<<20), float64(res.CPIOSize)/(1<<20))
	return nil
}
