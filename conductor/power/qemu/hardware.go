package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// NIC models (driver_info qemu_nic_model) and the QEMU device of each.
var nicDevices = map[string]string{
	"virtio":  "virtio-net-pci",
	"e1000e":  "e1000e",  // Intel 82574L (e1000e driver)
	"e1000":   "e1000",   // Intel 82540EM (e1000 driver)
	"vmxnet3": "vmxnet3", // VMware paravirtual (vmxnet3 driver)
	"rtl8139": "rtl8139", // Realtek RTL8139 (8139cp/8139too drivers)
}

// Disk buses (driver_info qemu_disk_bus).
const (
	DiskVirtio  = "virtio"  // virtio-blk-pci (virtio_blk)
	DiskNVMe    = "nvme"    // NVMe controller with one namespace (nvme)
	DiskAHCI    = "ahci"    // ICH9 AHCI controller, SATA disk (ahci)
	DiskMegaSAS = "megasas" // LSI MegaRAID SAS 2108 (megaraid_sas), SCSI disk
	DiskLSISAS  = "lsi-sas" // LSI SAS1068 Fusion-MPT (mptsas), SCSI disk
	DiskUSB     = "usb"     // USB mass storage on an xHCI controller (usb-storage)
)

// NIC models and disk buses the driver emulates, in documentation order.
var (
	NICModels = []string{"virtio", "e1000e", "e1000", "vmxnet3", "rtl8139"}
	DiskBuses = []string{DiskVirtio, DiskNVMe, DiskAHCI, DiskMegaSAS, DiskLSISAS, DiskUSB}
)

// Defaults of qemu_nic_model and qemu_disk_bus.
const (
	DefaultNICModel = "virtio"
	DefaultDiskBus  = DiskVirtio
)

// NICArgs returns the -device arguments of a NIC of the given model on the
// netdev with id netdev: with rom false the NIC has no option ROM (no PXE
// from the firmware); bootIndex > 0 puts it in the firmware's boot order.
func NICArgs(model, netdev, mac string, rom bool, bootIndex int) ([]string, error) {
	dev, ok := nicDevices[model]
	if !ok {
		return nil, fmt.Errorf("NIC model %q: want one of %s", model, strings.Join(NICModels, ", "))
	}
	opts := []string{dev, "netdev=" + optValue(netdev)}
	if mac != "" {
		opts = append(opts, "mac="+mac)
	}
	if !rom {
		opts = append(opts, "romfile=")
	}
	if bootIndex > 0 {
		opts = append(opts, "bootindex="+strconv.Itoa(bootIndex))
	}
	return []string{"-device", strings.Join(opts, ",")}, nil
}

// DiskArgs returns the arguments that attach the raw file as a disk on the
// bus: the drive, the controller the bus needs, and the disk device. id
// names the drive and the controller ("disk0") and must be unique in the
// VM; serial is the disk's serial number (NVMe requires one; "" derives it
// from id). bootIndex > 0 puts the disk in the firmware's boot order.
func DiskArgs(bus, id, file, serial string, bootIndex int) ([]string, error) {
	if !slices.Contains(DiskBuses, bus) {
		return nil, fmt.Errorf("disk bus %q: want one of %s", bus, strings.Join(DiskBuses, ", "))
	}
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("disk id %q: want letters, digits, '-' or '_'", id)
	}
	if serial == "" {
		serial = id
	}
	if !serialPattern.MatchString(serial) {
		return nil, fmt.Errorf("disk serial %q: want up to 20 letters, digits, '-' or '_'", serial)
	}
	args := []string{"-drive", "file=" + optValue(file) + ",if=none,id=" + id + ",format=raw"}
	boot := ""
	if bootIndex > 0 {
		boot = ",bootindex=" + strconv.Itoa(bootIndex)
	}
	ctl := id + "-ctl"
	switch bus {
	case DiskVirtio:
		args = append(args, "-device", "virtio-blk-pci,drive="+id+",serial="+serial+boot)
	case DiskNVMe:
		args = append(args, "-device", "nvme,drive="+id+",serial="+serial+boot)
	case DiskAHCI:
		args = append(args, "-device", "ich9-ahci,id="+ctl,
			"-device", "ide-hd,drive="+id+",bus="+ctl+".0,serial="+serial+boot)
	case DiskMegaSAS:
		args = append(args, "-device", "megasas-gen2,id="+ctl,
			"-device", "scsi-hd,drive="+id+",bus="+ctl+".0,serial="+serial+boot)
	case DiskLSISAS:
		args = append(args, "-device", "mptsas1068,id="+ctl,
			"-device", "scsi-hd,drive="+id+",bus="+ctl+".0,serial="+serial+boot)
	case DiskUSB:
		args = append(args, "-device", "qemu-xhci,id="+ctl,
			"-device", "usb-storage,drive="+id+",bus="+ctl+".0,serial="+serial+boot)
	}
	return args, nil
}

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)
	serialPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,20}$`)
	// bridgePattern is a Linux interface name (at most 15 bytes) without
	// anything a shell or QEMU's option syntax would read.
	bridgePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
)

// diskSerial is the serial number of a node's disk: stable per node, 20
// characters at most (NVMe's limit).
func diskSerial(uuid string) string {
	s := strings.ReplaceAll(uuid, "-", "")
	if len(s) > 16 {
		s = s[:16]
	}
	return "RVT" + s
}

// tapName is the name of a node's tap on qemu_bridge: unique per node and
// within the 15 bytes of a Linux interface name.
func tapName(uuid string) string {
	sum := sha256.Sum256([]byte(uuid))
	return "rvt" + hex.EncodeToString(sum[:])[:11]
}
