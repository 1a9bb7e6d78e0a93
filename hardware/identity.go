package hardware

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// What udev would know about a disk, read from sysfs instead: a u-root
// ramdisk has no udev database, and ghw reads model, serial, WWN and
// by-path only from there. The rules follow udev's scsi_id (VPD page 0x83)
// and path_id, for the buses a server boots from: NVMe, SATA (libata), SAS,
// virtio and USB.

// deviceID holds the WWN forms udev derives from VPD page 0x83.
type deviceID struct {
	wwn, withExt, vendorExt string
}

// parseVPD83 decodes the Device Identification VPD page (0x83) the way
// udev's scsi_id fills ID_WWN, ID_WWN_WITH_EXTENSION and
// ID_WWN_VENDOR_EXTENSION: the logical unit's NAA designator (else its
// EUI-64) in lowercase hex with a "0x" prefix; for a 16-byte NAA the first
// 8 bytes are the WWN and the last 8 the vendor extension.
func parseVPD83(b []byte) deviceID {
	if len(b) < 4 || b[1] != 0x83 {
		return deviceID{}
	}
	n := int(b[2])<<8 | int(b[3])
	body := b[4:]
	if n < len(body) {
		body = body[:n]
	}
	var naa, eui []byte
	for len(body) >= 4 {
		l := int(body[3])
		if 4+l > len(body) {
			break
		}
		assoc := (body[1] >> 4) & 0x3
		typ := body[1] & 0xf
		des := body[4 : 4+l]
		if assoc == 0 { // the logical unit itself, not its port or target
			switch {
			case typ == 3 && naa == nil && (l == 8 || l == 16):
				naa = des
			case typ == 2 && eui == nil && (l == 8 || l == 12 || l == 16):
				eui = des
			}
		}
		body = body[4+l:]
	}
	id := naa
	if id == nil {
		id = eui
	}
	if id == nil {
		return deviceID{}
	}
	h := hex.EncodeToString(id)
	out := deviceID{wwn: "0x" + h[:16], withExt: "0x" + h}
	if len(h) > 16 && naa != nil {
		out.vendorExt = "0x" + h[16:]
	}
	return out
}

// wwidID turns the kernel's wwid attribute into udev's ID_WWN forms:
// "naa.<hex>" becomes 0x<hex> (split like VPD 0x83), NVMe namespace IDs
// ("eui.…", "nvme.…", "uuid.…") are kept as they are, as udev keeps them,
// and vendor strings ("t10.ATA …") are no WWN.
func wwidID(s string, nvme bool) deviceID {
	s = strings.TrimSpace(s)
	if nvme {
		return deviceID{wwn: s, withExt: s}
	}
	h, ok := strings.CutPrefix(s, "naa.")
	if !ok {
		if h, ok = strings.CutPrefix(s, "eui."); !ok {
			return deviceID{}
		}
	}
	h = strings.ToLower(h)
	if _, err := hex.DecodeString(h); err != nil || len(h) < 16 {
		return deviceID{}
	}
	out := deviceID{wwn: "0x" + h[:16], withExt: "0x" + h}
	if len(h) > 16 {
		out.vendorExt = "0x" + h[16:]
	}
	return out
}

var (
	pciAddr    = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	ataPort    = regexp.MustCompile(`^ata(\d+)$`)
	sasEnd     = regexp.MustCompile(`^end_device-\d+:\d+(:\d+)*$`)
	fcRport    = regexp.MustCompile(`^rport-\d+:\d+-\d+$`)
	iscsiSess  = regexp.MustCompile(`^session\d+$`)
	usbIface   = regexp.MustCompile(`^\d+-(\d+(?:\.\d+)*):(\d+\.\d+)$`)
	scsiHCTL   = regexp.MustCompile(`^\d+:(\d+):(\d+):(\d+)$`)
	nvmeNSName = regexp.MustCompile(`^nvme\d+n(\d+)$`)
)

// busInfo derives the by-path link name and the transport (lsblk's TRAN)
// of a disk from its resolved sysfs path (elements after /sys/devices).
type busInfo struct {
	byPath string
	tran   string
}

// readBusInfo reads what path_id needs besides the path: ATA port numbers,
// SAS addresses, FC port names and NVMe namespace IDs, under root.
func readBusInfo(root, name, sysDir, target string) busInfo {
	elems := strings.Split(filepath.ToSlash(target), "/")
	var pci string
	for _, e := range elems {
		if pciAddr.MatchString(e) {
			pci = e // the PCI function closest to the disk wins
		}
	}
	var bi busInfo
	var tail string
	switch {
	case strings.HasPrefix(name, "nvme"):
		bi.tran = "nvme"
		nsid := readString(filepath.Join(sysDir, "nsid"))
		if nsid == "" {
			if m := nvmeNSName.FindStringSubmatch(name); m != nil {
				nsid = m[1]
			}
		}
		if nsid != "" {
			tail = "nvme-" + nsid
		}
	case strings.HasPrefix(name, "vd"):
		bi.tran = "virtio"
	default:
		var hctl []string
		for _, e := range elems {
			if m := scsiHCTL.FindStringSubmatch(e); m != nil {
				hctl = m
			}
		}
		for i, e := range elems {
			switch {
			case ataPort.MatchString(e):
				bi.tran = "sata"
				port := readString(filepath.Join(root, "sys/class/ata_port", e, "port_no"))
				if port == "" {
					port = ataPort.FindStringSubmatch(e)[1]
				}
				tail = "ata-" + port + ".0"
			case sasEnd.MatchString(e):
				bi.tran = "sas"
				addr := readString(filepath.Join(root, "sys/class/sas_device", e, "sas_address"))
				if addr != "" && hctl != nil {
					tail = "sas-" + addr + "-lun-" + hctl[3]
				}
			case fcRport.MatchString(e):
				bi.tran = "fc"
				wwpn := readString(filepath.Join(root, "sys/class/fc_remote_ports", e, "port_name"))
				if wwpn != "" && hctl != nil {
					tail = "fc-" + wwpn + "-lun-" + hctl[3]
				}
			case iscsiSess.MatchString(e):
				bi.tran = "iscsi"
			case usbIface.MatchString(e) && i > 0:
				bi.tran = "usb"
				m := usbIface.FindStringSubmatch(e)
				tail = "usb-0:" + m[1] + ":" + m[2]
				if hctl != nil {
					tail += "-scsi-0:" + hctl[1] + ":" + hctl[2] + ":" + hctl[3]
				}
			}
			if tail != "" || bi.tran != "" {
				break
			}
		}
		if bi.tran == "" && hctl != nil {
			tail = "scsi-0:" + hctl[1] + ":" + hctl[2] + ":" + hctl[3]
		}
	}
	if pci == "" || bi.tran == "iscsi" {
		return bi // platform devices and iSCSI sessions: no by-path here
	}
	link := "pci-" + pci
	if tail != "" {
		link += "-" + tail
	}
	bi.byPath = "/dev/disk/by-path/" + link
	return bi
}

// readIdentity fills model, vendor, serial, the WWN forms, by-path, HCTL
// and transport from sysfs.
func readIdentity(root, name, sysDir string, d *BlockDevice) {
	dev := filepath.Join(sysDir, "device")
	nvme := strings.HasPrefix(name, "nvme")
	d.Model = firstNonEmpty(readString(filepath.Join(dev, "model")), readString(filepath.Join(sysDir, "model")))
	d.Vendor = readString(filepath.Join(dev, "vendor"))
	d.Serial = firstNonEmpty(
		readString(filepath.Join(dev, "serial")),    // NVMe controller, some SCSI
		readString(filepath.Join(sysDir, "serial")), // virtio-blk
		vpdSerial(filepath.Join(dev, "vpd_pg80")),   // SCSI and SATA (libata)
	)
	var id deviceID
	if !nvme {
		if b, err := os.ReadFile(filepath.Join(dev, "vpd_pg83")); err == nil {
			id = parseVPD83(b)
		}
	}
	if id.wwn == "" {
		id = wwidID(firstNonEmpty(readString(filepath.Join(sysDir, "wwid")), readString(filepath.Join(dev, "wwid"))), nvme)
	}
	d.WWN, d.WWNWithExt, d.WWNVendExt = id.wwn, id.withExt, id.vendorExt
	if target, err := os.Readlink(filepath.Join(root, "sys/class/block", name)); err == nil {
		d.HCTL = hctlFromPath(target)
		bi := readBusInfo(root, name, sysDir, target)
		d.ByPath, d.Tran = bi.byPath, bi.tran
	}
}
