package hostpath

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rivetmetal/rivet/conductor/errdefs"
)

// layout is a state directory with a database and an allowed images
// directory beside it, plus a directory that is not allowed.
type layout struct {
	state, db, images, other string
}

func newLayout(t *testing.T) layout {
	t.Helper()
	base := t.TempDir()
	l := layout{state: filepath.Join(base, "state"), images: filepath.Join(base, "state", "images"),
		other: filepath.Join(base, "other")}
	l.db = filepath.Join(l.state, "rivet.db")
	for _, d := range []string{l.state, l.images, l.other, filepath.Join(l.state, "conductor")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	write(t, l.db, "SQLite format 3\x00 every BMC password")
	write(t, filepath.Join(l.images, "kernel"), "a kernel")
	write(t, filepath.Join(l.other, "secret"), "not allowed")
	return l
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}

func (l layout) confiner(t *testing.T) *Confiner {
	t.Helper()
	c, err := New(Config{Allowed: []string{l.images}, Protected: []string{l.db, filepath.Join(l.state, "conductor")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestOpenAllowedFile(t *testing.T) {
	l := newLayout(t)
	c := l.confiner(t)
	f, err := c.Open(filepath.Join(l.images, "kernel"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "a kernel" {
		t.Fatalf("read %q", b)
	}
	// A path that only looks outside (.. that comes back) is the same file.
	if err := c.Check(filepath.Join(l.images, "..", "images", "kernel")); err != nil {
		t.Fatalf("lexically clean path: %v", err)
	}
	if got := c.Allowed(); len(got) != 1 || got[0] != l.images {
		t.Fatalf("Allowed = %v", got)
	}
}

func TestRefusals(t *testing.T) {
	l := newLayout(t)
	c := l.confiner(t)
	// A symbolic link out of the allowed directory, one to the database,
	// a hard link to the database, a FIFO, a directory.
	if err := os.Symlink("/etc/shadow", filepath.Join(l.images, "shadow")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(l.db, filepath.Join(l.images, "db-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../other/secret", filepath.Join(l.images, "rel-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(l.db, filepath.Join(l.images, "db-hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(l.images, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(l.images, "dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/etc/shadow", "not in a directory allowed"},
		{l.db, "not in a directory allowed"},
		{"/dev/zero", "not in a directory allowed"},
		{filepath.Join(l.other, "secret"), "not in a directory allowed"},
		{filepath.Join(l.images, "..", "rivet.db"), "not in a directory allowed"},
		{filepath.Join(l.images, "shadow"), "leads out of its allowed directory"},
		{filepath.Join(l.images, "db-link"), "leads out of its allowed directory"},
		{filepath.Join(l.images, "rel-link"), "leads out of its allowed directory"},
		{filepath.Join(l.images, "db-hardlink"), "one of the conductor's own files"},
		{filepath.Join(l.images, "fifo"), "not a regular file"},
		{filepath.Join(l.images, "dir"), "not a regular file"},
		{l.images, "is a directory"},
		{filepath.Join(l.images, "missing"), "does not exist"},
		{"images/kernel", "not absolute"},
		{"", "not absolute"},
	} {
		err := c.Check(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%q) = %v, want %q", tc.path, err, tc.want)
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !errors.Is(err, ErrRefused) {
			t.Errorf("Check(%q): %v is not an InvalidArgument refusal", tc.path, err)
		}
		if msg, ok := errdefs.Message(err); !ok || msg != err.Error() {
			t.Errorf("Check(%q): client message %q", tc.path, msg)
		}
	}
	// Paths outside the allowed directories are refused alike whether or
	// not they exist: no existence oracle.
	a, b := c.Check(filepath.Join(l.other, "secret")), c.Check(filepath.Join(l.other, "nothing"))
	if strings.ReplaceAll(a.Error(), "secret", "X") != strings.ReplaceAll(b.Error(), "nothing", "X") {
		t.Errorf("outside paths answered differently: %q vs %q", a, b)
	}
}

func TestNoneAllowed(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check("/srv/x"); err == nil {
		t.Fatal("a confiner with no allowed directory accepted a path")
	}
}

func TestAllowedDirectoryChecks(t *testing.T) {
	l := newLayout(t)
	link := filepath.Join(t.TempDir(), "to-state")
	if err := os.Symlink(l.state, link); err != nil {
		t.Fatal(err)
	}
	prot := []string{l.db, filepath.Join(l.state, "conductor")}
	for _, tc := range []struct {
		dir, want string
	}{
		{"/", "root directory"},
		{"/etc", "never allowed"},
		{"/etc/ironic", "never allowed"},
		{"/dev", "never allowed"},
		{"/proc/self", "never allowed"},
		{"relative/dir", "not absolute"},
		{l.state, "holds the conductor's own"},
		{link, "holds the conductor's own"},
		{filepath.Join(l.state, "conductor"), "inside the conductor's own"},
		{filepath.Join(l.state, "missing"), "no such file"},
	} {
		c, err := New(Config{Allowed: []string{tc.dir}, Protected: prot})
		if err == nil {
			c.Close()
			t.Errorf("allowed %s", tc.dir)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s) = %v, want %q", tc.dir, err, tc.want)
		}
	}
}

func TestFileURLs(t *testing.T) {
	for in, want := range map[string]string{
		"file:///srv/img/disk.raw":          "/srv/img/disk.raw",
		"FILE:///srv/a%20b":                 "/srv/a b",
		"file://localhost/srv/x":            "/srv/x",
		"file:///srv/img/../../etc/shadow":  "/srv/img/../../etc/shadow", // cleaned by Check
		"file:///srv/img/%2e%2e/etc/passwd": "/srv/img/../etc/passwd",
	} {
		got, err := FromFileURL(in)
		if err != nil || got != want {
			t.Errorf("FromFileURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"file://etc/passwd", "file://evil.example/srv/x", "file:relative", "file:///srv/x?y=1",
		"file:///srv/x#frag", "http://x/y", "file://"} {
		if got, err := FromFileURL(in); err == nil {
			t.Errorf("FromFileURL(%q) = %q, want an error", in, got)
		}
	}
	for in, want := range map[string]struct {
		path string
		ok   bool
	}{
		"/srv/kernel":             {"/srv/kernel", true},
		"file:///srv/kernel":      {"/srv/kernel", true},
		"http://h/kernel":         {"", false},
		"https://h/kernel":        {"", false},
		"relative":                {"relative", true},
		"c0ffee00-7f0e-4c1e-9a2c": {"c0ffee00-7f0e-4c1e-9a2c", true},
	} {
		p, ok, err := Local(in)
		if err != nil || p != want.path || ok != want.ok {
			t.Errorf("Local(%q) = %q %v %v", in, p, ok, err)
		}
	}
}

func TestReadSmallFile(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	write(t, ca, "-----BEGIN CERTIFICATE-----\n")
	if b, err := ReadSmallFile(ca, 1<<10); err != nil || len(b) == 0 {
		t.Fatalf("ReadSmallFile = %q, %v", b, err)
	}
	big := filepath.Join(dir, "big")
	write(t, big, strings.Repeat("x", 2000))
	link := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"/dev/zero":             "in /dev",
		link:                    "in /dev",
		"/proc/self/environ":    "in /proc",
		big:                     "larger than",
		dir:                     "not a regular file",
		"relative.pem":          "not absolute",
		filepath.Join(dir, "x"): "cannot be read",
	} {
		if _, err := ReadSmallFile(p, 1<<10); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadSmallFile(%s) = %v, want %q", p, err, want)
		}
	}
}
