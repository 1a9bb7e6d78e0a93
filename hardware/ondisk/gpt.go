package ondisk

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// GUID is a GUID in its on-disk (mixed-endian) byte order.
type GUID [16]byte

// ParseGUID parses the canonical text form ("C12A7328-F81F-11D2-…"), any
// case.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	h := strings.ReplaceAll(strings.TrimSpace(s), "-", "")
	raw, err := hex.DecodeString(h)
	if err != nil || len(raw) != 16 {
		return g, fmt.Errorf("ondisk: invalid GUID %q", s)
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

// Well-known GPT partition type GUIDs.
var (
	// TypeEFISystem is the EFI system partition (ESP).
	TypeEFISystem = MustGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	// TypeBIOSBoot is GRUB's BIOS boot partition.
	TypeBIOSBoot = MustGUID("21686148-6449-6E6F-744E-656564454649")
	// TypeLinuxFilesystem is Linux filesystem data.
	TypeLinuxFilesystem = MustGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	// TypeGPFS is an IBM Spectrum Scale (GPFS) shared-disk partition.
	TypeGPFS = MustGUID("37AFFC90-EF7D-4E96-91C3-2D7AE055B174")
	// TypeVMFS is a VMware VMFS datastore partition.
	TypeVMFS = MustGUID("AA31E02A-400F-11DB-9590-000C2911D1B8")
)

// GPTPartition is one used entry of a GUID partition table.
type GPTPartition struct {
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
func (p GPTPartition) Sectors() uint64 { return p.LastLBA - p.FirstLBA + 1 }

// PartUUID is the partition's PARTUUID as the kernel and blkid print it:
// the unique GUID in lower case.
func (p GPTPartition) PartUUID() string { return strings.ToLower(p.Unique.String()) }

// GPT is a GUID partition table (UEFI spec §5.3).
type GPT struct {
	// SectorSize is the logical sector size the table was found with.
	SectorSize int
	DiskGUID   GUID
	// HeaderLBA and BackupLBA locate the primary and backup headers.
	HeaderLBA, BackupLBA uint64
	// FirstUsable and LastUsable bound the partitions.
	FirstUsable, LastUsable uint64
	Partitions              []GPTPartition
}

// ErrNoGPT is returned when a disk has no valid GPT header.
var ErrNoGPT = errors.New("no GUID partition table")

const gptSignature = "EFI PART"

// maxGPTEntries bounds the entry array read (the spec's minimum is 128;
// tables with more are rare and a corrupt count must not make us read
// gigabytes).
const maxGPTEntries = 4096

// ReadGPT reads the GUID partition table of a disk of size bytes with the
// given logical sector size (512 or 4096). It checks the header and
// entry-array CRCs; on a bad primary header it tries the backup header at
// the last sector of the disk (when size is known). A disk without a valid
// table gives an error wrapping ErrNoGPT.
func ReadGPT(r io.ReaderAt, size int64, sectorSize int) (*GPT, error) {
	if sectorSize != 512 && sectorSize != 4096 {
		return nil, fmt.Errorf("ondisk: GPT: unsupported sector size %d", sectorSize)
	}
	t, err := readGPTAt(r, 1, sectorSize)
	if err == nil {
		return t, nil
	}
	if size >= 2*int64(sectorSize) {
		last := uint64(size/int64(sectorSize)) - 1
		if bt, berr := readGPTAt(r, last, sectorSize); berr == nil {
			return bt, nil
		}
	}
	return nil, err
}

func readGPTAt(r io.ReaderAt, lba uint64, ss int) (*GPT, error) {
	hdr := make([]byte, ss)
	if _, err := r.ReadAt(hdr, int64(lba)*int64(ss)); err != nil {
		return nil, fmt.Errorf("ondisk: GPT: read header at LBA %d: %w", lba, err)
	}
	if string(hdr[0:8]) != gptSignature {
		return nil, ErrNoGPT
	}
	le := binary.LittleEndian
	hsize := le.Uint32(hdr[12:16])
	if hsize < 92 || int(hsize) > ss {
		return nil, fmt.Errorf("ondisk: GPT header size %d: %w", hsize, ErrNoGPT)
	}
	want := le.Uint32(hdr[16:20])
	h := append([]byte(nil), hdr[:hsize]...)
	copy(h[16:20], []byte{0, 0, 0, 0})
	if crc32.ChecksumIEEE(h) != want {
		return nil, fmt.Errorf("ondisk: GPT header CRC mismatch at LBA %d: %w", lba, ErrNoGPT)
	}
	t := &GPT{
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
	if n > maxGPTEntries || esize < 128 || esize > 1024 || esize%8 != 0 {
		return nil, fmt.Errorf("ondisk: implausible GPT entry array (%d entries of %d bytes): %w", n, esize, ErrNoGPT)
	}
	ents := make([]byte, int(n)*int(esize))
	if _, err := r.ReadAt(ents, int64(entLBA)*int64(ss)); err != nil {
		return nil, fmt.Errorf("ondisk: GPT: read entries at LBA %d: %w", entLBA, err)
	}
	if crc32.ChecksumIEEE(ents) != entCRC {
		return nil, fmt.Errorf("ondisk: GPT entry array CRC mismatch: %w", ErrNoGPT)
	}
	for i := 0; i < int(n); i++ {
		e := ents[i*int(esize) : (i+1)*int(esize)]
		var p GPTPartition
		copy(p.Type[:], e[0:16])
		if p.Type.IsZero() {
			continue
		}
		copy(p.Unique[:], e[16:32])
		p.Number = i + 1
		p.FirstLBA = le.Uint64(e[32:40])
		p.LastLBA = le.Uint64(e[40:48])
		p.Attrs = le.Uint64(e[48:56])
		p.Name = decodeUTF16LE(e[56:128])
		t.Partitions = append(t.Partitions, p)
	}
	return t, nil
}

// Find returns the first partition of type typ, or false.
func (t *GPT) Find(typ GUID) (GPTPartition, bool) {
	for _, p := range t.Partitions {
		if p.Type == typ {
			return p, true
		}
	}
	return GPTPartition{}, false
}

// ByUnique returns the partition whose unique GUID is g, or false.
func (t *GPT) ByUnique(g GUID) (GPTPartition, bool) {
	for _, p := range t.Partitions {
		if p.Unique == g {
			return p, true
		}
	}
	return GPTPartition{}, false
}

// ByNumber returns partition number n, or false.
func (t *GPT) ByNumber(n int) (GPTPartition, bool) {
	for _, p := range t.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return GPTPartition{}, false
}

// decodeUTF16LE decodes a GPT partition name: little-endian UTF-16 up to
// the first NUL code unit.
func decodeUTF16LE(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
