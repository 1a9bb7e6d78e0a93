// Package qcow2 reads qcow2 images (qemu's docs/interop/qcow2.txt) for
// streaming them onto a disk without qemu-img and without a local copy:
// the header, L1 and L2 tables are parsed into a map of host extents, and
// Convert then reads the whole file once, in order, writing each data
// cluster at its guest offset. Images this package cannot write faithfully
// are refused: backing files, external data files, encryption, extended L2
// entries, unknown incompatible features.
package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic is the first four bytes of every qcow2 file.
const Magic = "QFI\xfb"

// Errors for images that are refused on purpose; each is wrapped with the
// detail.
var (
	// ErrInvalid: the file is not a well-formed qcow2 image.
	ErrInvalid = errors.New("invalid qcow2 image")
	// ErrUnsafe: the image needs a file other than itself (a backing file
	// or an external data file; the CVE-2024-44082 class).
	ErrUnsafe = errors.New("unsafe qcow2 image")
	// ErrUnsupported: a well-formed image using a feature this reader
	// does not implement (encryption, extended L2 entries, …).
	ErrUnsupported = errors.New("unsupported qcow2 image")
)

// Limits that keep a hostile header from making the reader allocate or
// loop without bound.
const (
	// MaxL1Bytes is qemu's own limit on the L1 table (32 MiB).
	MaxL1Bytes = 32 << 20
	// MaxVirtualSize is the largest virtual disk accepted (qemu: 2^61-ish;
	// 1 PiB here).
	MaxVirtualSize = 1 << 50
)

// Compression types of compressed clusters.
const (
	CompressionZlib = 0
	CompressionZstd = 1
)

// Incompatible feature bits.
const (
	incompatDirty        = 1 << 0
	incompatCorrupt      = 1 << 1
	incompatExternalData = 1 << 2
	incompatCompression  = 1 << 3
	incompatExtendedL2   = 1 << 4
	incompatKnown        = incompatDirty | incompatCorrupt | incompatExternalData | incompatCompression | incompatExtendedL2
)

// Header extension types.
const (
	extEnd          = 0x00000000
	extBackingFmt   = 0xe2792aca
	extFeatureNames = 0x6803f857
	extBitmaps      = 0x23852875
	extFDE          = 0x0537be77
	extDataFile     = 0x44415441
)

// Header is the parsed qcow2 header.
type Header struct {
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64 // virtual disk size in bytes
	CryptMethod           uint32
	L1Size                uint32 // entries
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	IncompatibleFeatures  uint64
	CompatibleFeatures    uint64
	AutoclearFeatures     uint64
	RefcountOrder         uint32
	HeaderLength          uint32
	CompressionType       uint8
	// BackingFormat and DataFile are the names found in header
	// extensions, if any (their presence refuses the image).
	BackingFormat string
	DataFile      string
}

// ClusterSize is the cluster size in bytes.
func (h *Header) ClusterSize() int64 { return 1 << h.ClusterBits }

// L2Entries is the number of entries in one L2 table.
func (h *Header) L2Entries() int64 { return h.ClusterSize() / 8 }

// MinHeaderBytes is how many bytes ParseHeader needs at least; the header
// extensions end within the first cluster, so callers pass up to that.
const MinHeaderBytes = 72

// ParseHeader parses and validates the header and its extensions from b,
// the start of the file (the first cluster, or as much of it as there is).
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < MinHeaderBytes {
		return nil, fmt.Errorf("%w: header needs %d bytes, have %d", ErrInvalid, MinHeaderBytes, len(b))
	}
	if string(b[:4]) != Magic {
		return nil, fmt.Errorf("%w: bad magic %x", ErrInvalid, b[:4])
	}
	be := binary.BigEndian
	h := &Header{
		Version:               be.Uint32(b[4:]),
		BackingFileOffset:     be.Uint64(b[8:]),
		BackingFileSize:       be.Uint32(b[16:]),
		ClusterBits:           be.Uint32(b[20:]),
		Size:                  be.Uint64(b[24:]),
		CryptMethod:           be.Uint32(b[32:]),
		L1Size:                be.Uint32(b[36:]),
		L1TableOffset:         be.Uint64(b[40:]),
		RefcountTableOffset:   be.Uint64(b[48:]),
		RefcountTableClusters: be.Uint32(b[56:]),
		NbSnapshots:           be.Uint32(b[60:]),
		SnapshotsOffset:       be.Uint64(b[64:]),
		RefcountOrder:         4,
		HeaderLength:          72,
	}
	switch h.Version {
	case 2:
	case 3:
		if len(b) < 104 {
			return nil, fmt.Errorf("%w: version 3 header needs 104 bytes, have %d", ErrInvalid, len(b))
		}
		h.IncompatibleFeatures = be.Uint64(b[72:])
		h.CompatibleFeatures = be.Uint64(b[80:])
		h.AutoclearFeatures = be.Uint64(b[88:])
		h.RefcountOrder = be.Uint32(b[96:])
		h.HeaderLength = be.Uint32(b[100:])
		if h.HeaderLength < 104 {
			return nil, fmt.Errorf("%w: header length %d < 104", ErrInvalid, h.HeaderLength)
		}
		if int64(h.HeaderLength) > int64(len(b)) {
			return nil, fmt.Errorf("%w: header length %d exceeds the %d bytes read", ErrInvalid, h.HeaderLength, len(b))
		}
		if h.HeaderLength > 104 {
			h.CompressionType = b[104]
		}
	default:
		return nil, fmt.Errorf("%w: version %d (only 2 and 3 exist)", ErrUnsupported, h.Version)
	}
	if h.ClusterBits < 9 || h.ClusterBits > 21 {
		return nil, fmt.Errorf("%w: cluster_bits %d out of 9..21", ErrInvalid, h.ClusterBits)
	}
	if h.BackingFileOffset != 0 || h.BackingFileSize != 0 {
		return nil, fmt.Errorf("%w: it has a backing file", ErrUnsafe)
	}
	if h.CryptMethod != 0 {
		return nil, fmt.Errorf("%w: encrypted (method %d)", ErrUnsupported, h.CryptMethod)
	}
	if f := h.IncompatibleFeatures; f != 0 {
		switch {
		case f&incompatExternalData != 0:
			return nil, fmt.Errorf("%w: it uses an external data file", ErrUnsafe)
		case f&incompatCorrupt != 0:
			return nil, fmt.Errorf("%w: marked corrupt", ErrInvalid)
		case f&incompatExtendedL2 != 0:
			return nil, fmt.Errorf("%w: extended L2 entries (subclusters)", ErrUnsupported)
		case f&^uint64(incompatKnown) != 0:
			return nil, fmt.Errorf("%w: unknown incompatible features %#x", ErrUnsupported, f&^uint64(incompatKnown))
		}
		if f&incompatCompression == 0 {
			h.CompressionType = CompressionZlib
		}
	}
	if h.IncompatibleFeatures&incompatCompression == 0 && h.CompressionType != CompressionZlib {
		return nil, fmt.Errorf("%w: compression type %d without its feature bit", ErrInvalid, h.CompressionType)
	}
	if h.CompressionType != CompressionZlib && h.CompressionType != CompressionZstd {
		return nil, fmt.Errorf("%w: compression type %d", ErrUnsupported, h.CompressionType)
	}
	if h.Size > MaxVirtualSize {
		return nil, fmt.Errorf("%w: virtual size %d over %d", ErrUnsupported, h.Size, uint64(MaxVirtualSize))
	}
	cs := uint64(h.ClusterSize())
	if uint64(h.L1Size)*8 > MaxL1Bytes {
		return nil, fmt.Errorf("%w: L1 table of %d entries over %d bytes", ErrInvalid, h.L1Size, MaxL1Bytes)
	}
	perL1 := cs * (cs / 8)
	need := (h.Size + perL1 - 1) / perL1
	if uint64(h.L1Size) < need {
		return nil, fmt.Errorf("%w: L1 table of %d entries cannot map %d bytes", ErrInvalid, h.L1Size, h.Size)
	}
	if h.L1Size > 0 && (h.L1TableOffset == 0 || h.L1TableOffset%cs != 0) {
		return nil, fmt.Errorf("%w: L1 table offset %#x is not cluster aligned", ErrInvalid, h.L1TableOffset)
	}
	if h.L1TableOffset > 1<<56 {
		return nil, fmt.Errorf("%w: L1 table offset %#x out of range", ErrInvalid, h.L1TableOffset)
	}
	if err := h.parseExtensions(b); err != nil {
		return nil, err
	}
	return h, nil
}

// parseExtensions walks the header extensions after HeaderLength, within
// b and within the first cluster.
func (h *Header) parseExtensions(b []byte) error {
	end := int64(len(b))
	if cs := h.ClusterSize(); end > cs {
		end = cs
	}
	off := int64(h.HeaderLength)
	off = (off + 7) &^ 7
	be := binary.BigEndian
	for off+8 <= end {
		typ := be.Uint32(b[off:])
		n := int64(be.Uint32(b[off+4:]))
		off += 8
		if typ == extEnd {
			return nil
		}
		if n > end-off {
			return fmt.Errorf("%w: header extension %#x of %d bytes runs past the first cluster", ErrInvalid, typ, n)
		}
		data := b[off : off+n]
		switch typ {
		case extBackingFmt:
			h.BackingFormat = string(data)
			return fmt.Errorf("%w: it names a backing file format %q", ErrUnsafe, h.BackingFormat)
		case extDataFile:
			h.DataFile = string(data)
			return fmt.Errorf("%w: it names an external data file %q", ErrUnsafe, h.DataFile)
		case extFDE:
			return fmt.Errorf("%w: full disk encryption header", ErrUnsupported)
		case extFeatureNames, extBitmaps:
		}
		off += (n + 7) &^ 7
	}
	// Running out of bytes before the end marker: the caller passed less
	// than the first cluster. What was seen is fine.
	return nil
}
