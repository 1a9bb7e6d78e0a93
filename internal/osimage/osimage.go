// Package osimage builds a realistic operating-system disk image for
// benchmarks: a GPT disk with a FAT32 EFI system partition and an ext4 root
// filled with real files (hard links of host directories such as /usr,
// packed by mkfs.ext4 -d), followed by a zero tail, as cloud images are.
// It also derives the compressed and qcow2 variants the image writer
// takes. Building needs root-free tools only: mkfs.ext4 (e2fsprogs),
// qemu-img (qemu-utils) for qcow2.
package osimage

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Options shape the image. Zero values give the benchmark image: 2560 MiB
// disk, 100 MiB ESP, 2048 MiB root filled from /usr/share, /usr/bin and
// /usr/local.
type Options struct {
	DiskMB, ESPMB, RootMB int64
	// Sources are host directories linked into the root filesystem (they
	// must be on the same filesystem as the output, for hard links).
	Sources []string
}

func (o *Options) defaults() {
	if o.DiskMB == 0 {
		o.DiskMB = 2560
	}
	if o.ESPMB == 0 {
		o.ESPMB = 100
	}
	if o.RootMB == 0 {
		o.RootMB = 2048
	}
	if len(o.Sources) == 0 {
		o.Sources = []string{"/usr/share", "/usr/bin", "/usr/local"}
	}
}

const mib = 1 << 20

// Build writes the raw disk image to path (replacing it).
func Build(ctx context.Context, path string, o Options) error {
	o.defaults()
	if 1+o.ESPMB+o.RootMB+1 > o.DiskMB {
		return fmt.Errorf("osimage: %d MiB of partitions do not fit a %d MiB disk", o.ESPMB+o.RootMB, o.DiskMB)
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	d, err := diskfs.Create(tmp, o.DiskMB*mib, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("osimage: create %s: %w", tmp, err)
	}
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: mib / 512, End: uint64((1+o.ESPMB)*mib/512 - 1), Type: gpt.EFISystemPartition, Name: "EFI"},
		{Index: 2, Start: uint64((1 + o.ESPMB) * mib / 512), End: uint64((1+o.ESPMB+o.RootMB)*mib/512 - 1), Type: gpt.LinuxFilesystem, Name: "root"},
	}}
	if err := d.Partition(table); err != nil {
		d.Close()
		return fmt.Errorf("osimage: partition %s: %w", tmp, err)
	}
	if _, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "EFI"}); err != nil {
		d.Close()
		return fmt.Errorf("osimage: ESP: %w", err)
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("osimage: close %s: %w", tmp, err)
	}
	stage, err := os.MkdirTemp(filepath.Dir(path), "osimage-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, src := range o.Sources {
		dst := filepath.Join(stage, strings.TrimPrefix(src, "/"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		// Hard links: the tree costs no data copy.
		if err := run(ctx, "cp", "-al", src, dst); err != nil {
			return err
		}
	}
	for _, dir := range []string{"etc", "boot", "var/log", "home", "root", "tmp"} {
		os.MkdirAll(filepath.Join(stage, dir), 0o755)
	}
	os.WriteFile(filepath.Join(stage, "etc/hostname"), []byte("rivet-bench\n"), 0o644)
	off := (1 + o.ESPMB) * mib
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-L", "root", "-E", "offset="+strconv.FormatInt(off, 10),
		"-d", stage, tmp, strconv.FormatInt(o.RootMB, 10)+"M"); err != nil {
		return err
	}
	// mkfs.ext4 with an offset may extend the file; keep the disk size.
	if err := os.Truncate(tmp, o.DiskMB*mib); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Variant is a derived form of the raw image.
type Variant string

// Variants the benchmark serves.
const (
	Zstd  Variant = "raw.zst"
	Gzip  Variant = "raw.gz"
	Qcow2 Variant = "qcow2"
)

// Derive writes raw's variant v next to it (raw + "." suffix) and returns
// its path. zstd level 3 and gzip level 6 are what image builders use.
func Derive(ctx context.Context, raw string, v Variant) (string, error) {
	out := strings.TrimSuffix(raw, ".raw") + "." + string(v)
	tmp := out + ".tmp"
	switch v {
	case Qcow2:
		if err := run(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, tmp); err != nil {
			return "", err
		}
	case Zstd, Gzip:
		in, err := os.Open(raw)
		if err != nil {
			return "", err
		}
		defer in.Close()
		f, err := os.Create(tmp)
		if err != nil {
			return "", err
		}
		var w io.WriteCloser
		if v == Zstd {
			w, err = zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedDefault))
		} else {
			w, err = gzip.NewWriterLevel(f, 6)
		}
		if err != nil {
			f.Close()
			return "", err
		}
		if _, err := io.Copy(w, in); err != nil {
			f.Close()
			return "", fmt.Errorf("osimage: compressing %s: %w", raw, err)
		}
		if err := w.Close(); err != nil {
			f.Close()
			return "", err
		}
		if err := f.Close(); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("osimage: unknown variant %q", v)
	}
	return out, os.Rename(tmp, out)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("osimage: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
