package hardware

import (
	"os"
	"path/filepath"
	"testing"
)

func TestListInterfaces(t *testing.T) {
	fs := newFakeSys(t)
	fs.write("sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/address", "52:54:00:12:34:56\n")
	fs.write("sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/carrier", "1\n")
	fs.write("sys/devices/virtual/net/lo/address", "00:00:00:00:00:00\n")
	fs.write("sys/devices/virtual/net/br0/address", "aa:bb:cc:dd:ee:ff\n")
	fs.write("sys/bus/virtio/drivers/virtio_net/.keep", "")
	for name, target := range map[string]string{
		"eth0": "../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0",
		"lo":   "../../devices/virtual/net/lo",
		"br0":  "../../devices/virtual/net/br0",
	} {
		link := filepath.Join(fs.root, "sys/class/net", name)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	// Only eth0 has a device link, like a real NIC.
	dev := filepath.Join(fs.root, "sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/device")
	if err := os.Symlink("../../../virtio2", dev); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../bus/virtio/drivers/virtio_net", filepath.Join(fs.root, "sys/devices/pci0000:00/0000:00:03.0/virtio2/driver")); err != nil {
		t.Fatal(err)
	}
	ifs, err := ListInterfaces(fs.root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Name != "eth0" || ifs[0].MACAddress != "52:54:00:12:34:56" || !ifs[0].HasCarrier || ifs[0].Driver != "virtio_net" {
		t.Fatalf("interfaces = %+v", ifs)
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"01-52-54-00-12-34-56": "52:54:00:12:34:56",
		"52:54:00:12:34:56":    "52:54:00:12:34:56",
		"52-54-00-AB-34-56":    "52:54:00:ab:34:56",
	} {
		got, err := NormalizeMAC(in)
		if err != nil || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeMAC("nonsense"); err == nil {
		t.Error("NormalizeMAC accepted nonsense")
	}
}
