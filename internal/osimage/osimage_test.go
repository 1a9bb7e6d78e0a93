package osimage

import (
	"context"
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
}
