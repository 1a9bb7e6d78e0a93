package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rivetmetal/rivet/conductor/power"
)

// PrepareRamdisk implements power.RamdiskBooter: it copies the kernel and
// initramfs into the node's state directory and records them with the
// parameters for the next "pxe" boot. At boot the driver appends
// console=ttyS0 ipa-advertise-host=127.0.0.1 ipa-advertise-port=<agent port>.
func (d *Driver) PrepareRamdisk(ctx context.Context, node power.Node, rd power.Ramdisk) error {
	s, err := d.settings(node)
	if err != nil {
		return err
	}
	for _, prm := range rd.Params {
		if prm == "" || strings.ContainsAny(prm, " \t\n") {
			return fmt.Errorf("qemu: node %s: kernel parameter %q: empty or contains whitespace", node.UUID, prm)
		}
	}
	e := d.entry(node.UUID)
	e.mu.Lock()
	defer e.mu.Unlock()
	p := d.pathsFor(node.UUID, s)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qemu: node %s: prepare ramdisk: %w", node.UUID, err)
	}
	open := rd.Open
	if open == nil {
		open = os.Open
	}
	if err := installFile(open, rd.Kernel, p.kernel); err != nil {
		return fmt.Errorf("qemu: node %s: prepare ramdisk kernel: %w", node.UUID, err)
	}
	if err := installFile(open, rd.Initramfs, p.initramfs); err != nil {
		return fmt.Errorf("qemu: node %s: prepare ramdisk initramfs: %w", node.UUID, err)
	}
	st, err := loadState(p)
	if err != nil {
		return fmt.Errorf("qemu: node %s: %w", node.UUID, err)
	}
	st.Ramdisk = &ramdisk{Kernel: p.kernel, Initramfs: p.initramfs, Params: append([]string(nil), rd.Params...)}
	if err := saveState(p, st); err != nil {
		return fmt.Errorf("qemu: node %s: prepare ramdisk: %w", node.UUID, err)
	}
	d.log.InfoContext(ctx, "deploy ramdisk prepared", "node", node.UUID, "kernel", rd.Kernel, "initramfs", rd.Initramfs,
		"params", strings.Join(rd.Params, " "))
	return nil
}

// installFile puts a copy of src, opened with open, at dst, replacing
// dst atomically; a running VM keeps what it already loaded. The copy is
// made from the opened file, so what was checked is what is copied.
func installFile(open func(string) (*os.File, error), src, dst string) (err error) {
	in, err := open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	os.Remove(tmp)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

func dirOf(p string) string { return filepath.Dir(p) }
