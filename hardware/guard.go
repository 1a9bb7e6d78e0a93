package hardware

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rivetmetal/rivet/hardware/ondisk"
)

// ErrProtectedDevice is returned for a disk that holds a filesystem shared
// with other machines (a cluster or SAN volume): wiping it would destroy
// other machines' data, so cleaning refuses it (IPA's
// ipa-guard-special-filesystems).
var ErrProtectedDevice = errors.New("device holds a shared filesystem")

// guardedPartitionTypes are GPT partition types of shared filesystems.
var guardedPartitionTypes = map[ondisk.GUID]string{
	ondisk.TypeGPFS: "IBM GPFS partition",
	ondisk.TypeVMFS: "VMware VMFS partition (GPT)",
}

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
	if t, err := ondisk.ReadGPT(f, d.Size, ss); err == nil {
		for _, p := range t.Partitions {
			if what, ok := guardedPartitionTypes[p.Type]; ok {
				found = append(found, fmt.Sprintf("%s (partition %d)", what, p.Number))
			}
		}
	} else if m, err := ondisk.ReadMBR(f); err == nil && m.Valid {
		for i, p := range m.Partitions {
			if p.Type == ondisk.MBRTypeVMFS {
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
		if fs := ondisk.SharedFilesystem(f, o.off); fs != "" {
			found = append(found, fmt.Sprintf("%s filesystem on %s", fs, o.where))
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("%s: %w: %s", d.Path, ErrProtectedDevice, strings.Join(found, "; "))
	}
	return nil
}
