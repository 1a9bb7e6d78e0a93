package bootloader

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/efivar"
	"github.com/rivetmetal/rivet/hardware/ondisk"
)

// esp locates an EFI system partition on the disk.
type esp struct {
	number   int
	startLBA uint64
	sizeLBA  uint64
	// node is the device path node that names the partition.
	node []byte
	// offset and size are in bytes.
	offset, size int64
}

// loader is one boot entry to write.
type loader struct {
	label string
	// path is the loader's path on the ESP, \EFI\…\x.efi.
	path string
}

// knownLoaders are the loader names IPA registers when no shim CSV is
// found (bootia32.csv is deliberately absent).
var knownLoaders = []string{
	"bootx64.csv", "boot.csv",
	"bootia32.efi", "bootx64.efi", "bootia64.efi", "bootarm.efi", "bootaa64.efi",
	"bootriscv32.efi", "bootriscv64.efi", "bootriscv128.efi", "grubaa64.efi", "winload.efi",
}

func (in *Installer) devPath(name string) string {
	root := in.DevRoot
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, "dev", name)
}

// findESP finds the ESP: the GPT partition of the ESP type, else (GPT or
// MBR) the partition whose PARTUUID or filesystem UUID is efiUUID.
func findESP(f *os.File, d hardware.BlockDevice, efiUUID string) (esp, error) {
	ss := d.LogicalSectorSize
	if ss == 0 {
		ss = 512
	}
	mk := func(num int, start, size uint64, node []byte) esp {
		return esp{number: num, startLBA: start, sizeLBA: size, node: node, offset: int64(start) * int64(ss), size: int64(size) * int64(ss)}
	}
	if t, err := ondisk.ReadGPT(f, d.Size, ss); err == nil {
		if p, ok := t.Find(ondisk.TypeEFISystem); ok {
			return mk(p.Number, p.FirstLBA, p.Sectors(), efivar.HardDrive(uint32(p.Number), p.FirstLBA, p.Sectors(), p.Unique)), nil
		}
		if efiUUID != "" {
			for _, p := range t.Partitions {
				if strings.EqualFold(p.PartUUID(), efiUUID) || fsUUIDIs(f, int64(p.FirstLBA)*int64(ss), efiUUID) {
					return mk(p.Number, p.FirstLBA, p.Sectors(), efivar.HardDrive(uint32(p.Number), p.FirstLBA, p.Sectors(), p.Unique)), nil
				}
			}
		}
		return esp{}, fmt.Errorf("%w on %s (GPT) and none with UUID %q", ErrNoESP, d.Path, efiUUID)
	}
	m, err := ondisk.ReadMBR(f)
	if err != nil || !m.Valid {
		return esp{}, fmt.Errorf("%w: %s has no partition table", ErrNoESP, d.Path)
	}
	for i, p := range m.Partitions {
		if p.Type == 0 {
			continue
		}
		if p.Type == ondisk.MBRTypeEFISystem || (efiUUID != "" && (strings.EqualFold(m.PartUUID(i+1), efiUUID) || fsUUIDIs(f, int64(p.StartLBA)*int64(ss), efiUUID))) {
			return mk(i+1, uint64(p.StartLBA), uint64(p.Sectors),
				efivar.HardDriveMBR(uint32(i+1), uint64(p.StartLBA), uint64(p.Sectors), m.Signature)), nil
		}
	}
	return esp{}, fmt.Errorf("%w on %s (MBR) and none with UUID %q", ErrNoESP, d.Path, efiUUID)
}

func fsUUIDIs(f *os.File, off int64, want string) bool {
	fs, ok := ondisk.Probe(f, off)
	return ok && strings.EqualFold(fs.UUID, want)
}

// fatFS is the read side of go-diskfs's FAT filesystems.
type fatFS interface {
	ReadDir(p string) ([]iofs.DirEntry, error)
	ReadFile(name string) ([]byte, error)
}

// openFAT reads the FAT filesystem of the ESP without mounting it.
func openFAT(f *os.File, e esp) (fatFS, error) {
	fs, ok := ondisk.Probe(f, e.offset)
	if !ok || fs.Type != "vfat" {
		return nil, fmt.Errorf("not a FAT filesystem (found %q)", fs.Type)
	}
	b := file.New(f, true)
	switch fs.Version {
	case "FAT32":
		return fat32.Read(b, e.size, e.offset, 512)
	case "FAT16":
		return fat16.Read(b, e.size, e.offset, 512)
	case "FAT12":
		return fat12.Read(b, e.size, e.offset, 512)
	}
	return nil, errors.New("a FAT filesystem that names neither FAT12, FAT16 nor FAT32")
}

// findLoaders walks the ESP the way IPA does: top-down; the first shim
// CSV found names the one loader and its label; otherwise every known
// loader file, labelled ironic1, ironic2, … in walk order.
func findLoaders(fs fatFS) ([]loader, error) {
	var efis []string
	var csv string
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		if depth > 8 || csv != "" {
			return nil
		}
		ents, err := fs.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("read %s on the ESP: %w", dir, err)
		}
		var dirs []string
		for _, e := range ents {
			name := e.Name()
			if name == "." || name == ".." {
				continue
			}
			p := path.Join(dir, name)
			if e.IsDir() {
				dirs = append(dirs, p)
				continue
			}
			lower := strings.ToLower(name)
			if !contains(knownLoaders, lower) {
				continue
			}
			if strings.HasSuffix(lower, ".csv") {
				csv = p
				return nil
			}
			efis = append(efis, p)
		}
		for _, d := range dirs {
			if err := walk(d, depth+1); err != nil {
				return err
			}
			if csv != "" {
				return nil
			}
		}
		return nil
	}
	if err := walk(".", 0); err != nil {
		return nil, err
	}
	if csv != "" {
		b, err := fs.ReadFile(csv)
		if err != nil {
			return nil, fmt.Errorf("read %s on the ESP: %w", csv, err)
		}
		file, label, err := parseShimCSV(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", csv, err)
		}
		return []loader{{label: label, path: efiPath(path.Join(path.Dir(csv), file))}}, nil
	}
	out := make([]loader, len(efis))
	for i, p := range efis {
		out[i] = loader{label: fmt.Sprintf("ironic%d", i+1), path: efiPath(p)}
	}
	return out, nil
}

// parseShimCSV reads a shim BOOT*.CSV: UTF-16 (usually with a byte-order
// mark), "loader,label,options,description" on its first line.
func parseShimCSV(b []byte) (string, string, error) {
	var text string
	switch {
	case len(b) >= 2 && b[0] == 0xff && b[1] == 0xfe:
		text = decodeUTF16(b[2:], binary.LittleEndian)
	case len(b) >= 2 && b[0] == 0xfe && b[1] == 0xff:
		text = decodeUTF16(b[2:], binary.BigEndian)
	default:
		text = decodeUTF16(b, binary.LittleEndian)
	}
	line, _, _ := strings.Cut(strings.TrimLeft(text, "\ufeff"), "\n")
	fields := strings.SplitN(strings.TrimRight(line, "\r"), ",", 4)
	if len(fields) < 2 || strings.TrimSpace(fields[0]) == "" || strings.TrimSpace(fields[1]) == "" {
		return "", "", fmt.Errorf("not a shim boot CSV (want loader,label,…): %q", line)
	}
	return strings.TrimSpace(fields[0]), strings.TrimSpace(fields[1]), nil
}

func decodeUTF16(b []byte, order binary.ByteOrder) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u = append(u, order.Uint16(b[i:]))
	}
	return string(utf16.Decode(u))
}

// efiPath turns an ESP path (io/fs form, "EFI/BOOT/BOOTX64.EFI") into the
// loader path of a boot entry (\EFI\BOOT\BOOTX64.EFI).
func efiPath(p string) string { return `\` + strings.ReplaceAll(strings.TrimPrefix(p, "/"), "/", `\`) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// registerUEFI writes a boot entry per loader found on the ESP and returns
// what it wrote; an empty ESP writes nothing.
func (in *Installer) registerUEFI(ctx context.Context, req Request) ([]string, error) {
	f, err := os.Open(in.devPath(req.Disk.Name))
	if err != nil {
		return nil, fmt.Errorf("uefi boot setup on %s: %w", req.Disk.Path, err)
	}
	defer f.Close()
	e, err := findESP(f, req.Disk, req.EFISystemPartUUID)
	if err != nil {
		return nil, fmt.Errorf("%w. Are you using a UEFI-compatible image?", err)
	}
	fs, err := openFAT(f, e)
	if err != nil {
		return nil, fmt.Errorf("uefi boot setup on %s: EFI system partition %d: %w", req.Disk.Path, e.number, err)
	}
	loaders, err := findLoaders(fs)
	if err != nil {
		return nil, fmt.Errorf("uefi boot setup on %s: %w", req.Disk.Path, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var written []string
	for _, l := range loaders {
		if err := in.replaceEntry(l, e); err != nil {
			return written, fmt.Errorf("uefi boot setup on %s: %w", req.Disk.Path, err)
		}
		written = append(written, l.label+" → "+l.path)
	}
	return written, nil
}

// replaceEntry deletes boot entries labelled like l, then adds l first in
// BootOrder (efibootmgr -c -L label -l path).
func (in *Installer) replaceEntry(l loader, e esp) error {
	entries, err := in.EFI.BootEntries()
	if err != nil {
		return err
	}
	for _, old := range entries {
		if old.Description == l.label {
			if err := in.EFI.RemoveBootEntry(old.Num); err != nil {
				return err
			}
			in.log().Info("removed UEFI boot entry with the same label", "entry", old.Name(), "label", l.label, "path", old.FilePath.String())
		}
	}
	opt := efivar.LoadOption{Attributes: efivar.LoadOptionActive, Description: l.label, FilePath: efivar.NewDevicePath(e.node, efivar.FilePath(l.path))}
	num, err := in.EFI.AddBootEntry(opt)
	if err != nil {
		return err
	}
	in.log().Info("UEFI boot entry written", "entry", efivar.BootName(num), "label", l.label, "path", opt.FilePath.String())
	return nil
}
