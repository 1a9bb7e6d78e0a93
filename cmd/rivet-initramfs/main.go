// Command rivet-initramfs builds the deploy ramdisk: u-root's init and a few
// console commands, rivet-agent as the uinit, the kernel modules and the
// firmware they need. Two flavours (docs/ramdisk.md):
//
//	go run ./cmd/rivet-initramfs -flavour hardware -modules build/kernel-generic/modules \
//	    -firmware build/firmware/tree -o build/initramfs.cpio.zst
//	go run ./cmd/rivet-initramfs -flavour virtual -modules build/kernel/modules -o build/initramfs-virtual.cpio.zst
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
		flavour  string
	)
	fs.StringVar(&opts.Output, "o", "", "output archive path (required)")
	fs.StringVar(&opts.ModulesDir, "modules", "", "kernel-modules tree copied to the archive root (lib/modules/<kver>/... with modules.dep)")
	fs.StringVar(&opts.FirmwareDir, "firmware", "", "firmware tree copied to the archive root (lib/firmware/...)")
	fs.StringVar(&flavour, "flavour", "virtual", "virtual (modules-load.d lists the virtio drivers) or hardware (drivers loaded by device; modules-load.d lists only "+strings.Join(initramfs.HardwareLoadModules, ",")+")")
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
	switch flavour {
	case "virtual":
	case "hardware":
		opts.LoadModules = initramfs.HardwareLoadModules
	default:
		return fmt.Errorf("-flavour %q: want virtual or hardware", flavour)
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
