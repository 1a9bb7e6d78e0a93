package ondisk

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mkfs runs a real mkfs on an image file of size bytes and returns the
// file and what blkid says of it, so the probe is checked against the
// reference tool.
func mkfs(t *testing.T, size int64, argv ...string) (string, map[string]string) {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Skipf("%s not installed (scripts/install-deps.sh test)", argv[0])
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	f, _ := os.Create(img)
	f.Truncate(size)
	f.Close()
	if out, err := exec.Command(argv[0], append(argv[1:], img)...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v %s", argv, err, out)
	}
	return img, blkid(t, img)
}

func TestProbeAgainstBlkid(t *testing.T) {
	cases := []struct {
		typ, version string
		size         int64
		argv         []string
	}{
		{"ext4", "", 16 << 20, []string{"mkfs.ext4", "-q", "-F", "-L", "rootfs"}},
		{"ext3", "", 16 << 20, []string{"mkfs.ext3", "-q", "-F", "-L", "var"}},
		{"ext2", "", 8 << 20, []string{"mkfs.ext2", "-q", "-F", "-L", "boot"}},
		{"vfat", "FAT32", 64 << 20, []string{"mkfs.vfat", "-F", "32", "-n", "EFI-PART"}},
		{"vfat", "FAT16", 16 << 20, []string{"mkfs.vfat", "-F", "16", "-n", "ESP16"}},
		{"vfat", "FAT12", 4 << 20, []string{"mkfs.vfat", "-F", "12", "-n", "ir-vfd-dev"}},
		{"swap", "", 8 << 20, []string{"mkswap", "-L", "swap1"}},
		{"xfs", "", 320 << 20, []string{"mkfs.xfs", "-q", "-f", "-L", "data"}},
		{"btrfs", "", 128 << 20, []string{"mkfs.btrfs", "-q", "-f", "-L", "pool"}},
	}
	for _, c := range cases {
		t.Run(c.argv[0]+"-"+c.argv[len(c.argv)-1], func(t *testing.T) {
			img, want := mkfs(t, c.size, c.argv...)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fs, ok := Probe(f, 0)
			if !ok || fs.Type != c.typ || fs.Version != c.version {
				t.Fatalf("probe = %+v %v, want type %s version %q", fs, ok, c.typ, c.version)
			}
			if want != nil && (fs.UUID != want["UUID"] || fs.Label != want["LABEL"]) {
				t.Errorf("probe = %+v; blkid says UUID=%s LABEL=%s", fs, want["UUID"], want["LABEL"])
			}
			if fs.UUID == "" {
				t.Errorf("no UUID: %+v", fs)
			}
		})
	}
}

// TestProbeAtAnOffset finds a filesystem inside a partition-like window
// of a larger device, as the imagewriter and the bootloader read them.
func TestProbeAtAnOffset(t *testing.T) {
	img, want := mkfs(t, 8<<20, "mkfs.ext4", "-q", "-F", "-L", "inner")
	b, _ := os.ReadFile(img)
	disk := append(make([]byte, 1<<20), b...)
	fs, ok := Probe(bytes.NewReader(disk), 1<<20)
	if !ok || fs.Label != "inner" || (want != nil && fs.UUID != want["UUID"]) {
		t.Fatalf("probe at 1 MiB = %+v %v (blkid %v)", fs, ok, want)
	}
	if fs, ok := Probe(bytes.NewReader(disk), 0); ok {
		t.Fatalf("found %+v in front of the partition", fs)
	}
}

func TestProbeISO9660(t *testing.T) {
	img := filepath.Join(t.TempDir(), "cd.iso")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "meta_data.json"), []byte("{}"), 0o644)
	bin, err := exec.LookPath("genisoimage")
	if err != nil {
		t.Skip("genisoimage not installed (scripts/install-deps.sh test)")
	}
	if out, err := exec.Command(bin, "-quiet", "-o", img, "-V", "config-2", "-r", "-J", dir).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v %s", err, out)
	}
	f, _ := os.Open(img)
	defer f.Close()
	fs, ok := Probe(f, 0)
	if !ok || fs.Type != "iso9660" || fs.Label != "config-2" {
		t.Fatalf("probe = %+v %v", fs, ok)
	}
	if want := blkid(t, img); want != nil && fs.UUID != want["UUID"] {
		t.Errorf("UUID %s, blkid says %s", fs.UUID, want["UUID"])
	}
}

// TestProbeISO9660WithoutDate reads a primary volume descriptor whose
// creation date is unset (zeros or NULs): no UUID, as blkid gives none.
func TestProbeISO9660WithoutDate(t *testing.T) {
	disk := make([]byte, 64<<10)
	pvd := disk[16*2048:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:], "VMEDIA_BOOT_ISO                 ")
	fs, ok := Probe(bytes.NewReader(disk), 0)
	if !ok || fs.Type != "iso9660" || fs.Label != "VMEDIA_BOOT_ISO" || fs.UUID != "" {
		t.Fatalf("probe = %+v %v", fs, ok)
	}
	copy(pvd[813:], "0000000000000000")
	if fs, _ := Probe(bytes.NewReader(disk), 0); fs.UUID != "" {
		t.Fatalf("zero date: UUID %q", fs.UUID)
	}
}

func TestProbeNothing(t *testing.T) {
	if fs, ok := Probe(bytes.NewReader(make([]byte, 1<<20)), 0); ok {
		t.Fatalf("found %+v on zeros", fs)
	}
	// A device that ends in the middle of a superblock holds nothing,
	// and reading it must not fail in any other way.
	img, _ := mkfs(t, 16<<20, "mkfs.ext4", "-q", "-F")
	b, _ := os.ReadFile(img)
	for _, n := range []int{0, 100, 1100, 1279} {
		if fs, ok := Probe(bytes.NewReader(b[:n]), 0); ok {
			t.Errorf("%d bytes: found %+v", n, fs)
		}
	}
	if fs, ok := Probe(failingReader{}, 0); ok {
		t.Errorf("an unreadable device: found %+v", fs)
	}
}

type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestSharedFilesystem(t *testing.T) {
	const off = 3 << 20
	mk := func(at int64, magic []byte) []byte {
		b := make([]byte, off+4<<20)
		copy(b[off+at:], magic)
		return b
	}
	be := func(v uint32) []byte { b := make([]byte, 4); binary.BigEndian.PutUint32(b, v); return b }
	le := func(v uint32) []byte { b := make([]byte, 4); binary.LittleEndian.PutUint32(b, v); return b }
	for _, c := range []struct {
		want string
		disk []byte
	}{
		{"GFS2", mk(65536, be(0x01161970))},
		{"OCFS2", mk(2*4096, []byte("OCFSV2"))},
		{"OCFS2", mk(2*512, []byte("OCFSV2"))},
		{"VMFS", mk(1<<20, le(0xc001d00d))},
		{"", mk(0, nil)},
	} {
		if got := SharedFilesystem(bytes.NewReader(c.disk), off); got != c.want {
			t.Errorf("SharedFilesystem = %q, want %q", got, c.want)
		}
	}
	if got := SharedFilesystem(bytes.NewReader(make([]byte, 1000)), 0); got != "" {
		t.Errorf("a tiny device: %q", got)
	}
	// An ext4 volume is not shared.
	img, _ := mkfs(t, 16<<20, "mkfs.ext4", "-q", "-F")
	f, _ := os.Open(img)
	defer f.Close()
	if got := SharedFilesystem(f, 0); got != "" {
		t.Errorf("ext4: %q", got)
	}
}
