// Command mktestimage builds the bootable test images that the demo and
// the end-to-end tests deploy (see package testimage): the whole-disk image
// (UEFI), or with -partition the partition image (an ext4 root with GRUB
// for BIOS, installed on the node by the agent).
//
//	go run ./internal/testimage/mktestimage -kernel build/kernel/vmlinuz -o build/testimage/disk.raw
//	go run ./internal/testimage/mktestimage -partition -kernel build/kernel/vmlinuz -o build/testimage/partition.raw
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
	var (
		kernel, output, id, kernelVersion string
		size                              int64
		partition                         bool
	)
	fs.StringVar(&kernel, "kernel", "", "kernel copied into the image (required)")
	fs.StringVar(&output, "o", "", "output raw image (required)")
	fs.StringVar(&id, "id", testimage.DefaultID, "image id printed in the boot marker")
	fs.Int64Var(&size, "size", 0, fmt.Sprintf("image size in bytes, a multiple of 1 MiB (default %d, or %d with -partition)",
		testimage.DefaultSize, testimage.DefaultPartitionSize))
	fs.BoolVar(&partition, "partition", false, "build the partition image (ext4 root, GRUB for BIOS installed on the node by the agent)")
	fs.StringVar(&kernelVersion, "kernel-version", testimage.DefaultKernelVersion, "with -partition: the kernel's version in /boot (vmlinuz-VERSION)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if partition {
		res, err := testimage.BuildPartition(ctx, testimage.PartitionOptions{Kernel: kernel, Output: output, ID: id,
			Size: size, KernelVersion: kernelVersion, Logger: log})
		if err != nil {
			return err
		}
		fmt.Printf("%s: %d bytes, id %s, sha256 %s, ext4 UUID %s, kernel /boot/vmlinuz-%s\n",
			res.Path, res.Size, res.ID, res.SHA256, res.FSUUID, res.KernelVersion)
		return nil
	}
	res, err := testimage.Build(ctx, testimage.Options{Kernel: kernel, Output: output, ID: id, Size: size, Logger: log})
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d bytes, id %s, sha256 %s, disk signature 0x%08x\n", res.Path, res.Size, res.ID, res.SHA256, res.DiskSignature)
	return nil
}
