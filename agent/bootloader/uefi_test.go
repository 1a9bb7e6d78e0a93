package bootloader

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	dgpt "github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/efivar"
	"github.com/rivetmetal/rivet/hardware/ondisk"
)

const espGUID = "3E9B0F4A-6C1D-4E2F-8A7B-9C0D1E2F3A4B"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func utf16CSV(s string) []byte {
	b := []byte{0xff, 0xfe}
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return b
}

// espDisk writes a 64 MiB GPT disk image with a FAT32 ESP holding files,
// as dev/<name> under a new root, and returns the root and the disk.
func espDisk(t *testing.T, files map[string][]byte) (string, hardware.BlockDevice) {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	p := filepath.Join(root, "dev", "sdz")
	const size = 64 << 20
	d, err := diskfs.Create(p, size, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&dgpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*dgpt.Partition{
		{Index: 1, Start: 2048, End: 2048 + 80000 - 1, Type: dgpt.EFISystemPartition, GUID: espGUID},
	}}); err != nil {
		t.Fatal(err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "EFI"})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := fs.Mkdir(filepath.Dir(name)); err != nil {
			t.Fatal(err)
		}
		f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(content)
		f.Close()
	}
	d.Close()
	return root, hardware.BlockDevice{Name: "sdz", Path: "/dev/sdz", Size: size, LogicalSectorSize: 512}
}

// nvram is a fake efivarfs holding the firmware's own entries.
func nvram(t *testing.T) efivar.Store {
	t.Helper()
	s := efivar.Store{Dir: t.TempDir()}
	for num, label := range map[uint16]string{0: "UEFI PXEv4 (MAC:525400123456)", 3: "ironic1", 5: "debian"} {
		opt := efivar.LoadOption{Attributes: efivar.LoadOptionActive, Description: label, FilePath: efivar.NewDevicePath(efivar.FilePath(`\old.efi`))}
		if err := s.Set(efivar.BootName(num), efivar.GlobalGUID, efivar.BootVarAttrs, opt.Marshal()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetBootOrder([]uint16{0, 3, 5}); err != nil {
		t.Fatal(err)
	}
	return s
}

func entries(t *testing.T, s efivar.Store) map[string]efivar.BootEntry {
	t.Helper()
	es, err := s.BootEntries()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]efivar.BootEntry{}
	for _, e := range es {
		if _, dup := out[e.Description]; dup {
			t.Errorf("two entries labelled %q", e.Description)
		}
		out[e.Description] = e
	}
	return out
}

func TestUEFIEntriesFromKnownLoaders(t *testing.T) {
	root, d := espDisk(t, map[string][]byte{"/EFI/BOOT/BOOTX64.EFI": []byte("MZ"), "/EFI/debian/grubx64.efi": []byte("MZ")})
	store := nvram(t)
	in := &Installer{EFI: store, DevRoot: root, Log: quiet()}
	out, err := in.Install(context.Background(), Request{Disk: d, RootUUID: "0x1a2b3c4d", TargetBootMode: "uefi"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Entries) != 1 || out.GRUB {
		t.Fatalf("outcome %+v", out)
	}
	got := entries(t, store)
	e, ok := got["ironic1"]
	if !ok {
		t.Fatalf("no ironic1 entry: %v", got)
	}
	if e.Num == 3 {
		t.Error("the old ironic1 entry (Boot0003) was kept instead of replaced")
	}
	g, ok := e.FilePath.HardDriveGUID()
	if !ok || ondisk.GUID(g) != ondisk.MustGUID(espGUID) || !strings.HasSuffix(e.FilePath.String(), `File(\EFI\BOOT\BOOTX64.EFI)`) ||
		!strings.HasPrefix(e.FilePath.String(), "HD(1,GPT,") {
		t.Errorf("entry path %s", e.FilePath)
	}
	order, _ := store.BootOrder()
	if len(order) != 3 || order[0] != e.Num || order[1] != 0 || order[2] != 5 {
		t.Errorf("BootOrder %v, want the new entry first and Boot0003 gone", order)
	}
}

func TestUEFIShimCSVWins(t *testing.T) {
	root, d := espDisk(t, map[string][]byte{
		"/EFI/BOOT/BOOTX64.EFI":   []byte("MZ"),
		"/EFI/redhat/BOOTX64.CSV": utf16CSV("shimx64.efi,Red Hat Enterprise Linux,,This is the boot entry for RHEL\r\n"),
		"/EFI/redhat/shimx64.efi": []byte("MZ"),
	})
	store := nvram(t)
	in := &Installer{EFI: store, DevRoot: root, Log: quiet()}
	if _, err := in.Install(context.Background(), Request{Disk: d, RootUUID: "0x1a2b3c4d", TargetBootMode: "uefi"}); err != nil {
		t.Fatal(err)
	}
	got := entries(t, store)
	e, ok := got["Red Hat Enterprise Linux"]
	if !ok || !strings.HasSuffix(e.FilePath.String(), `File(\EFI\redhat\shimx64.efi)`) {
		t.Fatalf("entries %v", got)
	}
	if _, ok := got["ironic1"]; ok && got["ironic1"].Num != 3 {
		t.Error("a CSV-named loader must be the only entry written")
	}
}

func TestUEFIWithoutESP(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	p := filepath.Join(root, "dev", "sdz")
	d, _ := diskfs.Create(p, 16<<20, diskfs.SectorSize512)
	d.Partition(&dgpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*dgpt.Partition{
		{Index: 1, Start: 2048, End: 20000, Type: dgpt.LinuxFilesystem}}})
	d.Close()
	in := &Installer{EFI: nvram(t), DevRoot: root, Log: quiet()}
	_, err := in.Install(context.Background(), Request{Disk: hardware.BlockDevice{Name: "sdz", Path: "/dev/sdz", Size: 16 << 20, LogicalSectorSize: 512},
		RootUUID: "0x00000000", TargetBootMode: "uefi"})
	if !errors.Is(err, ErrNoESP) || !strings.Contains(err.Error(), "UEFI-compatible image") {
		t.Fatalf("error %v", err)
	}
}

// TestNotBootedUEFIWholeDisk is the host run of Ironic's UEFI whole-disk
// deploy: no efivarfs, so nothing can be written, and the image's own
// fallback loader is trusted.
func TestNotBootedUEFIWholeDisk(t *testing.T) {
	root, d := espDisk(t, map[string][]byte{"/EFI/BOOT/BOOTX64.EFI": []byte("MZ")})
	in := &Installer{EFI: efivar.Store{Dir: filepath.Join(t.TempDir(), "none")}, DevRoot: root, Log: quiet()}
	out, err := in.Install(context.Background(), Request{Disk: d, RootUUID: "0x1a2b3c4d", TargetBootMode: "uefi"})
	if err != nil || out.GRUB || len(out.Entries) != 0 || !strings.Contains(out.Note, "whole-disk") {
		t.Fatalf("%+v %v", out, err)
	}
	// A partition image with GRUB disabled by Ironic fails clearly.
	_, err = in.Install(context.Background(), Request{Disk: d, RootUUID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", TargetBootMode: "bios"})
	if !errors.Is(err, ErrGRUBDisabled) {
		t.Fatalf("GRUB disabled: %v", err)
	}
}

func TestParseShimCSV(t *testing.T) {
	for _, c := range []struct {
		in          []byte
		file, label string
		ok          bool
	}{
		{utf16CSV("shimx64.efi,Fedora,,This is the boot entry for Fedora\n"), "shimx64.efi", "Fedora", true},
		{[]byte("s\x00h\x00i\x00m\x00.\x00e\x00f\x00i\x00,\x00U\x00b\x00u\x00n\x00t\x00u\x00"), "shim.efi", "Ubuntu", true},
		{utf16CSV("garbage"), "", "", false},
	} {
		f, l, err := parseShimCSV(c.in)
		if (err == nil) != c.ok || f != c.file || l != c.label {
			t.Errorf("parseShimCSV(%q) = %q %q %v", c.in, f, l, err)
		}
	}
}
