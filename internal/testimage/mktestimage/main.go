// Command mktestimage builds the bootable test disk image that the demo and
// the end-to-end test deploy (see package testimage).
//
//	go run ./internal/testimage/mktestimage -kernel build/kernel/vmlinuz -o build/testimage/disk.raw
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/rivetmetal/rivet/internal/testimage"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mktestimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mktestimage", flag.ContinueOnError)
	var opts testimage.Options
	fs.StringVar(&opts.Kernel, "kernel", "", "kernel copied to /vmlinuz on the ESP (required)")
	fs.StringVar(&opts.Output, "o", "", "output raw image (required)")
	fs.StringVar(&opts.ID, "id", testimage.DefaultID, "image id printed in the boot marker")
	fs.Int64Var(&opts.Size, "size", testimage.DefaultSize, "image size in bytes (multiple of 1 MiB)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := testimage.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d bytes, id %s, sha256 %s, disk signature 0x%08x\n", res.Path, res.Size, res.ID, res.SHA256, res.DiskSignature)
	return nil
}
