// Command modprobe loads kernel modules by name or alias in the deploy
// ramdisk (hardware/kmod.Modprobe). The ramdisk links it as /sbin/modprobe,
// the program the kernel runs when it needs a module ("modprobe -q --
// fs-vfat", "md-level-1", "crypto-crc32c"), so on-demand loading works
// without kmod's tools.
//
//	modprobe [-q] [--] NAME [PARAM=VALUE ...]
//	modprobe [-q] -a NAME...
//
// Messages go to the kernel log (/dev/kmsg), where the console and dmesg
// show them: the kernel gives the program no terminal.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/rivetmetal/rivet/hardware/kmod"
)

func main() {
	if err := run(context.Background(), os.Args[1:], kernelLog(), kmod.Config{}); err != nil {
		os.Exit(1)
	}
}

// run parses the arguments and loads the modules, logging to w.
func run(ctx context.Context, args []string, w io.Writer, cfg kmod.Config) error {
	fs := flag.NewFlagSet("modprobe", flag.ContinueOnError)
	fs.SetOutput(w)
	quiet := fs.Bool("q", false, "say nothing about names that are not found")
	all := fs.Bool("a", false, "load every NAME (no module options)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(w, "usage: modprobe [-q] [--] NAME [PARAM=VALUE ...] | modprobe [-q] -a NAME...")
		return fmt.Errorf("no module named")
	}
	names, params := fs.Args(), ""
	if !*all {
		names, params = fs.Args()[:1], strings.Join(fs.Args()[1:], " ")
	}
	// The kernel log stamps each line itself.
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: noTime})).
		With("component", "modprobe", "request", strings.Join(names, ","))
	loaded, err := kmod.Modprobe(ctx, cfg, names, params)
	if err != nil && !*quiet {
		cfg.Logger.Warn("modprobe failed", "loaded", strings.Join(loaded, ","), "error", err)
	}
	return err
}

// kernelLog is /dev/kmsg, or stderr where it cannot be opened.
func kernelLog() io.Writer {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return os.Stderr
	}
	return f
}
