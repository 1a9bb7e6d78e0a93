// Package fsprobe recognises the filesystem at an offset of a disk from its
// superblock, natively (what blkid does for the few filesystems a deployed
// image uses): ext2/3/4, XFS, Btrfs, FAT (12/16/32), swap and ISO 9660.
// It returns the type, as mount(2) names it, the filesystem UUID in the
// form blkid prints, and the label.
package fsprobe

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Info describes a recognised filesystem.
type Info struct {
	// Type is the mount(2) type: ext4, ext3, ext2, xfs, btrfs, vfat, swap,
	// iso9660.
	Type string
	// UUID is in blkid's form: 8-4-4-4-12 lowercase hex for ext, XFS,
	// Btrfs and swap; XXXX-XXXX uppercase for FAT; the creation time for
	// ISO 9660.
	UUID  string
	Label string
}

// Probe reads the superblocks at off and returns what it found; ok is
// false when no known filesystem is there.
func Probe(r io.ReaderAt, off int64) (Info, bool) {
	for _, p := range []func(io.ReaderAt, int64) (Info, bool){probeExt, probeXFS, probeBtrfs, probeFAT, probeSwap, probeISO} {
		if i, ok := p(r, off); ok {
			return i, true
		}
	}
	return Info{}, false
}

func read(r io.ReaderAt, off int64, n int) []byte {
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil
	}
	return b
}

func uuidString(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}

func probeExt(r io.ReaderAt, off int64) (Info, bool) {
	sb := read(r, off+1024, 256)
	if sb == nil || binary.LittleEndian.Uint16(sb[56:58]) != 0xEF53 {
		return Info{}, false
	}
	compat := binary.LittleEndian.Uint32(sb[92:96])
	incompat := binary.LittleEndian.Uint32(sb[96:100])
	roCompat := binary.LittleEndian.Uint32(sb[100:104])
	typ := "ext2"
	switch {
	case incompat&0x2c0 != 0 || roCompat&0x78 != 0: // extents, 64bit, flex_bg / huge_file, gdt_csum, dir_nlink, extra_isize
		typ = "ext4"
	case compat&0x4 != 0: // has_journal
		typ = "ext3"
	}
	return Info{Type: typ, UUID: uuidString(sb[104:120]), Label: cstr(sb[120:136])}, true
}

func probeXFS(r io.ReaderAt, off int64) (Info, bool) {
	sb := read(r, off, 128)
	if sb == nil || string(sb[0:4]) != "XFSB" {
		return Info{}, false
	}
	return Info{Type: "xfs", UUID: uuidString(sb[32:48]), Label: cstr(sb[108:120])}, true
}

func probeBtrfs(r io.ReaderAt, off int64) (Info, bool) {
	sb := read(r, off+65536, 560)
	if sb == nil || string(sb[64:72]) != "_BHRfS_M" {
		return Info{}, false
	}
	return Info{Type: "btrfs", UUID: uuidString(sb[32:48]), Label: cstr(sb[299:555])}, true
}

func probeFAT(r io.ReaderAt, off int64) (Info, bool) {
	b := read(r, off, 512)
	if b == nil || b[510] != 0x55 || b[511] != 0xAA {
		return Info{}, false
	}
	serial := func(o int) string {
		v := binary.LittleEndian.Uint32(b[o:])
		return fmt.Sprintf("%04X-%04X", v>>16, v&0xffff)
	}
	switch {
	case string(b[82:87]) == "FAT32" && b[66] == 0x29:
		return Info{Type: "vfat", UUID: serial(67), Label: fatLabel(b[71:82])}, true
	case strings.HasPrefix(string(b[54:62]), "FAT") && b[38] == 0x29:
		return Info{Type: "vfat", UUID: serial(39), Label: fatLabel(b[43:54])}, true
	}
	return Info{}, false
}

func fatLabel(b []byte) string {
	l := cstr(b)
	if l == "NO NAME" {
		return ""
	}
	return l
}

func probeSwap(r io.ReaderAt, off int64) (Info, bool) {
	for _, page := range []int64{4096, 8192, 16384, 65536} {
		m := read(r, off+page-10, 10)
		if m == nil || (string(m) != "SWAPSPACE2" && string(m) != "SWAP-SPACE") {
			continue
		}
		h := read(r, off+1024, 48)
		if h == nil {
			return Info{Type: "swap"}, true
		}
		return Info{Type: "swap", UUID: uuidString(h[12:28]), Label: cstr(h[28:44])}, true
	}
	return Info{}, false
}

func probeISO(r io.ReaderAt, off int64) (Info, bool) {
	pvd := read(r, off+16*2048, 2048)
	if pvd == nil || pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return Info{}, false
	}
	// blkid's ISO "UUID" is the volume creation time, YYYY-MM-DD-hh-mm-ss-cc.
	t := string(pvd[813:829])
	uuid := ""
	if len(t) == 16 && t != "0000000000000000" {
		uuid = t[0:4] + "-" + t[4:6] + "-" + t[6:8] + "-" + t[8:10] + "-" + t[10:12] + "-" + t[12:14] + "-" + t[14:16]
	}
	return Info{Type: "iso9660", UUID: uuid, Label: cstr(pvd[40:72])}, true
}
