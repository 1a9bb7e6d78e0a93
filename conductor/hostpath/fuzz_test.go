package hostpath

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// FuzzOpen: whatever path is asked for, in a tree full of links in and
// out of the allowed directory, what Open opens is a regular file that
// really lies inside the allowed directory and is not the protected file.
func FuzzOpen(f *testing.F) {
	if runtime.GOOS != "linux" {
		f.Skip("the opened file's real path is read from /proc/self/fd")
	}
	base := f.TempDir()
	allowed, outside := filepath.Join(base, "images"), filepath.Join(base, "state")
	for _, d := range []string{filepath.Join(allowed, "sub", "deeper"), outside} {
		os.MkdirAll(d, 0o750)
	}
	secret := filepath.Join(outside, "rivet.db")
	os.WriteFile(secret, []byte("SECRET"), 0o600)
	os.WriteFile(filepath.Join(allowed, "kernel"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(allowed, "sub", "ramdisk"), []byte("r"), 0o644)
	os.Link(secret, filepath.Join(allowed, "sub", "hard"))
	for name, target := range map[string]string{
		"abs-out": secret, "rel-out": "../state/rivet.db", "sub/up": "../kernel", "sub/deeper/loop": "../../sub/deeper/loop",
		"sub/deeper/up2": "../../../state", "dev": "/dev/zero", "etc": "/etc", "sub/in": "deeper", "self": ".",
	} {
		os.Symlink(target, filepath.Join(allowed, name))
	}
	c, err := New(Config{Allowed: []string{allowed}, Protected: []string{secret}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	realAllowed, _ := filepath.EvalSymlinks(allowed)
	for _, p := range []string{"kernel", "sub/ramdisk", "sub/up", "sub/hard", "abs-out", "rel-out", "sub/deeper/up2/rivet.db",
		"dev", "etc/passwd", "sub/in/../up", "self/kernel", "../state/rivet.db", "sub/../../state/rivet.db", "sub/deeper/loop"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		p := allowed + "/" + rel
		fh, err := c.Open(p)
		if err != nil {
			return
		}
		defer fh.Close()
		st, err := fh.Stat()
		if err != nil || !st.Mode().IsRegular() {
			t.Fatalf("Open(%q) opened a %v", p, st.Mode())
		}
		real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fh.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(real, realAllowed+"/") {
			t.Fatalf("Open(%q) opened %s, outside %s", p, real, realAllowed)
		}
		if pst, err := os.Stat(secret); err == nil && os.SameFile(st, pst) {
			t.Fatalf("Open(%q) opened the protected file", p)
		}
	})
}

// FuzzFromFileURL: an accepted file URL names an absolute path, and never
// a path on another host.
func FuzzFromFileURL(f *testing.F) {
	for _, s := range []string{"file:///srv/a.img", "file://localhost/srv/a", "file://h/x", "file:///%2e%2e/etc", "FILE:///a?b#c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := FromFileURL(s)
		if err != nil {
			return
		}
		if !filepath.IsAbs(p) || !IsFileURL(s) {
			t.Fatalf("FromFileURL(%q) = %q", s, p)
		}
	})
}
