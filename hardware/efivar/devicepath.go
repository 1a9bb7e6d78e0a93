package efivar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/rivetmetal/rivet/hardware/internal/ucs2"
	"strings"
	"unicode/utf16"
)

// Device path node types and subtypes used here (UEFI spec §10.3).
const (
	typeHardware  = 0x01
	typeACPI      = 0x02
	typeMessaging = 0x03
	typeMedia     = 0x04
	typeEnd       = 0x7f

	subHardDrive = 0x01
	subFilePath  = 0x04
	subPCI       = 0x01
	subACPI      = 0x01
	subMAC       = 0x0b
	subIPv4      = 0x0c
	subEndEntire = 0xff
)

// DevicePath is an encoded device path: a sequence of nodes ending with an
// End node.
type DevicePath []byte

// Node is one decoded device path node.
type Node struct {
	Type, SubType byte
	Data          []byte
}

// HardDrive builds the media node of a GPT partition: its number, first
// LBA, length in LBAs and unique GUID (in on-disk byte order).
func HardDrive(partNum uint32, startLBA, sizeLBA uint64, partGUID [16]byte) []byte {
	b := make([]byte, 42)
	b[0], b[1] = typeMedia, subHardDrive
	binary.LittleEndian.PutUint16(b[2:], 42)
	binary.LittleEndian.PutUint32(b[4:], partNum)
	binary.LittleEndian.PutUint64(b[8:], startLBA)
	binary.LittleEndian.PutUint64(b[16:], sizeLBA)
	copy(b[24:40], partGUID[:])
	b[40] = 0x02 // partition format: GPT
	b[41] = 0x02 // signature type: GUID
	return b
}

// HardDriveMBR builds the media node of an MBR partition: its number,
// first LBA, length in LBAs and the disk's 32-bit MBR signature.
func HardDriveMBR(partNum uint32, startLBA, sizeLBA uint64, diskSignature uint32) []byte {
	b := make([]byte, 42)
	b[0], b[1] = typeMedia, subHardDrive
	binary.LittleEndian.PutUint16(b[2:], 42)
	binary.LittleEndian.PutUint32(b[4:], partNum)
	binary.LittleEndian.PutUint64(b[8:], startLBA)
	binary.LittleEndian.PutUint64(b[16:], sizeLBA)
	binary.LittleEndian.PutUint32(b[24:], diskSignature)
	b[40] = 0x01 // partition format: MBR
	b[41] = 0x01 // signature type: 32-bit MBR signature
	return b
}

// FilePath builds a media file-path node; path uses backslashes
// (\EFI\BOOT\BOOTX64.EFI); forward slashes are converted.
func FilePath(path string) []byte {
	path = strings.ReplaceAll(path, "/", `\`)
	if !strings.HasPrefix(path, `\`) {
		path = `\` + path
	}
	u := utf16.Encode([]rune(path))
	n := 4 + 2*(len(u)+1)
	b := make([]byte, n)
	b[0], b[1] = typeMedia, subFilePath
	binary.LittleEndian.PutUint16(b[2:], uint16(n))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[4+2*i:], c)
	}
	return b
}

// End is the end-of-entire-path node.
func End() []byte { return []byte{typeEnd, subEndEntire, 4, 0} }

// NewDevicePath concatenates nodes and appends the End node.
func NewDevicePath(nodes ...[]byte) DevicePath {
	var p []byte
	for _, n := range nodes {
		p = append(p, n...)
	}
	return append(p, End()...)
}

// Nodes decodes the path up to its first End node.
func (p DevicePath) Nodes() ([]Node, error) {
	var out []Node
	for rest := []byte(p); ; {
		if len(rest) < 4 {
			return out, errors.New("efivar: device path truncated")
		}
		n := int(binary.LittleEndian.Uint16(rest[2:4]))
		if n < 4 || n > len(rest) {
			return out, fmt.Errorf("efivar: device path node length %d out of range", n)
		}
		if rest[0] == typeEnd && rest[1] == subEndEntire {
			return out, nil
		}
		out = append(out, Node{Type: rest[0], SubType: rest[1], Data: rest[4:n]})
		rest = rest[n:]
	}
}

// String renders the path the way efibootmgr -v does, e.g.
// HD(1,GPT,0b9e6b3c-…,0x800,0x100000)/File(\EFI\BOOT\BOOTX64.EFI).
func (p DevicePath) String() string {
	nodes, err := p.Nodes()
	parts := make([]string, 0, len(nodes)+1)
	for _, n := range nodes {
		parts = append(parts, n.String())
	}
	if err != nil {
		parts = append(parts, "<invalid>")
	}
	return strings.Join(parts, "/")
}

// String renders one node.
func (n Node) String() string {
	d := n.Data
	le := binary.LittleEndian
	switch {
	case n.Type == typeMedia && n.SubType == subHardDrive && len(d) >= 38:
		var g [16]byte
		copy(g[:], d[20:36])
		switch d[37] {
		case 0x02:
			return fmt.Sprintf("HD(%d,GPT,%s,%#x,%#x)", le.Uint32(d[0:]), guidString(g), le.Uint64(d[4:]), le.Uint64(d[12:]))
		default:
			return fmt.Sprintf("HD(%d,MBR,%#08x,%#x,%#x)", le.Uint32(d[0:]), le.Uint32(d[20:]), le.Uint64(d[4:]), le.Uint64(d[12:]))
		}
	case n.Type == typeMedia && n.SubType == subFilePath:
		return "File(" + ucs2.Decode(d) + ")"
	case n.Type == typeACPI && n.SubType == subACPI && len(d) >= 8 && le.Uint32(d[0:]) == 0x0a0341d0:
		return fmt.Sprintf("PciRoot(%#x)", le.Uint32(d[4:]))
	case n.Type == typeHardware && n.SubType == subPCI && len(d) >= 2:
		return fmt.Sprintf("Pci(%#x,%#x)", d[1], d[0])
	case n.Type == typeMessaging && n.SubType == subMAC && len(d) >= 33:
		return fmt.Sprintf("MAC(%x,%d)", d[0:6], d[32])
	case n.Type == typeMessaging && n.SubType == subIPv4:
		return "IPv4(...)"
	}
	return fmt.Sprintf("Path(%d,%d,%x)", n.Type, n.SubType, d)
}

// HardDriveGUID returns the partition GUID of the path's first GPT
// hard-drive node, or false.
func (p DevicePath) HardDriveGUID() ([16]byte, bool) {
	var g [16]byte
	nodes, _ := p.Nodes()
	for _, n := range nodes {
		if n.Type == typeMedia && n.SubType == subHardDrive && len(n.Data) >= 38 && n.Data[37] == 0x02 {
			copy(g[:], n.Data[20:36])
			return g, true
		}
	}
	return g, false
}

func guidString(g [16]byte) string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15])
}
