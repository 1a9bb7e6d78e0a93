package hardware

import (
	"encoding/hex"
	"testing"
)

// vpd83 builds a Device Identification page from designators given as
// (association<<4|type, hex) pairs.
func vpd83(t *testing.T, des ...[2]string) string {
	t.Helper()
	var body []byte
	for _, d := range des {
		b, err := hex.DecodeString(d[1])
		if err != nil {
			t.Fatal(err)
		}
		var at byte
		switch d[0] {
		case "lu-naa":
			at = 0x03
		case "lu-eui":
			at = 0x02
		case "port-naa":
			at = 0x13
		case "lu-t10":
			at = 0x01
		}
		body = append(body, 0x01, at, 0, byte(len(b)))
		body = append(body, b...)
	}
	return string(append([]byte{0, 0x83, byte(len(body) >> 8), byte(len(body))}, body...))
}

// TestIdentityFixtures reads disks on the four buses a server boots from,
// laid out in sysfs as the kernel does, and expects what udev (and so IPA)
// would report.
func TestIdentityFixtures(t *testing.T) {
	fs := newFakeSys(t)
	// NVMe: the controller carries model and serial, the namespace wwid and nsid.
	fs.disk("pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0", "nvme0n1", "259:0", 1953525168, map[string]string{
		"device/model":  "INTEL SSDPE2KX010T8                     ",
		"device/serial": "PHLJ9123004Y1P0FGN  ",
		"wwid":          "eui.01000000010000005cd2e4b5e3b75051",
		"nsid":          "1",
	})
	// SATA through libata (AHCI port 3): VPD 0x80 and 0x83 translated
	// from IDENTIFY, and ata_port's port_no.
	fs.disk("pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0", "sda", "8:0", 937703088, map[string]string{
		"device/vendor":    "ATA     ",
		"device/model":     "SAMSUNG MZ7LH480",
		"device/vpd_pg80":  vpd80("S45PNA0M512345"),
		"device/vpd_pg83":  vpd83(t, [2]string{"lu-t10", "41544120202020205341"}, [2]string{"lu-naa", "5002538e40a1b2c3"}),
		"device/wwid":      "naa.5002538e40a1b2c3",
		"queue/rotational": "0",
	})
	fs.write("sys/class/ata_port/ata3/port_no", "3\n")
	// SAS behind an HBA: a 16-byte NAA (registered extended), the target
	// port's own NAA (association 1) ignored, and the end device's address.
	fs.disk("pci0000:80/0000:80:03.0/0000:86:00.0/host4/port-4:0/end_device-4:0/target4:0:0/4:0:0:0", "sdb", "8:16", 3907029168, map[string]string{
		"device/vendor":    "SEAGATE ",
		"device/model":     "ST2000NM0045    ",
		"device/vpd_pg80":  vpd80("ZC21ABCD0000C9286XYZ"),
		"device/vpd_pg83":  vpd83(t, [2]string{"port-naa", "5000c500a0000001"}, [2]string{"lu-naa", "6000c500a1b2c3d40000000000001234"}),
		"queue/rotational": "1",
	})
	fs.write("sys/class/sas_device/end_device-4:0/sas_address", "0x5000c500a0000001\n")
	// virtio-blk: the serial is the disk's own attribute.
	fs.disk("pci0000:00/0000:00:05.0/virtio2", "vda", "254:0", 41943040, map[string]string{"serial": "rivet-vda"})
	// A USB stick.
	fs.disk("pci0000:00/0000:00:14.0/usb2/2-3/2-3:1.0/host6/target6:0:0/6:0:0:0", "sdc", "8:32", 61440000, map[string]string{
		"device/vendor": "SanDisk ", "device/model": "Cruzer Blade    ", "removable": "1",
	})

	devs, err := Lister{Root: fs.root}.List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]BlockDevice{}
	for _, d := range devs {
		got[d.Name] = d
	}
	cases := []struct {
		name string
		want BlockDevice
	}{
		{"nvme0n1", BlockDevice{Model: "INTEL SSDPE2KX010T8", Serial: "PHLJ9123004Y1P0FGN",
			WWN: "eui.01000000010000005cd2e4b5e3b75051", WWNWithExt: "eui.01000000010000005cd2e4b5e3b75051",
			ByPath: "/dev/disk/by-path/pci-0000:3b:00.0-nvme-1", Tran: "nvme"}},
		{"sda", BlockDevice{Model: "SAMSUNG MZ7LH480", Vendor: "ATA", Serial: "S45PNA0M512345",
			WWN: "0x5002538e40a1b2c3", WWNWithExt: "0x5002538e40a1b2c3", HCTL: "2:0:0:0",
			ByPath: "/dev/disk/by-path/pci-0000:00:17.0-ata-3.0", Tran: "sata"}},
		{"sdb", BlockDevice{Model: "ST2000NM0045", Vendor: "SEAGATE", Serial: "ZC21ABCD0000C9286XYZ",
			WWN: "0x6000c500a1b2c3d4", WWNWithExt: "0x6000c500a1b2c3d40000000000001234", WWNVendExt: "0x0000000000001234",
			HCTL: "4:0:0:0", ByPath: "/dev/disk/by-path/pci-0000:86:00.0-sas-0x5000c500a0000001-lun-0", Tran: "sas"}},
		{"vda", BlockDevice{Serial: "rivet-vda", ByPath: "/dev/disk/by-path/pci-0000:00:05.0", Tran: "virtio"}},
		{"sdc", BlockDevice{Model: "Cruzer Blade", Vendor: "SanDisk", HCTL: "6:0:0:0",
			ByPath: "/dev/disk/by-path/pci-0000:00:14.0-usb-0:3:1.0-scsi-0:0:0:0", Tran: "usb"}},
	}
	for _, c := range cases {
		d, ok := got[c.name]
		if !ok {
			t.Errorf("%s not listed", c.name)
			continue
		}
		w := c.want
		if d.Model != w.Model || d.Vendor != w.Vendor || d.Serial != w.Serial || d.WWN != w.WWN ||
			d.WWNWithExt != w.WWNWithExt || d.WWNVendExt != w.WWNVendExt || d.HCTL != w.HCTL ||
			d.ByPath != w.ByPath || d.Tran != w.Tran {
			t.Errorf("%s:\n got model=%q vendor=%q serial=%q wwn=%q ext=%q vext=%q hctl=%q by_path=%q tran=%q\nwant model=%q vendor=%q serial=%q wwn=%q ext=%q vext=%q hctl=%q by_path=%q tran=%q",
				c.name, d.Model, d.Vendor, d.Serial, d.WWN, d.WWNWithExt, d.WWNVendExt, d.HCTL, d.ByPath, d.Tran,
				w.Model, w.Vendor, w.Serial, w.WWN, w.WWNWithExt, w.WWNVendExt, w.HCTL, w.ByPath, w.Tran)
		}
	}
	if !got["sdc"].Removable || !got["sdb"].Rotational {
		t.Errorf("removable/rotational flags: sdc %v sdb %v", got["sdc"].Removable, got["sdb"].Rotational)
	}
	// Root device hints see the same values.
	h, err := ParseHints(map[string]any{"wwn_with_extension": "0x6000C500A1B2C3D40000000000001234", "by_path": "pci-0000:86:00.0-sas-0x5000c500a0000001-lun-0"})
	if err != nil {
		t.Fatal(err)
	}
	if m := FindDevices(devs, h); len(m) != 1 || m[0].Name != "sdb" {
		t.Errorf("hints matched %v", m)
	}
}

func TestParseVPD83(t *testing.T) {
	if id := parseVPD83([]byte{0, 0x80, 0, 0}); id.wwn != "" {
		t.Errorf("page 0x80 parsed as 0x83: %+v", id)
	}
	// EUI-64 only.
	id := parseVPD83([]byte(vpd83(t, [2]string{"lu-eui", "0025388b71b2c3d4"})))
	if id.wwn != "0x0025388b71b2c3d4" || id.vendorExt != "" {
		t.Errorf("eui: %+v", id)
	}
	// A truncated descriptor stops parsing without panicking.
	if id := parseVPD83([]byte{0, 0x83, 0, 8, 1, 3, 0, 16, 0x50}); id.wwn != "" {
		t.Errorf("truncated: %+v", id)
	}
	if id := wwidID("t10.ATA     QEMU HARDDISK   QM00001", false); id.wwn != "" {
		t.Errorf("t10 vendor id taken as WWN: %+v", id)
	}
}
