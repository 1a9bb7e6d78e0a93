package ondisk

import "io"

// TableKind names the partition table a disk carries.
type TableKind string

// Partition table kinds, with the names parted gives them.
const (
	NoTable  TableKind = ""
	GPTTable TableKind = "gpt"
	MBRTable TableKind = "msdos"
)

// DetectTable says which partition table a disk carries, from the
// signatures alone: GPT when the primary header's signature is at LBA 1,
// msdos when the first sector has the boot signature and at least one used
// entry. It does not check CRCs; ReadGPT and ReadMBR do when the table is
// read.
func DetectTable(r io.ReaderAt, sectorSize int) TableKind {
	sig := make([]byte, len(gptSignature))
	if _, err := r.ReadAt(sig, int64(sectorSize)); err == nil && string(sig) == gptSignature {
		return GPTTable
	}
	if m, err := ReadMBR(r); err == nil && m.HasPartitions() {
		return MBRTable
	}
	return NoTable
}

// PartUUID returns the PARTUUID of partition number n of a disk of size
// bytes: its GPT unique GUID in lower case, or on an msdos disk the disk
// signature and the number ("1a2b3c4d-02"). It returns "" when the disk has
// neither table, or its GPT has no partition n.
func PartUUID(r io.ReaderAt, size int64, sectorSize int, n int) string {
	if t, err := ReadGPT(r, size, sectorSize); err == nil {
		if p, ok := t.ByNumber(n); ok {
			return p.PartUUID()
		}
		return ""
	}
	if m, err := ReadMBR(r); err == nil && m.Valid {
		return m.PartUUID(n)
	}
	return ""
}
