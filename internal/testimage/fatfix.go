package testimage

import (
	"encoding/binary"
	"fmt"
	"io"
)

// fixRootDotDot repairs a go-diskfs (v1.9.4) fat32 quirk: the ".." entry of
// a directory directly under the root points at the root directory's
// cluster, where the FAT specification (and fsck.fat) wants cluster 0.
// f is the whole disk and off the byte offset of the FAT32 filesystem.
func fixRootDotDot(f io.ReaderAt, w io.WriterAt, off int64) error {
	var bs [512]byte
	if _, err := f.ReadAt(bs[:], off); err != nil {
		return fmt.Errorf("read FAT32 boot sector: %w", err)
	}
	bytesPerSector := int64(binary.LittleEndian.Uint16(bs[11:]))
	sectorsPerCluster := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
	fats := int64(bs[16])
	fatSectors := int64(binary.LittleEndian.Uint32(bs[36:]))
	rootCluster := binary.LittleEndian.Uint32(bs[44:])
	if bytesPerSector == 0 || sectorsPerCluster == 0 || string(bs[82:87]) != "FAT32" {
		return fmt.Errorf("no FAT32 boot sector at offset %d", off)
	}
	clusterBytes := bytesPerSector * sectorsPerCluster
	fatOff := off + reserved*bytesPerSector
	dataOff := fatOff + fats*fatSectors*bytesPerSector
	clusterOff := func(c uint32) int64 { return dataOff + int64(c-2)*clusterBytes }

	// Walk the root directory's cluster chain.
	for c, n := rootCluster, 0; c >= 2 && c < 0x0ffffff8; n++ {
		if n > 1<<16 {
			return fmt.Errorf("root directory cluster chain loops")
		}
		dir := make([]byte, clusterBytes)
		if _, err := f.ReadAt(dir, clusterOff(c)); err != nil {
			return fmt.Errorf("read root directory: %w", err)
		}
		for e := 0; e+32 <= len(dir); e += 32 {
			ent := dir[e : e+32]
			if ent[0] == 0 {
				return nil // end of directory
			}
			const attrSubdir, attrLFN = 0x10, 0x0f
			if ent[0] == 0xe5 || ent[11]&attrLFN == attrLFN || ent[11]&attrSubdir == 0 || ent[0] == '.' {
				continue
			}
			sub := uint32(binary.LittleEndian.Uint16(ent[20:]))<<16 | uint32(binary.LittleEndian.Uint16(ent[26:]))
			var dotdot [32]byte
			at := clusterOff(sub) + 32
			if _, err := f.ReadAt(dotdot[:], at); err != nil {
				return fmt.Errorf("read '..' of %q: %w", ent[:11], err)
			}
			if string(dotdot[:11]) != "..         " {
				continue
			}
			binary.LittleEndian.PutUint16(dotdot[20:], 0)
			binary.LittleEndian.PutUint16(dotdot[26:], 0)
			if _, err := w.WriteAt(dotdot[:], at); err != nil {
				return fmt.Errorf("write '..' of %q: %w", ent[:11], err)
			}
		}
		var next [4]byte
		if _, err := f.ReadAt(next[:], fatOff+int64(c)*4); err != nil {
			return fmt.Errorf("read FAT: %w", err)
		}
		c = binary.LittleEndian.Uint32(next[:]) & 0x0fffffff
	}
	return nil
}
