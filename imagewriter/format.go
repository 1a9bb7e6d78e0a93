package imagewriter

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/rivetmetal/rivet/imagewriter/qcow2"
)

// Format is an image format found from the image's magic bytes.
type Format string

// Formats Rivet writes. Gzip, zstd and xz are containers around a raw disk.
const (
	FormatRaw   Format = "raw"
	FormatQcow2 Format = "qcow2"
	FormatGzip  Format = "gzip"
	FormatZstd  Format = "zstd"
	FormatXz    Format = "xz"
)

// DefaultPermittedFormats is IPA's permitted_image_formats default.
var DefaultPermittedFormats = []string{"raw", "gpt", "qcow2"}

// sniffBytes is how much of the image DetectFormat looks at.
const sniffBytes = 64 << 10

// DetectFormat names the format of an image from its first bytes.
func DetectFormat(b []byte) Format {
	switch {
	case bytes.HasPrefix(b, []byte(qcow2.Magic)):
		return FormatQcow2
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return FormatGzip
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return FormatZstd
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return FormatXz
	}
	return FormatRaw
}

// compressed reports whether f is a compression container.
func (f Format) compressed() bool { return f == FormatGzip || f == FormatZstd || f == FormatXz }

// diskFormat is the disk format inside the container.
func (f Format) diskFormat() Format {
	if f.compressed() {
		return FormatRaw
	}
	return f
}

// hasGPT reports whether a raw disk's first bytes hold a GPT header.
func hasGPT(b []byte) bool {
	return len(b) >= 520 && string(b[512:520]) == "EFI PART" ||
		len(b) >= 4096+8 && string(b[4096:4104]) == "EFI PART"
}

// checkFormat compares the detected format with the declared disk_format
// and the permitted formats. head is the start of the disk (decoded).
func checkFormat(detected Format, declared string, permitted []string, head []byte) error {
	if permitted == nil {
		permitted = DefaultPermittedFormats
	}
	disk := detected.diskFormat()
	declared = strings.ToLower(strings.TrimSpace(declared))
	switch declared {
	case "":
	case "raw", "gpt":
		if disk != FormatRaw {
			return fmt.Errorf("%w: disk_format is %q but the image is %s; refusing it", ErrFormat, declared, disk)
		}
	case "qcow2":
		if disk != FormatQcow2 {
			what := string(detected)
			if detected.compressed() {
				what = "raw in " + what
			}
			return fmt.Errorf("%w: disk_format is qcow2 but the image is %s; refusing it", ErrFormat, what)
		}
	default:
		return fmt.Errorf("%w: disk_format %q is not supported (raw, gpt, qcow2, optionally gzip/zstd/xz-compressed raw)", ErrFormat, declared)
	}
	ok := slices.Contains(permitted, string(disk))
	if !ok && disk == FormatRaw && slices.Contains(permitted, "gpt") && hasGPT(head) {
		ok = true
	}
	if !ok {
		return fmt.Errorf("%w: image format %s is not in permitted_image_formats %v", ErrFormat, disk, permitted)
	}
	return nil
}
