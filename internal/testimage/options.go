package testimage

import (
	"fmt"
	"log/slog"
	"regexp"
)

// DefaultInitPackage is the Go package built as the image's /init.
const DefaultInitPackage = "github.com/rivetmetal/rivet/internal/testimage/testinit"

// DefaultID is the image id when Options.ID is empty.
const DefaultID = "rivet-testimage"

// DefaultSize is the image size when Options.Size is zero.
const DefaultSize = 48 << 20

// MaxSize bounds Options.Size so that a deploy stays quick.
const MaxSize = 128 << 20

// MarkerPrefix starts the console line the booted image prints; the id and
// the firmware follow (see MarkerPattern).
const MarkerPrefix = "RIVET-TESTIMAGE-BOOTED"

// MarkerPattern matches the marker line; submatch 1 is the id, 2 the
// firmware ("uefi", "bios", or "unknown" where the image could not tell).
// Both are matched by what they may hold, not up to the next space: on a
// serial console a kernel message can land right after the marker, before
// its newline ("firmware=uefi[    2.131992] tsc: …").
var MarkerPattern = regexp.MustCompile(MarkerPrefix + ` id=(` + idChars + `) firmware=(uefi|bios|unknown)`)

// idChars is what an image id may hold.
const idChars = `[A-Za-z0-9._-]{1,64}`

var idPattern = regexp.MustCompile(`^` + idChars + `$`)

// Options describe the image. Kernel and Output are required; every other
// field works with its zero value.
type Options struct {
	// Kernel is the kernel copied to /vmlinuz on the ESP (it needs
	// CONFIG_EFI_STUB, SERIAL_8250_CONSOLE and gzip initramfs support,
	// as Debian's do). Required.
	Kernel string

	// Output is the path of the raw image. Required.
	Output string

	// ID names the image in its marker line, 1-64 characters from
	// [A-Za-z0-9._-]. Zero: DefaultID.
	ID string

	// Size of the image in bytes, a multiple of 1 MiB, at most MaxSize.
	// Zero: DefaultSize.
	Size int64

	// InitPackage is the Go package built as /init. Zero:
	// DefaultInitPackage.
	InitPackage string

	// ModuleDir is the Go module directory where InitPackage is built.
	// Zero: the current working directory.
	ModuleDir string

	// GrubMkstandalone is the grub-mkstandalone program (Debian
	// grub-common with grub-efi-amd64-bin). Zero: found on PATH.
	GrubMkstandalone string

	// Logger receives progress. Zero: slog.Default().
	Logger *slog.Logger
}

// Result describes a built image.
type Result struct {
	// Path is the image file (Options.Output).
	Path string
	// ID is the image id in its marker line.
	ID string
	// SHA256 is the hex SHA-256 of the whole image file.
	SHA256 string
	// Size is the image size in bytes.
	Size int64
	// DiskSignature is the protective MBR's disk signature.
	DiskSignature uint32
}

func (o Options) withDefaults() (Options, error) {
	if o.Kernel == "" {
		return o, fmt.Errorf("testimage: no kernel given")
	}
	if o.Output == "" {
		return o, fmt.Errorf("testimage: no output path given")
	}
	if o.ID == "" {
		o.ID = DefaultID
	}
	if !idPattern.MatchString(o.ID) {
		return o, fmt.Errorf("testimage: image id %q: want 1-64 characters from [A-Za-z0-9._-]", o.ID)
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Size%(1<<20) != 0 || o.Size > MaxSize || o.Size < 40<<20 {
		return o, fmt.Errorf("testimage: size %d: want a multiple of 1 MiB from 40 MiB to %d", o.Size, MaxSize)
	}
	if o.InitPackage == "" {
		o.InitPackage = DefaultInitPackage
	}
	if o.GrubMkstandalone == "" {
		o.GrubMkstandalone = "grub-mkstandalone"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
