package gpt

import (
	"os"
	"path/filepath"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	dgpt "github.com/diskfs/go-diskfs/partition/gpt"
)

// makeDisk writes a GPT image with go-diskfs (an independent writer) and
// returns it opened.
func makeDisk(t *testing.T, size int64, parts []*dgpt.Partition) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	d, err := diskfs.Create(p, size, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&dgpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		GUID: "11111111-2222-3333-4444-555555555555", Partitions: parts}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestReadTable(t *testing.T) {
	f := makeDisk(t, 64<<20, []*dgpt.Partition{
		{Index: 1, Start: 2048, End: 2048 + 20480 - 1, Type: dgpt.EFISystemPartition, Name: "EFI System Partition",
			GUID: "0B9E6B3C-7D2F-4C1E-9A2B-3C4D5E6F7A8B"},
		{Index: 2, Start: 22528, End: 100000, Type: dgpt.LinuxFilesystem, Name: "root",
			GUID: "9A8B7C6D-5E4F-4A3B-8C2D-1E0F9A8B7C6D"},
	})
	fi, _ := f.Stat()
	tab, err := Read(f, fi.Size(), 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Partitions) != 2 {
		t.Fatalf("partitions %+v", tab.Partitions)
	}
	esp, ok := tab.Find(TypeEFISystem)
	if !ok || esp.Number != 1 || esp.FirstLBA != 2048 || esp.Sectors() != 20480 || esp.Name != "EFI System Partition" {
		t.Fatalf("ESP %+v", esp)
	}
	if esp.Unique.String() != "0B9E6B3C-7D2F-4C1E-9A2B-3C4D5E6F7A8B" {
		t.Errorf("ESP unique GUID %s", esp.Unique)
	}
	root, ok := tab.ByUnique(MustGUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"))
	if !ok || root.Number != 2 || root.Type != TypeLinuxFilesystem {
		t.Fatalf("root %+v", root)
	}
	if tab.DiskGUID.String() != "11111111-2222-3333-4444-555555555555" {
		t.Errorf("disk GUID %s", tab.DiskGUID)
	}
	m, err := ReadMBR(f)
	if err != nil || !m.IsProtective() {
		t.Errorf("protective MBR %+v %v", m, err)
	}
}

func TestReadFallsBackToBackupHeader(t *testing.T) {
	f := makeDisk(t, 8<<20, []*dgpt.Partition{{Index: 1, Start: 2048, End: 4095, Type: dgpt.LinuxFilesystem}})
	fi, _ := f.Stat()
	// Corrupt the primary header through a writable handle.
	w, err := os.OpenFile(f.Name(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt([]byte("XXXXXXXX"), 512)
	w.Close()
	tab, err := Read(f, fi.Size(), 512)
	if err != nil {
		t.Fatalf("backup header not used: %v", err)
	}
	if len(tab.Partitions) != 1 || tab.Partitions[0].FirstLBA != 2048 {
		t.Fatalf("%+v", tab.Partitions)
	}
}

func TestReadNoTable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "blank")
	os.WriteFile(p, make([]byte, 1<<20), 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	if _, err := Read(f, 1<<20, 512); err == nil {
		t.Fatal("a blank disk has a table?")
	}
	if _, err := Read(f, 1<<20, 1024); err == nil {
		t.Fatal("sector size 1024 accepted")
	}
}

func TestGUIDRoundTrip(t *testing.T) {
	for _, s := range []string{"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "00000000-0000-0000-0000-000000000001"} {
		g, err := ParseGUID(s)
		if err != nil || g.String() != s {
			t.Errorf("%s → %s, %v", s, g, err)
		}
	}
	// The ESP type's first bytes on disk are 28 73 2A C1 (little-endian).
	if TypeEFISystem[0] != 0x28 || TypeEFISystem[3] != 0xC1 {
		t.Errorf("mixed-endian layout wrong: % x", TypeEFISystem[:4])
	}
	if _, err := ParseGUID("nope"); err == nil {
		t.Error("bad GUID parsed")
	}
}
