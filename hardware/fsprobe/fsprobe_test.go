package fsprobe

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mkfs runs a real mkfs on an image file and returns what blkid says, so
// the probe is checked against the reference tool.
func mkfs(t *testing.T, size int64, argv ...string) (string, map[string]string) {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Skipf("%s not installed", argv[0])
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	f, _ := os.Create(img)
	f.Truncate(size)
	f.Close()
	if out, err := exec.Command(argv[0], append(argv[1:], img)...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v %s", argv, err, out)
	}
	want := map[string]string{}
	if blkid, err := exec.LookPath("blkid"); err == nil {
		out, _ := exec.Command(blkid, "-p", "-o", "export", img).Output()
		for _, line := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				want[k] = v
			}
		}
	}
	return img, want
}

func TestProbeAgainstBlkid(t *testing.T) {
	cases := []struct {
		typ  string
		size int64
		argv []string
	}{
		{"ext4", 16 << 20, []string{"mkfs.ext4", "-q", "-F", "-L", "rootfs"}},
		{"ext2", 8 << 20, []string{"mkfs.ext2", "-q", "-F", "-L", "boot"}},
		{"vfat", 64 << 20, []string{"mkfs.vfat", "-F", "32", "-n", "EFI-PART"}},
		{"vfat", 16 << 20, []string{"mkfs.vfat", "-F", "16", "-n", "ESP16"}},
		{"swap", 8 << 20, []string{"mkswap", "-L", "swap1"}},
	}
	for _, c := range cases {
		t.Run(c.argv[0]+c.argv[len(c.argv)-1], func(t *testing.T) {
			img, want := mkfs(t, c.size, c.argv...)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			info, ok := Probe(f, 0)
			if !ok || info.Type != c.typ {
				t.Fatalf("probe = %+v %v, want type %s", info, ok, c.typ)
			}
			if len(want) > 0 && (info.UUID != want["UUID"] || info.Label != want["LABEL"]) {
				t.Errorf("probe = %+v; blkid says UUID=%s LABEL=%s", info, want["UUID"], want["LABEL"])
			}
		})
	}
}

func TestProbeNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "zero")
	os.WriteFile(p, make([]byte, 1<<20), 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	if i, ok := Probe(f, 0); ok {
		t.Fatalf("found %+v on zeros", i)
	}
}
