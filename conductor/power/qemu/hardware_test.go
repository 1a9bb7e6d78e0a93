package qemu

import (
	"reflect"
	"strings"
	"testing"
)

func TestNICArgs(t *testing.T) {
	for _, c := range []struct {
		model string
		rom   bool
		boot  int
		want  string
	}{
		{"virtio", false, 0, "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,romfile="},
		{"e1000e", true, 1, "e1000e,netdev=net0,mac=52:54:00:12:34:56,bootindex=1"},
		{"e1000", true, 0, "e1000,netdev=net0,mac=52:54:00:12:34:56"},
		{"vmxnet3", false, 2, "vmxnet3,netdev=net0,mac=52:54:00:12:34:56,romfile=,bootindex=2"},
		{"rtl8139", false, 0, "rtl8139,netdev=net0,mac=52:54:00:12:34:56,romfile="},
	} {
		got, err := NICArgs(c.model, "net0", testMAC, c.rom, c.boot)
		if err != nil || !reflect.DeepEqual(got, []string{"-device", c.want}) {
			t.Errorf("NICArgs(%s) = %q, %v; want -device %s", c.model, got, err, c.want)
		}
	}
	if _, err := NICArgs("ne2k_pci", "net0", testMAC, false, 0); err == nil {
		t.Error("unknown model: no error")
	}
}

func TestDiskArgs(t *testing.T) {
	drive := "file=/d/a,,b.raw,if=none,id=disk0,format=raw"
	for bus, want := range map[string][]string{
		DiskVirtio:  {"-drive", drive, "-device", "virtio-blk-pci,drive=disk0,serial=S1,bootindex=1"},
		DiskNVMe:    {"-drive", drive, "-device", "nvme,drive=disk0,serial=S1,bootindex=1"},
		DiskAHCI:    {"-drive", drive, "-device", "ich9-ahci,id=disk0-ctl", "-device", "ide-hd,drive=disk0,bus=disk0-ctl.0,serial=S1,bootindex=1"},
		DiskMegaSAS: {"-drive", drive, "-device", "megasas-gen2,id=disk0-ctl", "-device", "scsi-hd,drive=disk0,bus=disk0-ctl.0,serial=S1,bootindex=1"},
		DiskLSISAS:  {"-drive", drive, "-device", "mptsas1068,id=disk0-ctl", "-device", "scsi-hd,drive=disk0,bus=disk0-ctl.0,serial=S1,bootindex=1"},
		DiskUSB:     {"-drive", drive, "-device", "qemu-xhci,id=disk0-ctl", "-device", "usb-storage,drive=disk0,bus=disk0-ctl.0,serial=S1,bootindex=1"},
	} {
		got, err := DiskArgs(bus, "disk0", "/d/a,b.raw", "S1", 1)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("DiskArgs(%s) = %q, %v\nwant %q", bus, got, err, want)
		}
	}
	got, err := DiskArgs(DiskNVMe, "nv1", "/d/x.raw", "", 0)
	if err != nil || got[3] != "nvme,drive=nv1,serial=nv1" {
		t.Errorf("no serial, no boot index: %q, %v", got, err)
	}
	for name, args := range map[string][4]string{
		"bus":           {"scsi", "disk0", "/d", "S"},
		"id with comma": {DiskNVMe, "d,0", "/d", "S"},
		"id digit":      {DiskNVMe, "0d", "/d", "S"},
		"serial long":   {DiskNVMe, "d0", "/d", strings.Repeat("s", 21)},
		"serial comma":  {DiskNVMe, "d0", "/d", "a,b"},
	} {
		if _, err := DiskArgs(args[0], args[1], args[2], args[3], 0); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestNames(t *testing.T) {
	const id = "0b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10"
	if s := diskSerial(id); s != "RVT0b2c8a527f0e4c1e" || len(s) > 20 {
		t.Errorf("diskSerial = %q", s)
	}
	if s := diskSerial("n1"); s != "RVTn1" {
		t.Errorf("diskSerial(n1) = %q", s)
	}
	a, b := tapName(id), tapName("0b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a11")
	if a == b || len(a) > 15 || !strings.HasPrefix(a, "rvt") || !bridgePattern.MatchString(a) {
		t.Errorf("tapName = %q, %q", a, b)
	}
}
