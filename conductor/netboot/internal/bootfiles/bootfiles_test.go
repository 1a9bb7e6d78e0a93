package bootfiles

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"undionly.kpxe":      "undionly.kpxe",
		"/snponly.efi":       "snponly.efi",
		"efi//./ipxe.efi":    "efi/ipxe.efi",
		`\efi\snponly.efi`:   "efi/snponly.efi",
		"a/b/../../../etc":   "",
		"../etc/passwd":      "",
		"/..":                "",
		"":                   "",
		"/":                  "",
		"x\x00y":             "",
		`..\..\etc\shadow`:   "",
		"dir/../escape.file": "",
	} {
		got, err := Clean(in)
		if want == "" {
			if !errors.Is(err, ErrRefused) {
				t.Errorf("Clean(%q) = %q, %v; want refused", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestOpenConfined(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "ipxe")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "undionly.kpxe"), "bios")
	write(filepath.Join(base, "secret"), "outside")
	for _, l := range [][2]string{
		{"../secret", "escape-relative"},
		{filepath.Join(base, "secret"), "escape-absolute"},
		{"undionly.kpxe", "inside-link"},
	} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{"undionly.kpxe", "/inside-link"} {
		f, err := d.Open(name)
		if err != nil {
			t.Fatalf("Open(%s) = %v", name, err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != "bios" {
			t.Fatalf("Open(%s) read %q", name, b)
		}
	}
	for _, name := range []string{"escape-relative", "escape-absolute", "../secret", "sub", "."} {
		if f, err := d.Open(name); !errors.Is(err, ErrRefused) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(%s) = %v, want refused", name, err)
		}
	}
	if _, err := d.Open("missing.efi"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want not exist", err)
	}
}
