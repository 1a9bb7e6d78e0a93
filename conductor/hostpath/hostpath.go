// Package hostpath confines the host paths that reach the conductor
// through its API — a node's driver_info deploy_kernel and deploy_ramdisk,
// file:// image sources — to the directories the operator allowed
// (--file-url-allowed-paths, as Ironic's [conductor]file_url_allowed_paths).
//
// A path is checked when the API stores it, when the node is validated,
// and again when the file is opened, and it is always opened through an
// os.Root of the allowed directory it was named in, so a symbolic link
// cannot lead out of that directory. Only regular files are opened. The
// directories Ironic never lets file URLs reach (/dev, /proc, /sys, /boot,
// /etc, /run) cannot be allowed, nor can a directory that holds one of the
// conductor's own files (its database, its state, its keys and user
// files); those files are also refused by identity, so a hard link to the
// database inside an allowed directory is refused too.
package hostpath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rivetmetal/rivet/conductor/errdefs"
)

// Blocked are the directories no allowed path may be in or contain, and
// no host path may reach: Ironic's BLOCKED_FILE_URL_PATHS.
var Blocked = []string{"/dev", "/sys", "/proc", "/boot", "/etc", "/run"}

// ErrRefused is wrapped by every refusal of a path (besides
// errdefs.ErrInvalidArgument, so that the API answers 400).
var ErrRefused = errors.New("host path refused")

// Config configures a Confiner.
type Config struct {
	// Allowed are the absolute directories in which the API may name
	// files. Each must exist. Empty: none (every host path is refused).
	Allowed []string
	// Protected are the conductor's own files and directories (its
	// database, state directories, TLS key, user files): no allowed
	// directory may hold one or lie in one, and no path opened may be
	// one of these files, whatever name it is reached by. Missing ones
	// are skipped.
	Protected []string
}

// Confiner checks and opens host paths named through the API. It is safe
// for concurrent use.
type Confiner struct {
	roots     []root
	protected []string
}

type root struct {
	dir string // as allowed, cleaned: what paths are matched against
	r   *os.Root
}

// New opens the allowed directories.
func New(cfg Config) (*Confiner, error) {
	c := &Confiner{}
	for _, p := range cfg.Protected {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("hostpath: protected path %s: %w", p, err)
		}
		c.protected = append(c.protected, abs)
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	for _, dir := range cfg.Allowed {
		if err := c.allow(dir); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// allow adds one allowed directory after checking it.
func (c *Confiner) allow(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("hostpath: allowed path %q is not absolute", dir)
	}
	clean := filepath.Clean(dir)
	// The path as named is checked first, so that a blocked directory is
	// refused as such whether or not it exists here; then where it leads.
	if err := c.checkBlocked(clean, clean); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(clean)
	if err != nil {
		return fmt.Errorf("hostpath: allowed path %s: %w", clean, err)
	}
	if err := c.checkBlocked(clean, real); err != nil {
		return err
	}
	return c.checkProtected(clean, real)
}

// checkBlocked refuses an allowed path (clean, as named) that is, or
// leads to (name), the root directory or a directory that is never
// allowed.
func (c *Confiner) checkBlocked(clean, name string) error {
	if name == "/" {
		return fmt.Errorf("hostpath: allowed path %s is the root directory, which holds everything the conductor must never serve", clean)
	}
	for _, b := range Blocked {
		if within(name, b) {
			return fmt.Errorf("hostpath: allowed path %s is in %s, which is never allowed", clean, b)
		}
	}
	return nil
}

// checkProtected refuses an allowed path that holds, or lies inside, one
// of the conductor's own files and directories, and opens it.
func (c *Confiner) checkProtected(clean, real string) error {
	for _, p := range c.protected {
		rp, err := filepath.EvalSymlinks(p)
		if err != nil {
			rp = p
		}
		if within(real, rp) || within(clean, p) {
			return fmt.Errorf("hostpath: allowed path %s is inside the conductor's own %s", clean, p)
		}
		if within(rp, real) || within(p, clean) {
			return fmt.Errorf("hostpath: allowed path %s holds the conductor's own %s: allow a directory of images and ramdisks instead", clean, p)
		}
	}
	r, err := os.OpenRoot(clean)
	if err != nil {
		return fmt.Errorf("hostpath: allowed path %s: %w", clean, err)
	}
	c.roots = append(c.roots, root{dir: clean, r: r})
	return nil
}

// within reports whether path p is dir or lies below it (both clean).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// Allowed returns the allowed directories, in the order configured.
func (c *Confiner) Allowed() []string {
	out := make([]string, len(c.roots))
	for i, r := range c.roots {
		out[i] = r.dir
	}
	return out
}

// Close releases the allowed directories.
func (c *Confiner) Close() error {
	var errs []error
	for _, r := range c.roots {
		errs = append(errs, r.r.Close())
	}
	c.roots = nil
	return errors.Join(errs...)
}

// refusal is a refused path: an errdefs.InvalidArgument with the message
// a client sees, and ErrRefused.
type refusal struct{ err error }

func (r refusal) Error() string   { return r.err.Error() }
func (r refusal) Unwrap() []error { return []error{r.err, ErrRefused} }

func refuse(format string, args ...any) error {
	return refusal{errdefs.InvalidArgument(format, args...)}
}

// Check reports whether path names a regular file the API may name: in
// an allowed directory, reached without leaving it, not one of the
// conductor's own files. The error is an errdefs.InvalidArgument that
// says why (wrapping ErrRefused), and never tells whether a path outside
// the allowed directories exists.
func (c *Confiner) Check(path string) error {
	f, err := c.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// Open opens a regular file named by path for reading, through the
// allowed directory it is named in (see Check).
func (c *Confiner) Open(path string) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, refuse("Security: host path %q is not absolute.", path)
	}
	clean := filepath.Clean(path)
	for _, r := range c.roots {
		if !within(clean, r.dir) {
			continue
		}
		if clean == r.dir {
			return nil, refuse("Security: host path %s is a directory, not a file.", clean)
		}
		rel := clean[len(strings.TrimSuffix(r.dir, "/"))+1:]
		// Non-blocking, so that a FIFO cannot hang the open; reads of a
		// regular file ignore the flag.
		f, err := r.r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, openError(clean, err)
		}
		if err := c.checkOpened(f, clean); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	return nil, refuse("Security: host path %s is not in a directory allowed for host files (--file-url-allowed-paths).", clean)
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return refuse("Host file %s does not exist.", path)
	case errors.Is(err, fs.ErrPermission):
		return refuse("Host file %s cannot be read by the conductor.", path)
	case strings.Contains(err.Error(), "escapes from parent"):
		return refuse("Security: host path %s leads out of its allowed directory (through a symbolic link or ..).", path)
	default:
		return refuse("Host file %s cannot be opened: %v", path, err)
	}
}

// checkOpened refuses an opened file that is not a regular file or is one
// of the protected files.
func (c *Confiner) checkOpened(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return refuse("Host file %s cannot be read: %v", path, err)
	}
	if !st.Mode().IsRegular() {
		return refuse("Security: host path %s is not a regular file.", path)
	}
	if c.isProtected(st) {
		return refuse("Security: host path %s is one of the conductor's own files.", path)
	}
	return nil
}

// isProtected reports whether st is one of the protected files (they are
// looked up each time: a database journal comes and goes).
func (c *Confiner) isProtected(st os.FileInfo) bool {
	for _, p := range c.protected {
		if pst, err := os.Stat(p); err == nil && os.SameFile(st, pst) {
			return true
		}
	}
	return false
}

// FromFileURL returns the host path of a file:// URL: file:///srv/x.img
// or file://localhost/srv/x.img. Any other host, a relative path, a query
// or a fragment is refused.
func FromFileURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || !IsFileURL(s) {
		// file:/path parses too, but is not the file:// form every
		// other check (IsFileURL) goes by (found by FuzzFromFileURL).
		return "", refuse("Invalid file URL %q: want file:///path.", s)
	}
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return "", refuse("File URL %q names host %q: only local files (file:///path) are supported.", s, u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", refuse("File URL %q has a query, a fragment or no path.", s)
	}
	if !filepath.IsAbs(u.Path) {
		return "", refuse("File URL %q has no absolute path.", s)
	}
	return u.Path, nil
}

// IsFileURL reports whether s is a file:// URL (any case).
func IsFileURL(s string) bool {
	return len(s) >= 7 && strings.EqualFold(s[:7], "file://")
}

// Local returns the host path a deploy file setting names (a
// driver_info deploy_kernel/deploy_ramdisk value): the path of a file://
// URL, the value itself when it is a path, and ok false for anything else
// (an http(s) URL, which nodes fetch themselves).
func Local(value string) (path string, ok bool, err error) {
	if IsFileURL(value) {
		p, err := FromFileURL(value)
		return p, true, err
	}
	if u, err := url.Parse(value); err == nil && u.Scheme != "" && len(u.Scheme) > 1 {
		return "", false, nil
	}
	return value, true, nil
}

// pseudo are the kernel's file systems, never read as files.
var pseudo = []string{"/dev", "/proc", "/sys"}

// ReadSmallFile reads a small regular file named through the API that is
// not confined to the allowed directories, such as a CA bundle
// (driver_info redfish_verify_ca and agent_verify_ca, which Ironic reads
// from anywhere): the path must be absolute, resolve outside /dev, /proc
// and /sys, be a regular file and hold at most max bytes. Nothing else is
// said about a path that fails.
func ReadSmallFile(path string, max int64) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, refuse("Host path %q is not absolute.", path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, refuse("Host file %s cannot be read.", path)
	}
	for _, p := range pseudo {
		if within(real, p) {
			return nil, refuse("Security: host path %s is in %s.", path, p)
		}
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, refuse("Host file %s cannot be read.", path)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, refuse("Security: host path %s is not a regular file.", path)
	}
	if st.Size() > max {
		return nil, refuse("Host file %s is larger than %d bytes.", path, max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, refuse("Host file %s cannot be read.", path)
	}
	if int64(len(b)) > max {
		return nil, refuse("Host file %s is larger than %d bytes.", path, max)
	}
	return b, nil
}
