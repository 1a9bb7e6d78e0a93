package ondisk

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	dmbr "github.com/diskfs/go-diskfs/partition/mbr"
)

// blkid returns what blkid -p says of an image file, nil when blkid is not
// installed.
func blkid(t *testing.T, path string) map[string]string {
	t.Helper()
	bin, err := exec.LookPath("blkid")
	if err != nil {
		return nil
	}
	out, _ := exec.Command(bin, "-p", "-o", "export", path).Output()
	want := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			want[k] = v
		}
	}
	return want
}

func TestReadMBR(t *testing.T) {
	p := filepath.Join(t.TempDir(), "msdos.img")
	d, err := diskfs.Create(p, 16<<20, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&dmbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*dmbr.Partition{
		{Bootable: true, Type: dmbr.Linux, Start: 2048, Size: 8192},
		{Type: dmbr.EFISystem, Start: 10240, Size: 4096},
	}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// A disk signature, as parted writes one.
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt([]byte{0x4d, 0x3c, 0x2b, 0x1a}, 440)

	m, err := ReadMBR(f)
	if err != nil || !m.Valid || m.IsProtective() || !m.HasPartitions() {
		t.Fatalf("MBR %+v %v", m, err)
	}
	if p0 := m.Partitions[0]; !p0.Bootable || p0.Type != 0x83 || p0.StartLBA != 2048 || p0.Sectors != 8192 || !p0.Used() {
		t.Errorf("partition 1 %+v", p0)
	}
	if p1 := m.Partitions[1]; p1.Type != MBRTypeEFISystem || p1.Bootable {
		t.Errorf("partition 2 %+v", p1)
	}
	if m.Partitions[2].Used() {
		t.Errorf("partition 3 %+v is used", m.Partitions[2])
	}
	if id := m.DiskIdentifier(); id != "0x1a2b3c4d" {
		t.Errorf("DiskIdentifier = %s", id)
	}
	if id, err := DiskIdentifier(f); err != nil || id != "0x1a2b3c4d" {
		t.Errorf("DiskIdentifier(f) = %s %v", id, err)
	}
	if want := blkid(t, p); want != nil && (want["PTTYPE"] != "dos" || "0x"+want["PTUUID"] != m.DiskIdentifier()) {
		t.Errorf("blkid says %v, we read %s", want, m.DiskIdentifier())
	}
	if u := m.PartUUID(2); u != "1a2b3c4d-02" {
		t.Errorf("PartUUID = %s", u)
	}
	fi, _ := f.Stat()
	if u := PartUUID(f, fi.Size(), 512, 1); u != "1a2b3c4d-01" {
		t.Errorf("PartUUID(f, 1) = %s", u)
	}
	if k := DetectTable(f, 512); k != MBRTable {
		t.Errorf("DetectTable = %q", k)
	}
}

func TestMBRWithoutPartitions(t *testing.T) {
	b := make([]byte, 4096)
	b[510], b[511] = 0x55, 0xAA
	m, err := ReadMBR(bytes.NewReader(b))
	if err != nil || !m.Valid || m.HasPartitions() {
		t.Fatalf("%+v %v", m, err)
	}
	if k := DetectTable(bytes.NewReader(b), 512); k != NoTable {
		t.Errorf("a boot sector without partitions: DetectTable = %q", k)
	}
	if u := PartUUID(bytes.NewReader(make([]byte, 4096)), 4096, 512, 1); u != "" {
		t.Errorf("PartUUID on zeros = %q", u)
	}
	if _, err := ReadMBR(bytes.NewReader(b[:300])); err == nil {
		t.Error("a 300-byte device has an MBR")
	}
	if _, err := DiskIdentifier(bytes.NewReader(b[:300])); err == nil {
		t.Error("a 300-byte device has a disk identifier")
	}
}
