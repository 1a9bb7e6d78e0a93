// Package loopdev attaches sparse files as loop block devices for tests that
// need real block I/O. It needs root and losetup (util-linux); callers skip
// with the reason Available gives when either is missing.
package loopdev

import (
	"context"
	"errors"
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

// Options change how a device is attached. The zero value is what Attach
// does.
type Options struct {
	// DirectIO makes the loop driver read and write the backing file with
	// O_DIRECT (losetup --direct-io=on), bypassing the host's page cache,
	// so writes to the device cost what the backing disk costs, as a real
	// disk's would. The backing file's filesystem must support O_DIRECT.
	DirectIO bool
}

// Attach creates (or truncates) file to size bytes and attaches it.
func Attach(file string, size int64) (*Device, error) {
	return AttachWith(file, size, Options{})
}

// AttachWith creates (or truncates) file to size bytes and attaches it as
// o asks.
func AttachWith(file string, size int64, o Options) (*Device, error) {
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
	args := []string{"--find", "--show", "--partscan"}
	if o.DirectIO {
		args = append(args, "--direct-io=on")
	}
	out, err := exec.CommandContext(ctx, "losetup", append(args, file)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("losetup %s %s: %w: %s", strings.Join(args, " "), file, err, strings.TrimSpace(string(out)))
	}
	d := &Device{Path: strings.TrimSpace(string(out)), File: file, Size: size}
	if o.DirectIO {
		// losetup falls back to buffered I/O, silently, when the backing
		// file refuses O_DIRECT; a caller that asked for it must know.
		on, err := d.DirectIO()
		if err != nil || !on {
			derr := d.Detach()
			if err == nil {
				err = fmt.Errorf("the loop driver did not turn direct I/O on (the filesystem of %s may not support O_DIRECT)", file)
			}
			return nil, errors.Join(fmt.Errorf("%s: %w", d.Path, err), derr)
		}
	}
	return d, nil
}

// DirectIO reports whether the loop driver reads and writes the backing
// file with O_DIRECT (/sys/block/loopN/loop/dio).
func (d *Device) DirectIO() (bool, error) {
	b, err := os.ReadFile(filepath.Join("/sys/block", d.Name(), "loop/dio"))
	if err != nil {
		return false, fmt.Errorf("read the direct-I/O state of %s: %w", d.Path, err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
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
