package testimage

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// libDirs are where the dynamic loader looks for shared libraries on a
// Debian amd64 host (multiarch first), after any RUNPATH.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// topLinks are the host root's directory symlinks (Debian's merged /usr:
// /bin → usr/bin, …) that hostTree mirrors before copying anything, so
// that paths through them land where they do on the host.
var topLinks = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// maxShebang bounds the first line read from a script.
const maxShebang = 256

// hostTree copies files of the host (programs with the shared libraries
// and interpreters they load, whole directories) into a staging root, so
// that the programs run there under chroot. Symlinks are recreated as
// symlinks, with their targets; only real directories are created in the
// staging root, so nothing is ever written through a symlink.
type hostTree struct {
	dst     string
	copied  map[string]bool // host paths copied
	scanned map[string]bool // real host files whose dependencies were copied
}

func newHostTree(dst string) (*hostTree, error) {
	h := &hostTree{dst: dst, copied: map[string]bool{}, scanned: map[string]bool{}}
	for _, name := range topLinks {
		target, err := os.Readlink("/" + name)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrInvalid) {
			continue // absent, or a real directory: made when needed
		}
		if err != nil {
			return nil, fmt.Errorf("testimage: host root: %w", err)
		}
		if err := os.Symlink(target, filepath.Join(dst, name)); err != nil {
			return nil, fmt.Errorf("testimage: staging root: %w", err)
		}
	}
	return h, nil
}

// program copies the host program at path and everything it loads: for an
// ELF file its interpreter and needed libraries, transitively; for a
// script its #! interpreter.
func (h *hostTree) program(path string) error {
	real, err := h.link(path)
	if err != nil {
		return err
	}
	return h.deps(real)
}

// deps copies what the real (symlink-free) host file needs to run.
func (h *hostTree) deps(real string) error {
	if h.scanned[real] {
		return nil
	}
	h.scanned[real] = true
	f, err := os.Open(real)
	if err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	defer f.Close()
	head := make([]byte, maxShebang)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if strings.HasPrefix(string(head), "#!") {
		line, _, _ := strings.Cut(string(head[2:]), "\n")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return fmt.Errorf("testimage: %s: empty #! line", real)
		}
		return h.program(fields[0])
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil // data, not a program
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return fmt.Errorf("testimage: %s: read interpreter: %w", real, err)
		}
		if err := h.program(strings.TrimRight(string(b), "\x00")); err != nil {
			return err
		}
	}
	libs, err := ef.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("testimage: %s: needed libraries: %w", real, err)
	}
	var runpath []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		if v, err := ef.DynString(tag); err == nil {
			for _, s := range v {
				for _, d := range strings.Split(s, ":") {
					runpath = append(runpath, strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(real)))
				}
			}
		}
	}
	for _, lib := range libs {
		found := ""
		for _, d := range append(runpath, libDirs...) {
			if d == "" {
				continue
			}
			if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
				found = filepath.Join(d, lib)
				break
			}
		}
		if found == "" {
			return fmt.Errorf("testimage: %s needs %s, found in none of %s", real, lib, strings.Join(append(runpath, libDirs...), ", "))
		}
		if err := h.program(found); err != nil {
			return err
		}
	}
	return nil
}

// link copies the host path into the staging root as it is on the host:
// a symlink as a symlink (and then its target), a regular file as a copy.
// It returns the real path the chain ends at.
func (h *hostTree) link(path string) (string, error) {
	for hops := 0; ; hops++ {
		if hops > 40 {
			return "", fmt.Errorf("testimage: %s: too many symlinks", path)
		}
		if !filepath.IsAbs(path) {
			return "", fmt.Errorf("testimage: %q is not an absolute path", path)
		}
		dir, err := filepath.EvalSymlinks(filepath.Dir(path))
		if err != nil {
			return "", fmt.Errorf("testimage: host file %s: %w", path, err)
		}
		p := filepath.Join(dir, filepath.Base(path))
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("testimage: host file: %w", err)
		}
		done := h.copied[p]
		h.copied[p] = true
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return "", fmt.Errorf("testimage: %w", err)
			}
			if !done {
				if err := h.mkdir(dir); err != nil {
					return "", err
				}
				if err := os.Symlink(target, filepath.Join(h.dst, p)); err != nil {
					return "", fmt.Errorf("testimage: staging root: %w", err)
				}
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(dir, target)
			}
			path = target
		case fi.Mode().IsRegular():
			if !done {
				if err := h.mkdir(dir); err != nil {
					return "", err
				}
				if err := copyHostFile(p, filepath.Join(h.dst, p), fi.Mode().Perm()); err != nil {
					return "", err
				}
			}
			return p, nil
		default:
			return "", fmt.Errorf("testimage: host file %s is neither a regular file nor a symlink (%s)", p, fi.Mode().Type())
		}
	}
}

// tree copies a host directory and everything in it (regular files,
// symlinks, directories).
func (h *hostTree) tree(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("testimage: host directory: %w", err)
	}
	return filepath.WalkDir(real, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("testimage: %w", err)
		}
		if d.IsDir() {
			return h.mkdir(p)
		}
		_, err = h.link(p)
		return err
	})
}

// mkdir makes the real host directory dir (and its parents) in the
// staging root, with the host's permissions.
func (h *hostTree) mkdir(dir string) error {
	if dir == "/" {
		return nil
	}
	target := filepath.Join(h.dst, dir)
	if fi, err := os.Lstat(target); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("testimage: staging root: %s exists and is not a directory", target)
		}
		return nil
	}
	if err := h.mkdir(filepath.Dir(dir)); err != nil {
		return err
	}
	perm := os.FileMode(0o755)
	if fi, err := os.Stat(dir); err == nil {
		perm = fi.Mode().Perm()
	}
	if err := os.Mkdir(target, perm); err != nil {
		return fmt.Errorf("testimage: staging root: %w", err)
	}
	return nil
}

// copyHostFile copies src to a new file dst with mode perm.
func copyHostFile(src, dst string, perm os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("testimage: staging root: %w", err)
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("testimage: copy %s: %w", src, err)
	}
	return os.Chmod(dst, perm) // past the umask
}
