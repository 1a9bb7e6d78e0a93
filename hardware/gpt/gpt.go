// Package gpt reads GUID partition tables (UEFI spec §5.3) from a disk:
// the header, every used partition entry with its type and unique GUIDs,
// and the protective or legacy MBR. It only reads; writing tables is the
// imagewriter's job. Tests and the agent feed it any io.ReaderAt (a loop
// device, a disk image, an in-memory buffer).
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/rivetmetal/rivet/hardware/internal/ucs2"
	"hash/crc32"
	"io"
	"strings"
)

// GUID is a GUID in its on-disk (mixed-endian) byte order.
type GUID [16]byte

// ParseGUID parses the canonical text form ("C12A7328-F81F-11D2-…"), any case.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	h := strings.ReplaceAll(strings.TrimSpace(s), "-", "")
	if len(h) != 32 {
		return g, fmt.Errorf("gpt: invalid GUID %q", s)
	}
	var raw [16]byte
	for i := 0; i < 16; i++ {
		var b byte
		if _, err := fmt.Sscanf(h[2*i:2*i+2], "%02x", &b); err != nil {
			return g, fmt.Errorf("gpt: invalid GUID %q", s)
		}
		raw[i] = b
	}
	// The first three fields are stored little-endian.
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}

// MustGUID is ParseGUID for constants; it panics on a malformed GUID.
func MustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String renders the canonical upper-case text form.
func (g GUID) String() string {
	return fmt.Sprintf("%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15])
}

// IsZero reports whether g is all zeros (an unused entry).
func (g GUID) IsZero() bool { return g == GUID{} }

// Well-known partition type GUIDs.
var (
	// TypeEFISystem is the EFI system partition (ESP).
	TypeEFISystem = MustGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	// TypeBIOSBoot is GRUB's BIOS boot partition.
	TypeBIOSBoot = MustGUID("21686148-6449-6E6F-744E-656564454649")
	// TypeLinuxFilesystem is Linux filesystem data.
	TypeLinuxFilesystem = MustGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
)

// Partition is one used entry of the table.
type Partition struct {
	// Number is the 1-based index in the entry array (the kernel's
	// partition number).
	Number int
	Type   GUID
	// Unique is the partition's own GUID (its PARTUUID).
	Unique   GUID
	FirstLBA uint64
	LastLBA  uint64
	Attrs    uint64
	Name     string
}

// Sectors returns the partition's length in sectors.
func (p Partition) Sectors() uint64 { return p.LastLBA - p.FirstLBA + 1 }

// Table is a GUID partition table.
type Table struct {
	// SectorSize is the logical sector size the table was found with.
	SectorSize int
	DiskGUID   GUID
	// HeaderLBA and BackupLBA locate the primary and backup headers.
	HeaderLBA, BackupLBA uint64
	// FirstUsable and LastUsable bound the partitions.
	FirstUsable, LastUsable uint64
	Partitions              []Partition
}

// ErrNoTable is returned when the disk has no valid GPT header.
var ErrNoTable = errors.New("no GUID partition table")

const signature = "EFI PART"

// maxEntries bounds the entry array read (the spec's minimum is 128; tables
// with more are rare and a corrupt count must not make us read gigabytes).
const maxEntries = 4096

// Read reads the primary GPT of a disk with the given logical sector size
// (512 or 4096). It checks the header and entry-array CRCs; on a bad
// primary it tries the backup header at the end of the disk (size bytes).
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if sectorSize != 512 && sectorSize != 4096 {
		return nil, fmt.Errorf("gpt: unsupported sector size %d", sectorSize)
	}
	t, err := readAt(r, 1, sectorSize)
	if err == nil {
		return t, nil
	}
	if size > 0 {
		last := uint64(size/int64(sectorSize)) - 1
		if bt, berr := readAt(r, last, sectorSize); berr == nil {
			return bt, nil
		}
	}
	return nil, err
}

func readAt(r io.ReaderAt, lba uint64, ss int) (*Table, error) {
	hdr := make([]byte, ss)
	if _, err := r.ReadAt(hdr, int64(lba)*int64(ss)); err != nil {
		return nil, fmt.Errorf("gpt: read header at LBA %d: %w", lba, err)
	}
	if string(hdr[0:8]) != signature {
		return nil, ErrNoTable
	}
	le := binary.LittleEndian
	hsize := le.Uint32(hdr[12:16])
	if hsize < 92 || int(hsize) > ss {
		return nil, fmt.Errorf("gpt: header size %d: %w", hsize, ErrNoTable)
	}
	want := le.Uint32(hdr[16:20])
	h := append([]byte(nil), hdr[:hsize]...)
	copy(h[16:20], []byte{0, 0, 0, 0})
	if crc32.ChecksumIEEE(h) != want {
		return nil, fmt.Errorf("gpt: header CRC mismatch at LBA %d: %w", lba, ErrNoTable)
	}
	t := &Table{
		SectorSize:  ss,
		HeaderLBA:   le.Uint64(hdr[24:32]),
		BackupLBA:   le.Uint64(hdr[32:40]),
		FirstUsable: le.Uint64(hdr[40:48]),
		LastUsable:  le.Uint64(hdr[48:56]),
	}
	copy(t.DiskGUID[:], hdr[56:72])
	entLBA := le.Uint64(hdr[72:80])
	n := le.Uint32(hdr[80:84])
	esize := le.Uint32(hdr[84:88])
	entCRC := le.Uint32(hdr[88:92])
	if n > maxEntries || esize < 128 || esize > 1024 || esize%8 != 0 {
		return nil, fmt.Errorf("gpt: implausible entry array (%d entries of %d bytes): %w", n, esize, ErrNoTable)
	}
	ents := make([]byte, int(n)*int(esize))
	if _, err := r.ReadAt(ents, int64(entLBA)*int64(ss)); err != nil {
		return nil, fmt.Errorf("gpt: read entries at LBA %d: %w", entLBA, err)
	}
	if crc32.ChecksumIEEE(ents) != entCRC {
		return nil, fmt.Errorf("gpt: entry array CRC mismatch: %w", ErrNoTable)
	}
	for i := 0; i < int(n); i++ {
		e := ents[i*int(esize) : (i+1)*int(esize)]
		var p Partition
		copy(p.Type[:], e[0:16])
		if p.Type.IsZero() {
			continue
		}
		copy(p.Unique[:], e[16:32])
		p.Number = i + 1
		p.FirstLBA = le.Uint64(e[32:40])
		p.LastLBA = le.Uint64(e[40:48])
		p.Attrs = le.Uint64(e[48:56])
		p.Name = ucs2.Decode(e[56:128])
		t.Partitions = append(t.Partitions, p)
	}
	return t, nil
}

// Find returns the first partition of type typ, or false.
func (t *Table) Find(typ GUID) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Type == typ {
			return p, true
		}
	}
	return Partition{}, false
}

// ByUnique returns the partition whose unique GUID is g, or false.
func (t *Table) ByUnique(g GUID) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Unique == g {
			return p, true
		}
	}
	return Partition{}, false
}

// MBR is the legacy master boot record of a disk.
type MBR struct {
	// Signature is the 32-bit disk identifier at byte 440.
	Signature uint32
	// Partitions are the four primary entries; Type 0 means unused.
	Partitions [4]MBRPartition
	// Valid reports the 0x55AA boot signature.
	Valid bool
}

// MBRPartition is one primary MBR entry.
type MBRPartition struct {
	Bootable bool
	Type     byte
	StartLBA uint32
	Sectors  uint32
}

// ReadMBR reads the first sector's partition table.
func ReadMBR(r io.ReaderAt) (MBR, error) {
	var b [512]byte
	var m MBR
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return m, fmt.Errorf("gpt: read MBR: %w", err)
	}
	m.Valid = b[510] == 0x55 && b[511] == 0xAA
	m.Signature = binary.LittleEndian.Uint32(b[440:444])
	for i := 0; i < 4; i++ {
		e := b[446+16*i : 446+16*(i+1)]
		m.Partitions[i] = MBRPartition{
			Bootable: e[0] == 0x80, Type: e[4],
			StartLBA: binary.LittleEndian.Uint32(e[8:12]), Sectors: binary.LittleEndian.Uint32(e[12:16]),
		}
	}
	return m, nil
}

// IsProtective reports whether the MBR only protects a GPT (one 0xEE entry).
func (m MBR) IsProtective() bool {
	return m.Valid && bytes.Contains([]byte{m.Partitions[0].Type, m.Partitions[1].Type, m.Partitions[2].Type, m.Partitions[3].Type}, []byte{0xEE})
}
