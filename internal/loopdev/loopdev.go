// Package loopdev attaches sparse files as loop block devices for tests that
// need real block I/O. It needs root and losetup (util-linux); callers skip
// with the reason Available gives when either is missing.
package loopdev

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Device is an attached loop device.
type Device struct {
	// Path is the device node, e.g. /dev/loop3.
	Path string
	// File is the backing file.
	File string
	// Size is the device size in bytes.
	Size int64
}

// Available reports whether loop devices can be made here, and why not.
func Available() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "loop devices need root"
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		return false, "losetup (util-linux) is not installed"
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return false, "no /dev/loop-control"
	}
	return true, ""
}

// SkipIfUnavailable skips the test when loop devices cannot be made, unless
// RIVET_REQUIRE_E2E=1, in which case it fails it.
func SkipIfUnavailable(t testing.TB) {
	t.Helper()
	if ok, why := Available(); !ok {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatalf("RIVET_REQUIRE_E2E=1 but %s", why)
		}
		t.Skip(why)
	}
}

// New creates a sparse file of size bytes in a test temp dir, attaches it
// with partition scanning on, and detaches it when the test ends.
func New(t testing.TB, size int64) *Device {
	t.Helper()
	SkipIfUnavailable(t)
	f := filepath.Join(t.TempDir(), "disk.img")
	d, err := Attach(f, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Detach(); err != nil {
			t.Errorf("detach %s: %v", d.Path, err)
		}
	})
	return d
}

// Attach creates (or truncates) file to size bytes and attaches it.
func Attach(file string, size int64) (*Device, error) {
	fh, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("create backing file: %w", err)
	}
	if err := fh.Truncate(size); err != nil {
		fh.Close()
		return nil, fmt.Errorf("truncate %s: %w", file, err)
	}
	if err := fh.Close(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", "--partscan", file).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("losetup --find %s: %w: %s", file, err, strings.TrimSpace(string(out)))
	}
	return &Device{Path: strings.TrimSpace(string(out)), File: file, Size: size}, nil
}

// Name is the kernel name, e.g. "loop3".
func (d *Device) Name() string { return filepath.Base(d.Path) }

// Detach detaches the device; the backing file stays.
func (d *Device) Detach() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	for i := 0; i < 10; i++ {
		out, err := exec.CommandContext(ctx, "losetup", "-d", d.Path).CombinedOutput()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("losetup -d %s: %w: %s", d.Path, err, strings.TrimSpace(string(out)))
		time.Sleep(200 * time.Millisecond)
	}
	return last
}
