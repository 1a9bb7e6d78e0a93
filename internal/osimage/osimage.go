// Package osimage builds a realistic operating-system disk image for
// benchmarks: a GPT disk with a FAT32 EFI system partition and an ext4 root
// filled with real files (hard links of host directories such as /usr,
// packed by mkfs.ext4 -d), followed by a zero tail, as cloud images are.
// It also derives the compressed and qcow2 variants the image writer
// takes (qcow2 with plain clusters, and with zlib-compressed clusters as
// cloud images ship). Building needs root-free tools only: mkfs.ext4
// (e2fsprogs), qemu-img (qemu-utils) for qcow2, xz (xz-utils) for xz.
package osimage

import (
	"context"
	"fmt"
	"io"
	"io/fs"
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
	// FillMB, when above zero, stops linking files once their sizes add
	// up to this many MiB, so a smaller image still gets a root
	// filesystem that real files fill to a chosen level. Zero links every
	// file of Sources.
	FillMB int64
}

// ForSize returns the options of an OS-like image of diskMB MiB (at least
// 64): an ESP of an eighth of the disk up to 64 MiB (100 MiB from 2 GiB
// up), a root filesystem of 80% of the disk filled to 70% with the default
// sources' files, and the rest of the disk a zero tail.
func ForSize(diskMB int64) Options {
	diskMB = max(diskMB, 64)
	o := Options{DiskMB: diskMB, ESPMB: min(diskMB/8, 64), RootMB: diskMB * 8 / 10}
	if diskMB >= 2048 {
		o.ESPMB = 100
	}
	if 1+o.ESPMB+o.RootMB+1 > diskMB {
		o.RootMB = diskMB - o.ESPMB - 2
	}
	o.FillMB = o.RootMB * 7 / 10
	return o
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
	// The staging root holds copies of host files, Go sources among them;
	// a leading dot keeps it out of ./... patterns (go vet, go test) run
	// in the repository meanwhile.
	stage, err := os.MkdirTemp(filepath.Dir(path), ".osimage-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	budget := int64(-1)
	if o.FillMB > 0 {
		budget = o.FillMB * mib
	}
	for _, src := range o.Sources {
		dst := filepath.Join(stage, strings.TrimPrefix(src, "/"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if budget < 0 {
			// Hard links: the tree costs no data copy.
			if err := run(ctx, "cp", "-al", src, dst); err != nil {
				return err
			}
			continue
		}
		if err := linkTree(ctx, src, dst, &budget); err != nil {
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

// linkTree hard-links src's regular files (and copies its symlinks) under
// dst while their sizes fit *budget bytes, which it decreases.
func linkTree(ctx context.Context, src, dst string, budget *int64) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Unreadable corners of the host tree are left out.
			if d != nil && d.IsDir() && p != src {
				return fs.SkipDir
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err == nil {
				err = os.Symlink(target, to)
			}
			if err != nil {
				return fmt.Errorf("osimage: symlink %s: %w", to, err)
			}
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			if *budget < 4096 {
				return fs.SkipAll
			}
			cost := (fi.Size() + 4095) &^ 4095
			if cost > *budget {
				return nil
			}
			if err := os.Link(p, to); err != nil {
				return fmt.Errorf("osimage: link %s: %w", p, err)
			}
			*budget -= cost
		}
		return nil
	})
}

// Variant is a derived form of the raw image.
type Variant string

// Variants the benchmark serves, named by their file suffix.
const (
	Zstd  Variant = "raw.zst"
	Gzip  Variant = "raw.gz"
	Qcow2 Variant = "qcow2"
	// Qcow2Zlib is qcow2 with zlib-compressed clusters (qemu-img convert
	// -c), as Debian's and Ubuntu's cloud images are.
	Qcow2Zlib Variant = "zlib.qcow2"
	Xz        Variant = "raw.xz"
)

// Derive writes raw's variant v next to it (raw + "." suffix) and returns
// its path. zstd level 3, gzip level 6 and xz preset 6 (xz-utils, as many
// threads as there are cores) are what image builders use; the compressed
// qcow2 is qemu-img's default compression (zlib), made explicit.
func Derive(ctx context.Context, raw string, v Variant) (string, error) {
	out := strings.TrimSuffix(raw, ".raw") + "." + string(v)
	tmp := out + ".tmp"
	switch v {
	case Qcow2:
		if err := ConvertQcow2(ctx, raw, tmp); err != nil {
			return "", err
		}
	case Qcow2Zlib:
		if err := ConvertQcow2(ctx, raw, tmp, "-c", "-o", "compression_type=zlib"); err != nil {
			return "", err
		}
	case Xz:
		f, err := os.Create(tmp)
		if err != nil {
			return "", err
		}
		cmd := exec.CommandContext(ctx, "xz", "-6", "-T0", "-c", raw)
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = f, &stderr
		err = cmd.Run()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("osimage: xz -6 -T0 %s: %w: %s", raw, err, strings.TrimSpace(stderr.String()))
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

// ConvertQcow2 writes the raw disk image raw as the qcow2 file out with
// qemu-img convert and its options opts (say "-c" to compress clusters,
// "-o", "cluster_size=…").
func ConvertQcow2(ctx context.Context, raw, out string, opts ...string) error {
	args := append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, opts...), raw, out)
	return run(ctx, "qemu-img", args...)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("osimage: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
