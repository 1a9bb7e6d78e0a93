// Package bootfiles opens the boot services' files (the iPXE binaries)
// read-only from one directory, for clients that name them: TFTP and HTTP
// boot. Paths go through an os.Root, so ".." components and symlinks that
// lead out of the directory are refused, and only regular files open.
package bootfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// ErrRefused is returned (wrapped) for a path outside the directory or a
// file that is not a regular file.
var ErrRefused = errors.New("refused")

// Dir is an open directory of boot files.
type Dir struct {
	root *os.Root
}

// Open opens dir.
func Open(dir string) (*Dir, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("boot files: %w", err)
	}
	return &Dir{root: root}, nil
}

// Close closes the directory.
func (d *Dir) Close() error { return d.root.Close() }

// Clean turns a requested path into a path relative to the directory: a
// leading slash is dropped (clients send both forms) and backslashes count
// as separators. It refuses empty paths, ".." components and NUL bytes.
func Clean(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: NUL in path", ErrRefused)
	}
	p := strings.ReplaceAll(name, `\`, "/")
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q leaves the directory", ErrRefused, name)
		}
	}
	p = strings.TrimLeft(path.Clean("/"+p), "/")
	if p == "" || p == "." {
		return "", fmt.Errorf("%w: empty path", ErrRefused)
	}
	return p, nil
}

// Open opens a requested file for reading: a regular file inside the
// directory, never a directory, a device or a symlink leading out. A
// missing file is fs.ErrNotExist.
func (d *Dir) Open(name string) (*os.File, error) {
	p, err := Clean(name)
	if err != nil {
		return nil, err
	}
	f, err := d.root.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrRefused, p)
	}
	return f, nil
}
