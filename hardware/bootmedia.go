package hardware

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rivetmetal/rivet/hardware/efivar"
	"github.com/rivetmetal/rivet/hardware/ondisk"
)

// Labels of the media Ironic boots a ramdisk from: the virtual-media ISO
// ("VMEDIA_BOOT_ISO") and the parameters floppy/USB image ("ir-vfd-dev").
var bootMediaLabels = []string{"vmedia_boot_iso", "ir-vfd-dev"}

// markBootMedia sets BootMedia on every device the running ramdisk came
// from: BMC virtual media (by model or by the labels Ironic gives its boot
// images), and the disk holding the partition of the UEFI boot entry the
// firmware booted this time (a ramdisk on a local disk or USB stick).
func markBootMedia(root string, devs []BlockDevice) {
	bootGUID, bootEntry := currentBootPartition(root)
	for i := range devs {
		d := &devs[i]
		if strings.Contains(strings.ToLower(d.Model), "virtual media") {
			d.BootMedia = fmt.Sprintf("virtual media (model %q)", d.Model)
			continue
		}
		f, err := os.Open(filepath.Join(root, "dev", d.Name))
		if err != nil {
			continue // no device node (fixture trees); nothing to read
		}
		if label := mediaLabel(f, d); label != "" {
			d.BootMedia = fmt.Sprintf("Ironic boot medium (label %q)", label)
		} else if bootGUID != nil && d.LogicalSectorSize > 0 {
			if t, err := ondisk.ReadGPT(f, d.Size, d.LogicalSectorSize); err == nil {
				if p, ok := t.ByUnique(ondisk.GUID(*bootGUID)); ok {
					d.BootMedia = fmt.Sprintf("the UEFI boot entry in use (%s) is on its partition %d", bootEntry, p.Number)
				}
			}
		}
		f.Close()
	}
}

// currentBootPartition returns the GPT partition GUID of the boot entry
// the firmware booted (BootCurrent), if it points at a disk partition.
func currentBootPartition(root string) (*[16]byte, string) {
	s := efivar.Store{Dir: filepath.Join(root, "sys/firmware/efi/efivars")}
	cur, err := s.BootCurrent()
	if err != nil {
		return nil, ""
	}
	_, data, err := s.Get(efivar.BootName(cur), efivar.GlobalGUID)
	if err != nil {
		return nil, ""
	}
	opt, err := efivar.ParseLoadOption(data)
	if err != nil {
		return nil, ""
	}
	g, ok := opt.FilePath.HardDriveGUID()
	if !ok {
		return nil, "" // PXE, HTTP boot, a removable-media path without HD()
	}
	return &g, fmt.Sprintf("%s %q", efivar.BootName(cur), opt.Description)
}

// mediaLabel returns the ISO 9660 volume ID or FAT label of the disk or
// of one of its partitions when it is one of Ironic's boot-medium labels.
func mediaLabel(f *os.File, d *BlockDevice) string {
	offsets := []int64{0}
	for _, p := range d.Partitions {
		offsets = append(offsets, p.Start)
	}
	for _, off := range offsets {
		fs, ok := ondisk.Probe(f, off)
		if !ok || (fs.Type != "iso9660" && fs.Type != "vfat") {
			continue
		}
		for _, want := range bootMediaLabels {
			if fs.Label != "" && strings.EqualFold(fs.Label, want) {
				return fs.Label
			}
		}
	}
	return ""
}
