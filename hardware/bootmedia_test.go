package hardware

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	dgpt "github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/rivetmetal/rivet/hardware/efivar"
	"github.com/rivetmetal/rivet/hardware/ondisk"
)

// devFile makes root/dev/<name> a regular file of size bytes: the readers
// only need ReadAt, so a file stands in for the device node.
func devFile(t *testing.T, root, name string, size int64) string {
	t.Helper()
	p := filepath.Join(root, "dev", name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	return p
}

func writeAt(t *testing.T, p string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestBootMediaNeverChosen(t *testing.T) {
	fs := newFakeSys(t)
	const sectors = 8 << 30 / 512 // 8 GiB
	fs.disk("pci0000:00/0000:00:05.0/virtio2", "vda", "254:0", sectors, nil)
	fs.disk("pci0000:00/0000:00:06.0/virtio3", "vdb", "254:16", sectors, nil)
	fs.disk("pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host7/target7:0:0/7:0:0:0", "sdx", "8:96", sectors,
		map[string]string{"device/model": "Virtual Media   ", "device/vendor": "AMI"})
	// vda carries the virtual-media ISO's volume ID.
	vda := devFile(t, fs.root, "vda", 1<<20)
	pvd := make([]byte, 72)
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:], "VMEDIA_BOOT_ISO                 ")
	writeAt(t, vda, 16*2048, pvd)
	devFile(t, fs.root, "vdb", 1<<20)

	devs, err := Lister{Root: fs.root}.List()
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, d := range devs {
		reasons[d.Name] = d.BootMedia
	}
	if !strings.Contains(reasons["vda"], "VMEDIA_BOOT_ISO") || !strings.Contains(reasons["sdx"], "virtual media") || reasons["vdb"] != "" {
		t.Fatalf("boot media %q", reasons)
	}
	// Even hints naming it exactly do not pick it.
	h, _ := ParseHints(map[string]any{"name": "/dev/vda"})
	_, err = SelectRootDevice(devs, h)
	if !errors.Is(err, ErrDeviceNotFound) || !strings.Contains(err.Error(), "boot medium of this ramdisk") {
		t.Fatalf("hints for the boot medium: %v", err)
	}
	d, err := SelectRootDevice(devs, Hints{})
	if err != nil || d.Name != "vdb" {
		t.Fatalf("without hints: %v %v, want vdb", d.Name, err)
	}
}

func TestBootMediaFromUEFIBootCurrent(t *testing.T) {
	fs := newFakeSys(t)
	fs.disk("pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host8/target8:0:0/8:0:0:0", "sdb", "8:16", 64<<20/512, nil)
	fs.disk("pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0", "sda", "8:0", 64<<20/512, nil)
	// sdb is a stick with an ESP; the firmware booted Boot0003 from it.
	p := filepath.Join(fs.root, "dev", "sdb")
	os.MkdirAll(filepath.Dir(p), 0o755)
	d, err := diskfs.Create(p, 64<<20, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	const espGUID = "5E1B7A0C-1D2E-4F30-8A9B-0C1D2E3F4A5B"
	if err := d.Partition(&dgpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		Partitions: []*dgpt.Partition{{Index: 1, Start: 2048, End: 4095, Type: dgpt.EFISystemPartition, GUID: espGUID}}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	devFile(t, fs.root, "sda", 1<<20)
	store := efivar.Store{Dir: filepath.Join(fs.root, "sys/firmware/efi/efivars")}
	os.MkdirAll(store.Dir, 0o755)
	g := ondisk.MustGUID(espGUID)
	opt := efivar.LoadOption{Attributes: efivar.LoadOptionActive, Description: "USB stick",
		FilePath: efivar.NewDevicePath(efivar.HardDrive(1, 2048, 2048, g), efivar.FilePath(`\EFI\BOOT\BOOTX64.EFI`))}
	if err := store.Set("Boot0003", efivar.GlobalGUID, efivar.BootVarAttrs, opt.Marshal()); err != nil {
		t.Fatal(err)
	}
	store.Set("BootCurrent", efivar.GlobalGUID, efivar.BootServiceAccess|efivar.RuntimeAccess, binary.LittleEndian.AppendUint16(nil, 3))

	devs, err := Lister{Root: fs.root}.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		switch d.Name {
		case "sdb":
			if !strings.Contains(d.BootMedia, "Boot0003") {
				t.Errorf("sdb boot media %q", d.BootMedia)
			}
		case "sda":
			if d.BootMedia != "" {
				t.Errorf("sda boot media %q", d.BootMedia)
			}
		}
	}
}

func TestCheckSpecialFilesystems(t *testing.T) {
	fs := newFakeSys(t)
	disk := fs.disk("pci0000:00/0000:00:05.0/virtio2", "vda", "254:0", 8<<20/512, nil)
	fs.partition(disk, "vda1", "254:1", 1, 2048, 8192)
	p := devFile(t, fs.root, "vda", 8<<20)
	devs, err := Lister{Root: fs.root}.List()
	if err != nil || len(devs) != 1 {
		t.Fatalf("%v %v", devs, err)
	}
	if err := CheckSpecialFilesystems(fs.root, devs[0]); err != nil {
		t.Fatalf("blank disk: %v", err)
	}
	// A GFS2 superblock in partition 1.
	writeAt(t, p, 2048*512+65536, []byte{0x01, 0x16, 0x19, 0x70})
	err = CheckSpecialFilesystems(fs.root, devs[0])
	if !errors.Is(err, ErrProtectedDevice) || !strings.Contains(err.Error(), "GFS2 filesystem on /dev/vda1") {
		t.Fatalf("GFS2: %v", err)
	}
	// An OCFS2 volume on the whole disk (4 KiB blocks).
	writeAt(t, p, 2048*512+65536, make([]byte, 4))
	writeAt(t, p, 8192, []byte("OCFSV2"))
	if err := CheckSpecialFilesystems(fs.root, devs[0]); !errors.Is(err, ErrProtectedDevice) || !strings.Contains(err.Error(), "OCFS2") {
		t.Fatalf("OCFS2: %v", err)
	}
	// A VMFS partition type in an MBR.
	writeAt(t, p, 8192, make([]byte, 6))
	mbr := make([]byte, 512)
	mbr[446+4] = 0xfb
	mbr[510], mbr[511] = 0x55, 0xAA
	writeAt(t, p, 0, mbr)
	if err := CheckSpecialFilesystems(fs.root, devs[0]); !errors.Is(err, ErrProtectedDevice) || !strings.Contains(err.Error(), "VMFS partition (MBR") {
		t.Fatalf("VMFS MBR: %v", err)
	}
}

// TestBootMediaParametersFloppy marks the disk holding Ironic's virtual
// floppy (a FAT image labelled ir-vfd-dev, made by the real mkfs.vfat) as
// a boot medium.
func TestBootMediaParametersFloppy(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.vfat")
	if err != nil {
		t.Skip("mkfs.vfat not installed (scripts/install-deps.sh vm)")
	}
	fs := newFakeSys(t)
	fs.disk("pci0000:00/0000:00:05.0/virtio2", "vda", "254:0", 8<<30/512, nil)
	fs.disk("pci0000:00/0000:00:06.0/virtio3", "vdb", "254:16", 8<<30/512, nil)
	vda := devFile(t, fs.root, "vda", 2<<20)
	devFile(t, fs.root, "vdb", 2<<20)
	if out, err := exec.Command(mkfs, "-n", "ir-vfd-dev", vda).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.vfat: %v %s", err, out)
	}
	devs, err := Lister{Root: fs.root}.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || !strings.Contains(devs[0].BootMedia, `"ir-vfd-dev"`) || devs[1].BootMedia != "" {
		t.Fatalf("boot media: %q, %q", devs[0].BootMedia, devs[1].BootMedia)
	}
}
