package efivar

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var espGUID = [16]byte{0x3c, 0x6b, 0x9e, 0x0b, 0x2f, 0x7d, 0x1e, 0x4c, 0x9a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x7a, 0x8b}

func TestLoadOptionBytes(t *testing.T) {
	opt := LoadOption{
		Attributes:  LoadOptionActive,
		Description: "ironic1",
		FilePath:    NewDevicePath(HardDrive(1, 2048, 0x100000, espGUID), FilePath(`\EFI\BOOT\BOOTX64.EFI`)),
	}
	b := opt.Marshal()
	// Hand-assembled from the UEFI spec: attributes, path length, UTF-16
	// description, HD node (42 bytes), file node, end node.
	want := "01000000" + "5e00" +
		"690072006f006e0069006300310000" + "00" +
		"0401" + "2a00" + "01000000" + "0008000000000000" + "0000100000000000" +
		"3c6b9e0b2f7d1e4c9a2b3c4d5e6f7a8b" + "02" + "02" +
		"0404" + "3000" + hex.EncodeToString(utf16le(`\EFI\BOOT\BOOTX64.EFI`)) + "0000" +
		"7fff0400"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("load option\n got %s\nwant %s", got, want)
	}
	back, err := ParseLoadOption(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Description != "ironic1" || back.Attributes != LoadOptionActive || !bytes.Equal(back.FilePath, opt.FilePath) {
		t.Fatalf("round trip %+v", back)
	}
	if s := back.FilePath.String(); s != `HD(1,GPT,0b9e6b3c-7d2f-4c1e-9a2b-3c4d5e6f7a8b,0x800,0x100000)/File(\EFI\BOOT\BOOTX64.EFI)` {
		t.Errorf("String %s", s)
	}
	if g, ok := back.FilePath.HardDriveGUID(); !ok || g != espGUID {
		t.Errorf("HardDriveGUID %x %v", g, ok)
	}
}

func utf16le(s string) []byte {
	var b []byte
	for _, r := range s {
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	return b
}

func TestParseLoadOptionRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 0, 0, 0, 4, 0}, {1, 0, 0, 0, 0xff, 0, 'a', 0, 0, 0, 1, 2}} {
		if _, err := ParseLoadOption(b); err == nil {
			t.Errorf("%x parsed", b)
		}
	}
	if _, err := DevicePath([]byte{4, 4, 2, 0}).Nodes(); err == nil {
		t.Error("node length 2 accepted")
	}
}

func TestStoreBootEntries(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir}
	if s.Available() {
		t.Fatal("an empty directory is not a variable store")
	}
	// A firmware entry that exists already, first in BootOrder.
	pxe := LoadOption{Attributes: LoadOptionActive, Description: "UEFI PXEv4", FilePath: NewDevicePath()}
	if err := s.Set("Boot0000", GlobalGUID, BootVarAttrs, pxe.Marshal()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBootOrder([]uint16{0}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "BootCurrent-"+GlobalGUID), []byte{6, 0, 0, 0, 6, 0}, 0o644)
	if !s.Available() {
		t.Fatal("store not available")
	}
	opt := LoadOption{Attributes: LoadOptionActive, Description: "ironic1",
		FilePath: NewDevicePath(HardDrive(1, 2048, 4096, espGUID), FilePath("/EFI/BOOT/BOOTX64.EFI"))}
	num, err := s.AddBootEntry(opt)
	if err != nil || num != 1 {
		t.Fatalf("AddBootEntry = %d, %v", num, err)
	}
	order, _ := s.BootOrder()
	if len(order) != 2 || order[0] != 1 || order[1] != 0 {
		t.Fatalf("BootOrder %v, want the new entry first", order)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "Boot0001-"+GlobalGUID))
	if binary.LittleEndian.Uint32(raw) != BootVarAttrs || !bytes.Equal(raw[4:], opt.Marshal()) {
		t.Fatalf("Boot0001 file %x", raw)
	}
	entries, err := s.BootEntries()
	if err != nil || len(entries) != 2 || entries[1].Description != "ironic1" || entries[1].Name() != "Boot0001" {
		t.Fatalf("entries %+v %v", entries, err)
	}
	if !strings.Contains(entries[1].FilePath.String(), `File(\EFI\BOOT\BOOTX64.EFI)`) {
		t.Errorf("path %s", entries[1].FilePath)
	}
	if cur, err := s.BootCurrent(); err != nil || cur != 6 {
		t.Errorf("BootCurrent %d %v", cur, err)
	}
	if err := s.RemoveBootEntry(1); err != nil {
		t.Fatal(err)
	}
	order, _ = s.BootOrder()
	if len(order) != 1 || order[0] != 0 {
		t.Fatalf("BootOrder after remove %v", order)
	}
	if _, _, err := s.Get("Boot0001", GlobalGUID); err == nil {
		t.Fatal("Boot0001 still there")
	}
	// The freed number is reused.
	if num, _ := s.AddBootEntry(opt); num != 1 {
		t.Errorf("reused number %d", num)
	}
	if err := s.Delete("Nope", GlobalGUID); err != nil {
		t.Errorf("deleting a missing variable: %v", err)
	}
}

func TestHardDriveMBR(t *testing.T) {
	p := NewDevicePath(HardDriveMBR(1, 2048, 409600, 0x1a2b3c4d), FilePath(`\EFI\BOOT\BOOTX64.EFI`))
	if s := p.String(); s != `HD(1,MBR,0x1a2b3c4d,0x800,0x64000)/File(\EFI\BOOT\BOOTX64.EFI)` {
		t.Errorf("String %s", s)
	}
	if _, ok := p.HardDriveGUID(); ok {
		t.Error("an MBR node has no partition GUID")
	}
}
