package ondisk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	dgpt "github.com/diskfs/go-diskfs/partition/gpt"
)

// makeGPTDisk writes a GPT image with go-diskfs (an independent writer)
// and returns it opened.
func makeGPTDisk(t *testing.T, size int64, parts []*dgpt.Partition) *os.File {
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

func TestReadGPT(t *testing.T) {
	f := makeGPTDisk(t, 64<<20, []*dgpt.Partition{
		{Index: 1, Start: 2048, End: 2048 + 20480 - 1, Type: dgpt.EFISystemPartition, Name: "EFI System Partition",
			GUID: "0B9E6B3C-7D2F-4C1E-9A2B-3C4D5E6F7A8B"},
		{Index: 2, Start: 22528, End: 100000, Type: dgpt.LinuxFilesystem, Name: "root",
			GUID: "9A8B7C6D-5E4F-4A3B-8C2D-1E0F9A8B7C6D"},
	})
	fi, _ := f.Stat()
	tab, err := ReadGPT(f, fi.Size(), 512)
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
	if esp.Unique.String() != "0B9E6B3C-7D2F-4C1E-9A2B-3C4D5E6F7A8B" || esp.PartUUID() != "0b9e6b3c-7d2f-4c1e-9a2b-3c4d5e6f7a8b" {
		t.Errorf("ESP unique GUID %s, PARTUUID %s", esp.Unique, esp.PartUUID())
	}
	root, ok := tab.ByUnique(MustGUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"))
	if !ok || root.Number != 2 || root.Type != TypeLinuxFilesystem {
		t.Fatalf("root %+v", root)
	}
	if p, ok := tab.ByNumber(2); !ok || p.Unique != root.Unique {
		t.Errorf("ByNumber(2) = %+v %v", p, ok)
	}
	if _, ok := tab.ByNumber(3); ok {
		t.Error("ByNumber(3) found a partition")
	}
	if tab.DiskGUID.String() != "11111111-2222-3333-4444-555555555555" {
		t.Errorf("disk GUID %s", tab.DiskGUID)
	}
	if want := blkid(t, f.Name()); want != nil && (want["PTTYPE"] != "gpt" || !strings.EqualFold(want["PTUUID"], tab.DiskGUID.String())) {
		t.Errorf("blkid says %v, we read disk GUID %s", want, tab.DiskGUID)
	}
	m, err := ReadMBR(f)
	if err != nil || !m.IsProtective() {
		t.Errorf("protective MBR %+v %v", m, err)
	}
	if k := DetectTable(f, 512); k != GPTTable {
		t.Errorf("DetectTable = %q", k)
	}
	if u := PartUUID(f, fi.Size(), 512, 2); u != "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d" {
		t.Errorf("PartUUID(2) = %q", u)
	}
	if u := PartUUID(f, fi.Size(), 512, 7); u != "" {
		t.Errorf("PartUUID(7) = %q", u)
	}
}

func TestReadGPTFallsBackToBackupHeader(t *testing.T) {
	f := makeGPTDisk(t, 8<<20, []*dgpt.Partition{{Index: 1, Start: 2048, End: 4095, Type: dgpt.LinuxFilesystem}})
	fi, _ := f.Stat()
	// Corrupt the primary header through a writable handle.
	w, err := os.OpenFile(f.Name(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt([]byte("XXXXXXXX"), 512)
	w.Close()
	tab, err := ReadGPT(f, fi.Size(), 512)
	if err != nil {
		t.Fatalf("backup header not used: %v", err)
	}
	if len(tab.Partitions) != 1 || tab.Partitions[0].FirstLBA != 2048 {
		t.Fatalf("%+v", tab.Partitions)
	}
	// Without the disk size there is no backup to find.
	if _, err := ReadGPT(f, 0, 512); !errors.Is(err, ErrNoGPT) {
		t.Fatalf("no size: %v", err)
	}
}

func TestReadGPTNoTable(t *testing.T) {
	blank := bytes.NewReader(make([]byte, 1<<20))
	if _, err := ReadGPT(blank, 1<<20, 512); !errors.Is(err, ErrNoGPT) {
		t.Fatalf("a blank disk: %v", err)
	}
	if _, err := ReadGPT(blank, 1<<20, 1024); err == nil {
		t.Fatal("sector size 1024 accepted")
	}
	if _, err := ReadGPT(bytes.NewReader(make([]byte, 100)), 100, 512); err == nil || errors.Is(err, ErrNoGPT) {
		t.Fatalf("a device shorter than one sector: %v (want an I/O error)", err)
	}
	if k := DetectTable(blank, 512); k != NoTable {
		t.Errorf("DetectTable(blank) = %q", k)
	}
}

// TestReadGPTBoundsTheEntryArray checks that a header claiming a huge entry
// array (with a valid header CRC) is refused before anything is allocated
// for it.
func TestReadGPTBoundsTheEntryArray(t *testing.T) {
	for _, c := range []struct{ n, size uint32 }{{1 << 30, 128}, {128, 1 << 20}, {128, 100}, {4097, 128}} {
		disk := make([]byte, 64<<10)
		h := disk[512:1024]
		copy(h, gptSignature)
		le := binary.LittleEndian
		le.PutUint32(h[12:], 92)
		le.PutUint64(h[72:], 2)
		le.PutUint32(h[80:], c.n)
		le.PutUint32(h[84:], c.size)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := ReadGPT(bytes.NewReader(disk), 0, 512)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrNoGPT) || !strings.Contains(err.Error(), "implausible") {
			t.Errorf("%d entries of %d bytes: %v", c.n, c.size, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
			t.Errorf("%d entries of %d bytes: %d bytes allocated", c.n, c.size, n)
		}
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
	for _, bad := range []string{"nope", "C12A7328-F81F-11D2-BA4B-00A0C93EC93", "Z12A7328-F81F-11D2-BA4B-00A0C93EC93B"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("bad GUID %q parsed", bad)
		}
	}
}
