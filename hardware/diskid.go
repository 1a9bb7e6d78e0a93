package hardware

import (
	"encoding/binary"
	"fmt"
	"os"
)

// DiskIdentifier returns the MBR disk signature of a disk as IPA reports it
// for whole-disk images ("0x" and eight hex digits, bytes 440–443 of the
// first sector, little-endian).
func DiskIdentifier(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read disk identifier: %w", err)
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], 440); err != nil {
		return "", fmt.Errorf("read disk identifier of %s: %w", path, err)
	}
	return fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(b[:])), nil
}
