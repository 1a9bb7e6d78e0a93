package osimage

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildSmall(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 (e2fsprogs) is not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub/file"), []byte("hello"), 0o644)
	raw := filepath.Join(dir, "os.raw")
	if err := Build(context.Background(), raw, Options{DiskMB: 64, ESPMB: 8, RootMB: 32, Sources: []string{src}}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(raw)
	if err != nil || fi.Size() != 64<<20 {
		t.Fatalf("image: %v %v", fi, err)
	}
	// The root filesystem at 9 MiB holds the source tree.
	if _, err := exec.LookPath("debugfs"); err == nil {
		out, err := exec.Command("debugfs", "-R", "cat /"+strings.TrimPrefix(src, "/")+"/sub/file", raw+"?offset=9437184").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "hello") {
			t.Fatalf("debugfs: %v: %s", err, out)
		}
	}
	zst, err := Derive(context.Background(), raw, Zstd)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(zst); err != nil || fi.Size() == 0 || fi.Size() > 16<<20 {
		t.Fatalf("zstd variant: %v %v", fi, err)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Log("qemu-img (qemu-utils) is not installed: no qcow2 variants")
		return
	}
	// The qcow2 variants: plain clusters, and zlib-compressed ones (as
	// cloud images ship), each named by its suffix.
	var sizes []int64
	for _, tc := range []struct {
		v          Variant
		name       string
		compressed bool
	}{{Qcow2, "os.qcow2", false}, {Qcow2Zlib, "os.zlib.qcow2", true}} {
		p, err := Derive(context.Background(), raw, tc.v)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(p) != tc.name {
			t.Errorf("variant %q is %s, want %s", tc.v, filepath.Base(p), tc.name)
		}
		out, err := exec.Command("qemu-img", "check", "--output=json", "-f", "qcow2", p).Output()
		var check struct {
			Compressed int64 `json:"compressed-clusters"`
			Allocated  int64 `json:"allocated-clusters"`
		}
		if err == nil {
			err = json.Unmarshal(out, &check)
		}
		if err != nil || check.Allocated == 0 || (check.Compressed > 0) != tc.compressed {
			t.Errorf("qemu-img check %s: %+v, %v: %s", p, check, err, out)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	}
	if sizes[1] >= sizes[0] {
		t.Errorf("the zlib-compressed qcow2 has %d bytes, the plain one %d", sizes[1], sizes[0])
	}
}

func TestLinkTreeBudget(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "a"), 0o755)
	for _, f := range []string{"a/one", "a/two", "three"} {
		if err := os.WriteFile(filepath.Join(src, f), make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("a/one", filepath.Join(src, "link"))
	dst := filepath.Join(dir, "dst")
	budget := int64(2<<20 + 100)
	if err := linkTree(context.Background(), src, dst, &budget); err != nil {
		t.Fatal(err)
	}
	var linked int
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			linked++
		}
		return nil
	})
	if linked != 2 || budget != 100 {
		t.Errorf("linked %d files, %d bytes of budget left; want 2 and 100", linked, budget)
	}
	if target, err := os.Readlink(filepath.Join(dst, "link")); err != nil || target != "a/one" {
		t.Errorf("symlink: %q %v", target, err)
	}
}

func TestForSize(t *testing.T) {
	for _, mb := range []int64{64, 1024, 2560} {
		o := ForSize(mb)
		if o.DiskMB != mb || 1+o.ESPMB+o.RootMB+1 > mb || o.FillMB <= 0 || o.FillMB >= o.RootMB {
			t.Errorf("ForSize(%d) = %+v", mb, o)
		}
	}
	if o := ForSize(2560); o.ESPMB != 100 || o.RootMB != 2048 {
		t.Errorf("ForSize(2560) = %+v, want the 100 MiB ESP and 2048 MiB root of the default image", o)
	}
}
