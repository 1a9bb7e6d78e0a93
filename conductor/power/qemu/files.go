package qemu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rivetmetal/rivet/conductor/power"
)

// files confines the paths a node's driver_info names (qemu_disk,
// qemu_console_log) to the driver's files directory: a relative path is
// taken from it, an absolute one must lie in it, and every file is opened
// through an os.Root of it, so no symbolic link leads out. QEMU is given
// the resolved path right after the check.
type files struct {
	dir  string
	root *os.Root
}

func openFiles(dir, stateDir string) (*files, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("qemu driver: files dir %s: %w", dir, err)
	}
	if abs == "/" || within(stateDir, abs) {
		return nil, fmt.Errorf("qemu driver: files dir %s holds the driver's state directory %s; use a directory of its own (default %s)",
			abs, stateDir, filepath.Join(stateDir, "files"))
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("qemu driver: create files dir: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("qemu driver: files dir: %w", err)
	}
	return &files{dir: abs, root: root}, nil
}

// within reports whether the clean path p is dir or lies below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// resolve maps a driver_info path to its absolute path in the files
// directory and the path relative to it, or refuses it.
func (f *files) resolve(node, key, p string) (abs, rel string, err error) {
	abs = p
	if !filepath.IsAbs(p) {
		abs = filepath.Join(f.dir, p)
	}
	abs = filepath.Clean(abs)
	if abs == f.dir || !within(abs, f.dir) {
		return "", "", fmt.Errorf("%w: node %s: %s %s is not in the qemu driver's files directory %s",
			power.ErrInvalidDriverInfo, node, key, p, f.dir)
	}
	return abs, abs[len(f.dir)+1:], nil
}

// check opens a resolved path through the root (creating it when create
// is set) and refuses it unless it is a regular file; a missing file is
// an error only when mustExist is set. It returns the file, open for
// appending when create is set (the caller closes it), or nil.
func (f *files) check(node, key, rel string, mustExist, create bool) (*os.File, error) {
	flag := os.O_RDONLY | syscall.O_NONBLOCK
	if create {
		flag = os.O_WRONLY | os.O_APPEND | os.O_CREATE | syscall.O_NONBLOCK
	}
	fh, err := f.root.OpenFile(rel, flag, 0o644)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !mustExist:
		return nil, nil
	case err != nil && strings.Contains(err.Error(), "escapes from parent"):
		return nil, fmt.Errorf("%w: node %s: %s %s leads out of the qemu driver's files directory %s",
			power.ErrInvalidDriverInfo, node, key, rel, f.dir)
	case err != nil:
		return nil, fmt.Errorf("%w: node %s: %s: %w", power.ErrInvalidDriverInfo, node, key, err)
	}
	st, err := fh.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%w: node %s: %s %s is not a regular file", power.ErrInvalidDriverInfo, node, key, rel)
	}
	if err != nil || !create {
		fh.Close()
		return nil, err
	}
	return fh, nil
}

// settings parses a node's driver_info and resolves its file paths in
// the files directory.
func (d *Driver) settings(node power.Node) (settings, error) {
	s, err := parseSettings(node)
	if err != nil {
		return s, err
	}
	if s.disk, s.diskRel, err = d.files.resolve(node.UUID, InfoDisk, s.disk); err != nil {
		return settings{}, err
	}
	if s.consoleLog != "" {
		if s.consoleLog, s.consoleRel, err = d.files.resolve(node.UUID, InfoConsoleLog, s.consoleLog); err != nil {
			return settings{}, err
		}
	}
	return s, nil
}

// CheckHostPaths implements power.HostPathChecker: the file paths the
// node's driver_info names, if any, lie in the files directory and are,
// where they exist, regular files reached without leaving it.
func (d *Driver) CheckHostPaths(node power.Node) error {
	for _, key := range []string{InfoDisk, InfoConsoleLog} {
		v, ok := node.DriverInfo[key]
		if !ok {
			continue
		}
		p, _ := v.(string)
		if p == "" {
			return fmt.Errorf("%w: node %s: %s %v: want a file name", power.ErrInvalidDriverInfo, node.UUID, key, v)
		}
		_, rel, err := d.files.resolve(node.UUID, key, p)
		if err != nil {
			return err
		}
		if _, err := d.files.check(node.UUID, key, rel, false, false); err != nil {
			return err
		}
	}
	return nil
}

// checkFiles checks a node's files before a VM is started: the disk must
// exist; the console log, if named, is created if missing. Both must be
// regular files reached inside the files directory.
func (d *Driver) checkFiles(uuid string, s settings) error {
	if _, err := d.files.check(uuid, InfoDisk, s.diskRel, true, false); err != nil {
		return err
	}
	if s.consoleRel != "" {
		fh, err := d.files.check(uuid, InfoConsoleLog, s.consoleRel, false, true)
		if err != nil {
			return err
		}
		return fh.Close()
	}
	return nil
}
