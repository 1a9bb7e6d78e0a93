package qemu

import (
	"context"
	"errors"
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
	s, err := parseSettings(node)
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
	if err := installFile(rd.Kernel, p.kernel); err != nil {
		return fmt.Errorf("qemu: node %s: prepare ramdisk kernel: %w", node.UUID, err)
	}
	if err := installFile(rd.Initramfs, p.initramfs); err != nil {
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

// installFile puts a copy of src at dst (a hard link when possible),
// replacing dst atomically; a running VM keeps what it already loaded.
func installFile(src, dst string) error {
	fi, err := os.Stat(src)
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
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Sync()
}

func dirOf(p string) string { return filepath.Dir(p) }
