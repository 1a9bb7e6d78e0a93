package hardware

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rivetmetal/rivet/hardware/efivar"
	"github.com/rivetmetal/rivet/hardware/gpt"
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
			if t, err := gpt.Read(f, d.Size, d.LogicalSectorSize); err == nil {
				if p, ok := t.ByUnique(gpt.GUID(*bootGUID)); ok {
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
		for _, l := range []string{isoLabel(f, off), fatLabel(f, off)} {
			for _, want := range bootMediaLabels {
				if l != "" && strings.EqualFold(l, want) {
					return l
				}
			}
		}
	}
	return ""
}

// isoLabel reads the volume identifier of an ISO 9660 primary volume
// descriptor (sector 16 of 2048 bytes).
func isoLabel(f *os.File, off int64) string {
	var b [72]byte
	if _, err := f.ReadAt(b[:], off+16*2048); err != nil {
		return ""
	}
	if b[0] != 1 || string(b[1:6]) != "CD001" {
		return ""
	}
	return strings.TrimSpace(string(b[40:72]))
}

// fatLabel reads the volume label of a FAT12/16 or FAT32 boot sector.
func fatLabel(f *os.File, off int64) string {
	var b [512]byte
	if _, err := f.ReadAt(b[:], off); err != nil || b[510] != 0x55 || b[511] != 0xAA {
		return ""
	}
	switch {
	case bytes.Equal(b[82:87], []byte("FAT32")) && b[66] == 0x29:
		return strings.TrimSpace(string(b[71:82]))
	case bytes.HasPrefix(b[54:62], []byte("FAT")) && b[38] == 0x29:
		return strings.TrimSpace(string(b[43:54]))
	}
	return ""
}
