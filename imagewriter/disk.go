package imagewriter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"github.com/google/uuid"
	"github.com/rivetmetal/rivet/hardware/ondisk"
	"github.com/rivetmetal/rivet/imagewriter/configdrive"
	"github.com/rivetmetal/rivet/imagewriter/layout"
	"golang.org/x/sync/errgroup"
)

// MaxConfigdriveSize is the largest config drive written (64 MiB).
const MaxConfigdriveSize = configdrive.MaxSize

// wipeBytes is how much is zeroed at each end of a disk before a whole-disk
// write: every partition table (MBR, both GPTs) and the signatures of the
// filesystems, RAID and volume managers IPA's wipefs removes live there.
const wipeBytes = 1 << 20

// PartitionImage describes a partition image's disk (image_type
// "partition"): the layout of contract §6.3, with the image streamed into
// the root partition.
type PartitionImage struct {
	// BootMode is "uefi" or "bios" ("" is bios).
	BootMode string
	// DiskLabel is "msdos" or "gpt" ("" is msdos; UEFI forces gpt).
	DiskLabel string
	// RootMB is the root partition's size; 0 takes the rest of the disk.
	RootMB int64
	// SwapMB and EphemeralMB add those partitions when positive.
	SwapMB, EphemeralMB int64
	// EphemeralFormat is the ephemeral filesystem: "ext4" (the default) or
	// "" ... any other value is refused.
	EphemeralFormat string
}

// diskPlan is what will be done to one target.
type diskPlan struct {
	t          target
	imageBase  int64
	imageLimit int64
	layout     *layout.Layout // partition images
}

func (w *writer) planDisk(t target) (*diskPlan, error) {
	p := &diskPlan{t: t, imageLimit: t.Size()}
	pi := w.req.Partition
	if pi == nil {
		return p, nil
	}
	switch strings.ToLower(pi.EphemeralFormat) {
	case "", "ext4":
	default:
		if pi.EphemeralMB > 0 {
			return nil, fmt.Errorf("%w: ephemeral_format %q is not supported (ext4)", ErrTarget, pi.EphemeralFormat)
		}
	}
	l, err := layout.Plan(layout.Spec{BootMode: pi.BootMode, DiskLabel: pi.DiskLabel, RootMB: pi.RootMB, SwapMB: pi.SwapMB,
		EphemeralMB: pi.EphemeralMB, ConfigdriveBytes: int64(len(w.req.Configdrive))}, t.Size(), t.SectorSize())
	if err != nil {
		if errors.Is(err, layout.ErrDoesNotFit) {
			return nil, fmt.Errorf("%w: %s: %w", ErrTooLarge, t.Path(), err)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrTarget, t.Path(), err)
	}
	root, _ := l.Find(layout.RoleRoot)
	p.layout, p.imageBase, p.imageLimit = l, root.Start, root.Size
	return p, nil
}

// prepare wipes every disk and, for partition images, makes the layout.
func (w *writer) prepare(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range w.plans {
		g.Go(func() error {
			if err := wipeSignatures(p.t); err != nil {
				return err
			}
			if p.layout == nil {
				return p.t.SyncPartitions(nil)
			}
			return w.makeLayout(gctx, p)
		})
	}
	return g.Wait()
}

// wipeSignatures zeroes the first and last MiB of a disk.
func wipeSignatures(t target) error {
	n := min(int64(wipeBytes), t.Size())
	if err := t.ZeroRange(0, n); err != nil {
		return fmt.Errorf("wiping signatures: %w", err)
	}
	if tail := t.Size() - wipeBytes; tail > n {
		if err := t.ZeroRange(tail/512*512, t.Size()-tail/512*512); err != nil {
			return fmt.Errorf("wiping signatures: %w", err)
		}
	}
	return nil
}

// makeLayout writes the partition table of a partition image and the
// swap, ESP and ephemeral filesystems.
func (w *writer) makeLayout(ctx context.Context, p *diskPlan) error {
	t, l := p.t, p.layout
	b := &diskBackend{t: t}
	if err := writeTable(b, l.Table, l.Partitions, t.Size(), int(t.SectorSize())); err != nil {
		return fmt.Errorf("%w: %s: writing the %s partition table: %w", ErrTarget, t.Path(), l.Table, err)
	}
	for _, part := range l.Partitions {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Nothing of an old filesystem may show through a new partition.
		if err := t.ZeroRange(part.Start, min(part.Size, wipeBytes)); err != nil {
			return err
		}
		switch part.Role {
		case layout.RoleSwap:
			id := uuid.New()
			hdr, err := layout.SwapHeader(part.Size, id, "swap1")
			if err != nil {
				return fmt.Errorf("%w: %s: %w", ErrTarget, t.Path(), err)
			}
			if _, err := t.WriteAt(hdr, part.Start); err != nil {
				return err
			}
		case layout.RoleESP:
			if _, err := fat32.Create(b, part.Size, part.Start, t.SectorSize(), "efi-part", false); err != nil {
				return fmt.Errorf("%w: %s: making the FAT32 ESP: %w", ErrTarget, t.Path(), err)
			}
		case layout.RoleEphemeral:
			start := time.Now()
			if _, err := ext4.Create(b, part.Size, part.Start, t.SectorSize(), &ext4.Params{VolumeName: "ephemeral0"}); err != nil {
				return fmt.Errorf("%w: %s: making the ext4 ephemeral filesystem: %w", ErrTarget, t.Path(), err)
			}
			w.log.Debug("ephemeral filesystem made", "device", t.Path(), "seconds", time.Since(start).Seconds())
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	return t.SyncPartitions(kernelParts(l.Partitions))
}

func kernelParts(parts []layout.Partition) []kernelPartition {
	out := make([]kernelPartition, len(parts))
	for i, p := range parts {
		out[i] = kernelPartition{Number: p.Number, Start: p.Start, Length: p.Size}
	}
	return out
}

// writeTable writes a new partition table with go-diskfs.
func writeTable(b *diskBackend, table layout.Table, parts []layout.Partition, size int64, sector int) error {
	switch table {
	case layout.GPT:
		gt := &gpt.Table{LogicalSectorSize: sector, PhysicalSectorSize: sector, ProtectiveMBR: true}
		for _, p := range parts {
			gt.Partitions = append(gt.Partitions, &gpt.Partition{Index: p.Number, Start: uint64(p.Start / int64(sector)),
				End: uint64(p.End()/int64(sector)) - 1, Type: gpt.Type(p.GPTType), Name: p.Name})
		}
		return gt.Write(b, size)
	case layout.MSDOS:
		mt := &mbr.Table{LogicalSectorSize: sector, PhysicalSectorSize: sector}
		for _, p := range parts {
			mt.Partitions = append(mt.Partitions, &mbr.Partition{Index: p.Number, Bootable: p.Bootable, Type: mbr.Type(p.MBRType),
				Start: uint32(p.Start / int64(sector)), Size: uint32(p.Size / int64(sector))})
		}
		if err := mt.Write(b, size); err != nil {
			return err
		}
		// A fresh disk signature, as parted mklabel gives.
		var sig [4]byte
		id := uuid.New()
		copy(sig[:], id[:4])
		_, err := b.WriteAt(sig[:], 440)
		return err
	}
	return fmt.Errorf("unknown partition table %q", table)
}

// finish does what follows the verified image on each disk: the config
// drive, the GPT backup at the true end of the disk, the kernel's view of
// the partitions, and the identifiers get_partition_uuids reports.
func (w *writer) finish(ctx context.Context) ([]DiskResult, error) {
	out := make([]DiskResult, len(w.plans))
	g, _ := errgroup.WithContext(ctx)
	for i, p := range w.plans {
		g.Go(func() error {
			var err error
			if p.layout != nil {
				out[i], err = w.finishPartitionImage(p)
			} else {
				out[i], err = w.finishWholeDisk(p)
			}
			if err != nil {
				return err
			}
			return p.t.Flush()
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func (w *writer) finishPartitionImage(p *diskPlan) (DiskResult, error) {
	t, l := p.t, p.layout
	res := DiskResult{Path: t.Path(), PartitionTable: string(l.Table), Partitions: map[string]string{}}
	if cd, ok := l.Find(layout.RoleConfigdrive); ok {
		if err := writeConfigdrive(t, cd, w.req.Configdrive); err != nil {
			return res, err
		}
	}
	if err := t.Flush(); err != nil {
		return res, err
	}
	if err := t.SyncPartitions(kernelParts(l.Partitions)); err != nil {
		return res, err
	}
	res.DiskID = diskID(t)
	for _, part := range l.Partitions {
		res.Partitions[string(part.Role)] = t.PartitionPath(part.Number)
	}
	root, _ := l.Find(layout.RoleRoot)
	res.RootUUID = fsUUID(t, root.Start)
	if res.RootUUID == "" {
		res.RootUUID = ondisk.PartUUID(t, t.Size(), int(t.SectorSize()), root.Number)
	}
	if esp, ok := l.Find(layout.RoleESP); ok {
		res.ESPUUID = fsUUID(t, esp.Start)
	}
	return res, nil
}

func (w *writer) finishWholeDisk(p *diskPlan) (DiskResult, error) {
	t := p.t
	b := &diskBackend{t: t}
	res := DiskResult{Path: t.Path(), Partitions: map[string]string{}}
	sector := int(t.SectorSize())
	var parts []layout.Partition
	var gt *gpt.Table
	var mt *mbr.Table
	switch ondisk.DetectTable(t, sector) {
	case ondisk.GPTTable:
		res.PartitionTable = string(layout.GPT)
		var err error
		if gt, err = gpt.Read(b, sector, sector); err != nil {
			return res, fmt.Errorf("%w: %s: reading the image's GPT: %w", ErrTarget, t.Path(), err)
		}
		if gt.TotalSize() != uint64(t.Size()) {
			// sgdisk -e: the backup GPT goes to the true end of the disk.
			if err := gt.Repair(uint64(t.Size())); err != nil {
				return res, fmt.Errorf("%w: %s: moving the backup GPT: %w", ErrTarget, t.Path(), err)
			}
			if err := gt.Write(b, t.Size()); err != nil {
				return res, fmt.Errorf("%w: %s: moving the backup GPT: %w", ErrTarget, t.Path(), err)
			}
			w.log.Info("backup GPT moved to the end of the disk", "device", t.Path(), "disk_bytes", t.Size())
		}
		for _, gp := range gt.Partitions {
			if gp.Type == gpt.Unused {
				continue
			}
			parts = append(parts, layout.Partition{Number: gp.Index, Start: int64(gp.Start) * int64(sector),
				Size: int64(gp.End-gp.Start+1) * int64(sector), GPTType: string(gp.Type)})
		}
	case ondisk.MBRTable:
		res.PartitionTable = string(layout.MSDOS)
		var err error
		if mt, err = mbr.Read(b, sector, sector); err != nil {
			return res, fmt.Errorf("%w: %s: reading the image's MBR: %w", ErrTarget, t.Path(), err)
		}
		for i, mp := range mt.Partitions {
			if mp.Type == mbr.Empty || mp.Size == 0 {
				continue
			}
			parts = append(parts, layout.Partition{Number: i + 1, Start: int64(mp.Start) * int64(sector),
				Size: int64(mp.Size) * int64(sector), MBRType: byte(mp.Type)})
		}
	default:
		w.log.Warn("the whole-disk image has no partition table", "device", t.Path())
	}
	if len(w.req.Configdrive) > 0 {
		cd, err := w.placeConfigdrive(t, b, gt, mt, &parts)
		if err != nil {
			return res, err
		}
		res.Partitions[string(layout.RoleConfigdrive)] = t.PartitionPath(cd.Number)
	}
	if err := t.Flush(); err != nil {
		return res, err
	}
	if err := t.SyncPartitions(kernelParts(parts)); err != nil {
		return res, err
	}
	res.DiskID = diskID(t)
	for _, part := range parts {
		if strings.EqualFold(part.GPTType, layout.TypeESP) || part.MBRType == 0xef {
			res.Partitions[string(layout.RoleESP)] = t.PartitionPath(part.Number)
			res.ESPUUID = fsUUID(t, part.Start)
			break
		}
	}
	return res, nil
}

// placeConfigdrive writes the config drive of a whole-disk image: into a
// partition labelled config-2 if the image has one, else into a new
// partition in the last 64 MiB of the disk.
func (w *writer) placeConfigdrive(t target, b *diskBackend, gt *gpt.Table, mt *mbr.Table, parts *[]layout.Partition) (layout.Partition, error) {
	for _, p := range *parts {
		if fs, _ := ondisk.Probe(t, p.Start); fs.Label == "config-2" {
			if int64(len(w.req.Configdrive)) > p.Size {
				return p, fmt.Errorf("%w: the %d-byte config drive does not fit the image's %d-byte config-2 partition", ErrConfigdrive, len(w.req.Configdrive), p.Size)
			}
			p.Role = layout.RoleConfigdrive
			return p, writeConfigdrive(t, p, w.req.Configdrive)
		}
	}
	if int64(len(w.req.Configdrive)) > layout.ConfigdriveMB*layout.MiB {
		return layout.Partition{}, fmt.Errorf("%w: %d bytes do not fit a %d MiB partition", ErrConfigdrive, len(w.req.Configdrive), layout.ConfigdriveMB)
	}
	sector := int64(t.SectorSize())
	switch {
	case gt != nil:
		cd, err := layout.ConfigdriveAtEnd(layout.GPT, *parts, t.Size(), sector)
		if err != nil {
			return cd, fmt.Errorf("%w: %s: %w", ErrConfigdrive, t.Path(), err)
		}
		gt.Partitions = append(gt.Partitions, &gpt.Partition{Index: cd.Number, Start: uint64(cd.Start / sector),
			End: uint64(cd.End()/sector) - 1, Type: gpt.Type(cd.GPTType), Name: cd.Name})
		if err := gt.Write(b, t.Size()); err != nil {
			return cd, fmt.Errorf("%w: %s: adding the config drive partition: %w", ErrConfigdrive, t.Path(), err)
		}
		*parts = append(*parts, cd)
		return cd, writeConfigdrive(t, cd, w.req.Configdrive)
	case mt != nil:
		used := 0
		for _, p := range mt.Partitions {
			if p.Type != mbr.Empty && p.Size > 0 {
				used++
			}
		}
		cd, err := layout.ConfigdriveAtEnd(layout.MSDOS, *parts, t.Size(), sector)
		if err != nil {
			return cd, fmt.Errorf("%w: %s: %w", ErrConfigdrive, t.Path(), err)
		}
		slot := -1
		for i := 0; i < 4; i++ {
			if i >= len(mt.Partitions) || mt.Partitions[i].Type == mbr.Empty || mt.Partitions[i].Size == 0 {
				slot = i
				break
			}
		}
		if slot < 0 || used >= 4 {
			return cd, fmt.Errorf("%w: %s: no free primary partition slot for the config drive", ErrConfigdrive, t.Path())
		}
		for len(mt.Partitions) <= slot {
			mt.Partitions = append(mt.Partitions, &mbr.Partition{Index: len(mt.Partitions) + 1})
		}
		cd.Number = slot + 1
		mt.Partitions[slot] = &mbr.Partition{Index: slot + 1, Type: mbr.Type(cd.MBRType), Start: uint32(cd.Start / sector), Size: uint32(cd.Size / sector)}
		if err := mt.Write(b, t.Size()); err != nil {
			return cd, fmt.Errorf("%w: %s: adding the config drive partition: %w", ErrConfigdrive, t.Path(), err)
		}
		*parts = append(*parts, cd)
		return cd, writeConfigdrive(t, cd, w.req.Configdrive)
	}
	return layout.Partition{}, fmt.Errorf("%w: %s: the image has no partition table to add a config drive partition to", ErrConfigdrive, t.Path())
}

// writeConfigdrive fills a partition with the config drive, zeroing the
// rest of it.
func writeConfigdrive(t target, p layout.Partition, iso []byte) error {
	if int64(len(iso)) > p.Size {
		return fmt.Errorf("%w: %d bytes do not fit the %d-byte partition", ErrConfigdrive, len(iso), p.Size)
	}
	buf := alignedBuffer((len(iso) + alignment - 1) / alignment * alignment)
	copy(buf, iso)
	if _, err := t.WriteAt(buf, p.Start); err != nil {
		return fmt.Errorf("%w: %w", ErrConfigdrive, err)
	}
	if rest := int64(len(buf)); rest < p.Size {
		if err := t.ZeroRange(p.Start+rest, p.Size-rest); err != nil {
			return fmt.Errorf("%w: %w", ErrConfigdrive, err)
		}
	}
	return nil
}

// diskID is the MBR disk signature, as IPA reports it for whole-disk
// images ("0x" and eight hex digits); "" when it cannot be read.
func diskID(t target) string {
	id, err := ondisk.DiskIdentifier(t)
	if err != nil {
		return ""
	}
	return id
}

// fsUUID is the UUID of the filesystem at off, "" when none is recognised.
func fsUUID(t target, off int64) string {
	fs, _ := ondisk.Probe(t, off)
	return fs.UUID
}

// diskBackend is a go-diskfs backend.Storage over a target.
type diskBackend struct {
	t   target
	pos int64
}

var _ backend.Storage = (*diskBackend)(nil)

func (b *diskBackend) Stat() (fs.FileInfo, error) { return sizeInfo{b.t}, nil }
func (b *diskBackend) Read(p []byte) (int, error) {
	n, err := b.ReadAt(p, b.pos)
	b.pos += int64(n)
	return n, err
}
func (b *diskBackend) ReadAt(p []byte, off int64) (int, error) {
	if off >= b.t.Size() {
		return 0, io.EOF
	}
	if rest := b.t.Size() - off; int64(len(p)) > rest {
		n, err := b.t.ReadAt(p[:rest], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return b.t.ReadAt(p, off)
}
func (b *diskBackend) WriteAt(p []byte, off int64) (int, error) { return b.t.WriteAt(p, off) }
func (b *diskBackend) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += b.pos
	case io.SeekEnd:
		off += b.t.Size()
	}
	if off < 0 {
		return 0, fmt.Errorf("seek %s to %d", b.t.Path(), off)
	}
	b.pos = off
	return off, nil
}
func (b *diskBackend) Close() error                            { return nil }
func (b *diskBackend) Sys() (*os.File, error)                  { return b.t.File(), nil }
func (b *diskBackend) Writable() (backend.WritableFile, error) { return b, nil }
func (b *diskBackend) Path() string                            { return b.t.Path() }
func (b *diskBackend) Sync() error                             { return b.t.File().Sync() }

type sizeInfo struct{ t target }

func (s sizeInfo) Name() string       { return s.t.Path() }
func (s sizeInfo) Size() int64        { return s.t.Size() }
func (s sizeInfo) Mode() fs.FileMode  { return 0o600 }
func (s sizeInfo) ModTime() time.Time { return time.Time{} }
func (s sizeInfo) IsDir() bool        { return false }
func (s sizeInfo) Sys() any           { return nil }
