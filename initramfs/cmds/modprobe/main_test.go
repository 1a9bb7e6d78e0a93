package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/hardware/kmod"
)

func TestRunArguments(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("kernel/fs/vfat.ko:\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.alias"), []byte("alias fs-vfat vfat\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4.ko\n"), 0o644)
	empty := ""
	cfg := kmod.Config{ModulesDir: dir, Cmdline: &empty}
	var out bytes.Buffer
	// Built in: nothing to load, no error.
	if err := run(context.Background(), []string{"-q", "--", "ext4"}, &out, cfg); err != nil {
		t.Errorf("built-in module: %v", err)
	}
	// Unknown name: an error, logged unless -q.
	out.Reset()
	if err := run(context.Background(), []string{"-q", "--", "fs-btrfs"}, &out, cfg); !errors.Is(err, kmod.ErrNoModule) {
		t.Errorf("unknown alias: err = %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("-q printed %q", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"-a", "fs-btrfs", "ext4"}, &out, cfg); err == nil || !strings.Contains(out.String(), "fs-btrfs") {
		t.Errorf("unknown alias without -q: err = %v, output %q", err, out.String())
	}
	if err := run(context.Background(), nil, &out, cfg); err == nil {
		t.Error("no name: no error")
	}
	if err := run(context.Background(), []string{"-x"}, &out, cfg); err == nil {
		t.Error("unknown flag: no error")
	}
}
