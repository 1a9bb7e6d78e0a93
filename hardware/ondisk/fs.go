package ondisk

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Filesystem is what a filesystem's superblock says about itself.
type Filesystem struct {
	// Type is the mount(2) type: ext4, ext3, ext2, xfs, btrfs, vfat, swap,
	// iso9660.
	Type string
	// UUID is in blkid's form: 8-4-4-4-12 lowercase hex for ext, XFS,
	// Btrfs and swap; XXXX-XXXX uppercase for FAT; the creation time for
	// ISO 9660.
	UUID  string
	Label string
	// Version is blkid's VERSION where the type has variants the readers
	// care about: FAT12, FAT16 or FAT32 for vfat; empty otherwise.
	Version string
}

// Probe recognises the filesystem whose volume starts at off, natively
// (what blkid does for the few filesystems a deployed image uses): ext2/3/4,
// XFS, Btrfs, FAT (12/16/32), swap and ISO 9660. ok is false when none of
// them is there.
func Probe(r io.ReaderAt, off int64) (fs Filesystem, ok bool) {
	for _, p := range []func(io.ReaderAt, int64) (Filesystem, bool){probeExt, probeXFS, probeBtrfs, probeFAT, probeSwap, probeISO} {
		if fs, ok := p(r, off); ok {
			return fs, true
		}
	}
	return Filesystem{}, false
}

// read returns n bytes at off, or nil when they cannot all be read (past
// the end of the device, an I/O error): no signature is there.
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

func probeExt(r io.ReaderAt, off int64) (Filesystem, bool) {
	sb := read(r, off+1024, 256)
	if sb == nil || binary.LittleEndian.Uint16(sb[56:58]) != 0xEF53 {
		return Filesystem{}, false
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
	return Filesystem{Type: typ, UUID: uuidString(sb[104:120]), Label: cstr(sb[120:136])}, true
}

func probeXFS(r io.ReaderAt, off int64) (Filesystem, bool) {
	sb := read(r, off, 128)
	if sb == nil || string(sb[0:4]) != "XFSB" {
		return Filesystem{}, false
	}
	return Filesystem{Type: "xfs", UUID: uuidString(sb[32:48]), Label: cstr(sb[108:120])}, true
}

func probeBtrfs(r io.ReaderAt, off int64) (Filesystem, bool) {
	sb := read(r, off+65536, 560)
	if sb == nil || string(sb[64:72]) != "_BHRfS_M" {
		return Filesystem{}, false
	}
	return Filesystem{Type: "btrfs", UUID: uuidString(sb[32:48]), Label: cstr(sb[299:555])}, true
}

func probeFAT(r io.ReaderAt, off int64) (Filesystem, bool) {
	b := read(r, off, 512)
	if b == nil || b[510] != 0x55 || b[511] != 0xAA {
		return Filesystem{}, false
	}
	serial := func(o int) string {
		v := binary.LittleEndian.Uint32(b[o:])
		return fmt.Sprintf("%04X-%04X", v>>16, v&0xffff)
	}
	switch {
	case string(b[82:87]) == "FAT32" && b[66] == 0x29:
		return Filesystem{Type: "vfat", Version: "FAT32", UUID: serial(67), Label: fatLabel(b[71:82])}, true
	case strings.HasPrefix(string(b[54:62]), "FAT") && b[38] == 0x29:
		fs := Filesystem{Type: "vfat", UUID: serial(39), Label: fatLabel(b[43:54])}
		if v := string(b[54:59]); v == "FAT12" || v == "FAT16" {
			fs.Version = v
		}
		return fs, true
	}
	return Filesystem{}, false
}

func fatLabel(b []byte) string {
	l := cstr(b)
	if l == "NO NAME" {
		return ""
	}
	return l
}

func probeSwap(r io.ReaderAt, off int64) (Filesystem, bool) {
	for _, page := range []int64{4096, 8192, 16384, 65536} {
		m := read(r, off+page-10, 10)
		if m == nil || (string(m) != "SWAPSPACE2" && string(m) != "SWAP-SPACE") {
			continue
		}
		h := read(r, off+1024, 48)
		if h == nil {
			return Filesystem{Type: "swap"}, true
		}
		return Filesystem{Type: "swap", UUID: uuidString(h[12:28]), Label: cstr(h[28:44])}, true
	}
	return Filesystem{}, false
}

func probeISO(r io.ReaderAt, off int64) (Filesystem, bool) {
	pvd := read(r, off+16*2048, 2048)
	if pvd == nil || pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return Filesystem{}, false
	}
	// blkid's ISO "UUID" is the volume creation time, YYYY-MM-DD-hh-mm-ss-cc.
	t := string(pvd[813:829])
	uuid := ""
	if isDigits(t) && t != "0000000000000000" {
		uuid = t[0:4] + "-" + t[4:6] + "-" + t[6:8] + "-" + t[8:10] + "-" + t[10:12] + "-" + t[12:14] + "-" + t[14:16]
	}
	return Filesystem{Type: "iso9660", UUID: uuid, Label: cstr(pvd[40:72])}, true
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// SharedFilesystem recognises a shared-disk cluster filesystem on the
// volume at off by its superblock magic, and returns its name, "" when
// there is none: GFS2 (0x01161970 at 64 KiB), OCFS2 ("OCFSV2" at block 2,
// for 512 B–4 KiB blocks) and VMFS (0xC001D00D at 1 MiB). It is checked on
// its own, apart from Probe, so that a stale signature of another
// filesystem never hides one.
func SharedFilesystem(r io.ReaderAt, off int64) string {
	if b := read(r, off+65536, 4); b != nil && binary.BigEndian.Uint32(b) == 0x01161970 {
		return "GFS2"
	}
	for _, bs := range []int64{512, 1024, 2048, 4096} {
		if b := read(r, off+2*bs, 6); b != nil && string(b) == "OCFSV2" {
			return "OCFS2"
		}
	}
	if b := read(r, off+1<<20, 4); b != nil && binary.LittleEndian.Uint32(b) == 0xc001d00d {
		return "VMFS"
	}
	return ""
}
