package ondisk

import (
	"encoding/binary"
	"fmt"
	"io"
)

// MBR partition types the agent looks for.
const (
	// MBRTypeGPTProtective marks a protective MBR in front of a GPT.
	MBRTypeGPTProtective = 0xEE
	// MBRTypeEFISystem is an EFI system partition on an msdos disk.
	MBRTypeEFISystem = 0xEF
	// MBRTypeVMFS is a VMware VMFS datastore partition.
	MBRTypeVMFS = 0xFB
)

// MBR is the master boot record of a disk: the legacy partition table in
// its first sector.
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

// Used reports whether the entry describes a partition.
func (p MBRPartition) Used() bool { return p.Type != 0 && p.Sectors != 0 }

// ReadMBR reads the first sector's partition table.
func ReadMBR(r io.ReaderAt) (MBR, error) {
	var b [512]byte
	var m MBR
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return m, fmt.Errorf("ondisk: read MBR: %w", err)
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

// IsProtective reports whether the MBR only protects a GPT (an 0xEE entry).
func (m MBR) IsProtective() bool {
	if !m.Valid {
		return false
	}
	for _, p := range m.Partitions {
		if p.Type == MBRTypeGPTProtective {
			return true
		}
	}
	return false
}

// HasPartitions reports whether the MBR is valid and describes at least
// one partition.
func (m MBR) HasPartitions() bool {
	if !m.Valid {
		return false
	}
	for _, p := range m.Partitions {
		if p.Used() {
			return true
		}
	}
	return false
}

// DiskIdentifier is the disk signature as IPA and Ironic write a whole-disk
// image's "root UUID": "0x" and eight lower-case hex digits.
func (m MBR) DiskIdentifier() string { return fmt.Sprintf("0x%08x", m.Signature) }

// PartUUID is the PARTUUID the kernel gives partition n of an msdos disk:
// the disk signature and the number ("1a2b3c4d-02").
func (m MBR) PartUUID(n int) string { return fmt.Sprintf("%08x-%02d", m.Signature, n) }

// DiskIdentifier reads the MBR disk signature of a disk (bytes 440–443 of
// its first sector) in IPA's form, "0x" and eight hex digits, whatever the
// rest of the sector holds.
func DiskIdentifier(r io.ReaderAt) (string, error) {
	var b [4]byte
	if _, err := r.ReadAt(b[:], 440); err != nil {
		return "", fmt.Errorf("ondisk: read disk identifier: %w", err)
	}
	return MBR{Signature: binary.LittleEndian.Uint32(b[:])}.DiskIdentifier(), nil
}
