package imagewriter

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"
)

// fsInfo is what a filesystem's superblock says about itself.
type fsInfo struct {
	Type  string // "ext4", "xfs", "btrfs", "vfat", "iso9660", "swap", or ""
	UUID  string
	Label string
}

// probeFS reads the filesystem signature of the volume at off, natively
// (blkid's job): ext2/3/4, XFS, Btrfs, FAT, ISO 9660 and swap.
func probeFS(r io.ReaderAt, off int64) fsInfo {
	b := make([]byte, 68<<10)
	n, _ := r.ReadAt(b, off)
	b = b[:n]
	le := binary.LittleEndian
	at := func(o, l int) []byte {
		if o+l > len(b) {
			return nil
		}
		return b[o : o+l]
	}
	uuidAt := func(o int) string {
		u, err := uuid.FromBytes(at(o, 16))
		if err != nil {
			return ""
		}
		return u.String()
	}
	str := func(p []byte) string { return strings.TrimRight(string(p), " \x00") }
	switch {
	case len(at(1024+56, 2)) == 2 && le.Uint16(at(1024+56, 2)) == 0xef53:
		return fsInfo{Type: "ext4", UUID: uuidAt(1024 + 104), Label: str(at(1024+120, 16))}
	case string(at(0, 4)) == "XFSB":
		return fsInfo{Type: "xfs", UUID: uuidAt(32), Label: str(at(108, 12))}
	case string(at(65536+64, 8)) == "_BHRfS_M":
		return fsInfo{Type: "btrfs", UUID: uuidAt(65536 + 32), Label: str(at(65536+299, 256))}
	case string(at(32769, 5)) == "CD001":
		return fsInfo{Type: "iso9660", Label: str(at(32768+40, 32))}
	case string(at(4096-10, 10)) == "SWAPSPACE2":
		return fsInfo{Type: "swap", UUID: uuidAt(1036), Label: str(at(1052, 16))}
	case string(at(82, 8)) == "FAT32   ":
		s := le.Uint32(at(67, 4))
		return fsInfo{Type: "vfat", UUID: fmt.Sprintf("%04X-%04X", s>>16, s&0xffff), Label: str(at(71, 11))}
	case strings.HasPrefix(string(at(54, 8)), "FAT1"):
		s := le.Uint32(at(39, 4))
		return fsInfo{Type: "vfat", UUID: fmt.Sprintf("%04X-%04X", s>>16, s&0xffff), Label: str(at(43, 11))}
	}
	return fsInfo{}
}
