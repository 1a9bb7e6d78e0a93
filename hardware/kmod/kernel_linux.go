package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// moduleInitCompressedFile asks finit_module to decompress the file itself
// (Linux 6.4+ built with MODULE_DECOMPRESS).
const moduleInitCompressedFile = 4

// maxModuleSize bounds a module decompressed in memory.
const maxModuleSize = 64 << 20

// kernelInitModule loads one module file: finit_module, with in-kernel
// decompression for .ko.xz/.zst/.gz when the kernel offers it, else the
// module decompressed here and passed to init_module.
func kernelInitModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	compressed := !strings.HasSuffix(path, ".ko")
	flags := 0
	if compressed {
		flags = moduleInitCompressedFile
	}
	err = unix.FinitModule(int(f.Fd()), params, flags)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !(compressed && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP))) {
		return os.NewSyscallError("finit_module "+path, err)
	}
	img, err := readModule(f, path)
	if err != nil {
		return err
	}
	if err := unix.InitModule(img, params); err != nil {
		return os.NewSyscallError("init_module "+path, err)
	}
	return nil
}

// readModule reads a module file, decompressing it by its suffix, at most
// maxModuleSize bytes.
func readModule(f *os.File, path string) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", path, err)
	}
	var r io.Reader = f
	switch filepath.Ext(path) {
	case ".ko":
	case ".xz":
		xr, err := xz.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("kmod: %s: %w", path, err)
		}
		r = xr
	case ".zst":
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxModuleSize))
		if err != nil {
			return nil, fmt.Errorf("kmod: %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	case ".gz":
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("kmod: %s: %w", path, err)
		}
		r = gr
	default:
		return nil, fmt.Errorf("kmod: %s: unknown module compression", path)
	}
	img, err := io.ReadAll(io.LimitReader(r, maxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("kmod: read %s: %w", path, err)
	}
	if len(img) > maxModuleSize {
		return nil, fmt.Errorf("kmod: %s: larger than %d MiB decompressed", path, maxModuleSize>>20)
	}
	return img, nil
}

// procModules lists the modules loaded now (/proc/modules).
func procModules() []string {
	f, err := os.Open("/proc/modules")
	if err != nil {
		return []string{}
	}
	defer f.Close()
	mods := []string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, _, ok := strings.Cut(sc.Text(), " "); ok {
			mods = append(mods, name)
		}
	}
	return mods
}

// release is the running kernel's release (uname -r).
func release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", os.NewSyscallError("uname", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}
