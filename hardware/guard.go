package hardware

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rivetmetal/rivet/hardware/gpt"
)

// ErrProtectedDevice is returned for a disk that holds a filesystem shared
// with other machines (a cluster or SAN volume): wiping it would destroy
// other machines' data, so cleaning refuses it (IPA's
// ipa-guard-special-filesystems).
var ErrProtectedDevice = errors.New("device holds a shared filesystem")

// guardedPartitionTypes are GPT partition types of shared filesystems.
var guardedPartitionTypes = map[gpt.GUID]string{
	gpt.MustGUID("37AFFC90-EF7D-4E96-91C3-2D7AE055B174"): "IBM GPFS partition",
	gpt.MustGUID("AA31E02A-400F-11DB-9590-000C2911D1B8"): "VMware VMFS partition (GPT)",
}

// guardedMBRType is the MBR partition type of VMFS.
const guardedMBRType = 0xfb

// CheckSpecialFilesystems reads the disk's partition table and the start
// of each partition, and returns an error wrapping ErrProtectedDevice when
// it finds a GPFS or VMFS partition, or a GFS2, OCFS2 or VMFS filesystem.
// The device node is read under root ("" means "/").
func CheckSpecialFilesystems(root string, d BlockDevice) error {
	if root == "" {
		root = "/"
	}
	f, err := os.Open(filepath.Join(root, "dev", d.Name))
	if err != nil {
		return fmt.Errorf("check %s for shared filesystems: %w", d.Path, err)
	}
	defer f.Close()
	var found []string
	ss := d.LogicalSectorSize
	if ss == 0 {
		ss = 512
	}
	if t, err := gpt.Read(f, d.Size, ss); err == nil {
		for _, p := range t.Partitions {
			if what, ok := guardedPartitionTypes[p.Type]; ok {
				found = append(found, fmt.Sprintf("%s (partition %d)", what, p.Number))
			}
		}
	} else if m, err := gpt.ReadMBR(f); err == nil && m.Valid {
		for i, p := range m.Partitions {
			if p.Type == guardedMBRType {
				found = append(found, fmt.Sprintf("VMware VMFS partition (MBR, partition %d)", i+1))
			}
		}
	}
	offsets := []struct {
		where string
		off   int64
	}{{"the whole disk", 0}}
	for _, p := range d.Partitions {
		offsets = append(offsets, struct {
			where string
			off   int64
		}{p.Path, p.Start})
	}
	for _, o := range offsets {
		if fs := sharedFilesystem(f, o.off); fs != "" {
			found = append(found, fmt.Sprintf("%s filesystem on %s", fs, o.where))
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("%s: %w: %s", d.Path, ErrProtectedDevice, strings.Join(found, "; "))
	}
	return nil
}

// sharedFilesystem recognises cluster filesystems by their superblock
// magic: GFS2 (0x01161970 at 64 KiB), OCFS2 ("OCFSV2" at block 2 for
// 512 B–4 KiB blocks) and VMFS (0xc001d00d at 1 MiB).
func sharedFilesystem(f *os.File, off int64) string {
	var b [8]byte
	if _, err := f.ReadAt(b[:4], off+65536); err == nil && binary.BigEndian.Uint32(b[:4]) == 0x01161970 {
		return "GFS2"
	}
	for _, bs := range []int64{512, 1024, 2048, 4096} {
		if _, err := f.ReadAt(b[:6], off+2*bs); err == nil && string(b[:6]) == "OCFSV2" {
			return "OCFS2"
		}
	}
	if _, err := f.ReadAt(b[:4], off+1<<20); err == nil && binary.LittleEndian.Uint32(b[:4]) == 0xc001d00d {
		return "VMFS"
	}
	return ""
}
