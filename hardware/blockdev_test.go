package hardware

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rivetmetal/rivet/internal/loopdev"
)

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }

// vpd80 builds a unit serial number VPD page.
func vpd80(serial string) string {
	return string([]byte{0, 0x80, 0, byte(len(serial))}) + serial
}

func standardSys(t *testing.T) *fakeSys {
	fs := newFakeSys(t)
	nvme := fs.disk("pci0000:00/0000:00:04.0/nvme/nvme0", "nvme0n1", "259:0", 1000215216, map[string]string{
		"device/model":  "Samsung SSD 970 EVO Plus 500GB",
		"device/serial": "S4EVNF0M123456  ",
		"wwid":          "eui.0025388b71b2c3d4",
	})
	_ = nvme
	sda := fs.disk("pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0", "sda", "8:0", 3907029168, map[string]string{
		"device/model":     "ST2000DM008-2FR1",
		"device/vendor":    "ATA",
		"device/vpd_pg80":  vpd80("ZFL1ABCD"),
		"device/wwid":      "naa.5000c500a1b2c3d4",
		"queue/rotational": "1",
	})
	fs.partition(sda, "sda1", "8:1", 1, 2048, 1048576)
	fs.partition(sda, "sda2", "8:2", 2, 1050624, 2097152)
	fs.disk("pci0000:00/0000:00:05.0/virtio3", "vda", "254:0", 8388608, map[string]string{
		"serial": "rivet-vda",
	})
	fs.disk("virtual", "loop0", "7:0", 2097152, nil)
	fs.disk("virtual", "loop1", "7:1", 0, nil)
	fs.disk("virtual", "dm-0", "253:0", 2097152, nil)
	return fs
}

func TestListerReadsSysfs(t *testing.T) {
	fs := standardSys(t)
	devs, err := Lister{Root: fs.root}.List()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, d := range devs {
		names = append(names, d.Name)
	}
	if got, want := names, []string{"nvme0n1", "sda", "vda"}; !equal(got, want) {
		t.Fatalf("devices = %v, want %v (loop and dm excluded without an allow list)", got, want)
	}
	nvme, sda, vda := devs[0], devs[1], devs[2]
	if nvme.Path != "/dev/nvme0n1" || nvme.Size != 1000215216*512 || nvme.Serial != "S4EVNF0M123456" ||
		nvme.Model != "Samsung SSD 970 EVO Plus 500GB" || nvme.WWN != "eui.0025388b71b2c3d4" || nvme.Tran != "nvme" {
		t.Errorf("nvme = %+v", nvme)
	}
	if nvme.Rotational || nvme.LogicalSectorSize != 512 || nvme.PhysicalSectorSize != 4096 {
		t.Errorf("nvme queue attrs = %+v", nvme)
	}
	if sda.Serial != "ZFL1ABCD" || sda.Vendor != "ATA" || !sda.Rotational || sda.HCTL != "0:0:0:0" || sda.WWN != "0x5000c500a1b2c3d4" {
		t.Errorf("sda = %+v", sda)
	}
	if len(sda.Partitions) != 2 || sda.Partitions[0].Path != "/dev/sda1" || sda.Partitions[1].Start != 1050624*512 ||
		sda.Partitions[1].Major != 8 || sda.Partitions[1].Minor != 2 {
		t.Errorf("sda partitions = %+v", sda.Partitions)
	}
	if vda.Serial != "rivet-vda" || vda.Tran != "virtio" || vda.Major != 254 {
		t.Errorf("vda = %+v", vda)
	}
}

func TestListerAllowListIsTheOnlyWayToLoopDevices(t *testing.T) {
	fs := standardSys(t)
	devs, err := Lister{Root: fs.root, Allow: []string{"/dev/loop0", "/dev/loop1"}}.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Path != "/dev/loop0" {
		t.Fatalf("allow list result = %+v, want only /dev/loop0 (loop1 has size 0)", devs)
	}
	if _, err := (Lister{Root: fs.root, Allow: []string{"/dev/loop0"}}).Get("/dev/sda"); !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("Get of a device outside the allow list: %v, want ErrDeviceNotFound", err)
	}
}

func TestListerRealLoopDevice(t *testing.T) {
	loop := loopdev.New(t, 5*GiB)
	devs, err := Lister{Allow: []string{loop.Path}}.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Path != loop.Path || devs[0].Size != 5*GiB {
		t.Fatalf("List with allow %s = %+v", loop.Path, devs)
	}
	all, err := Lister{}.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		if d.Path == loop.Path {
			t.Fatalf("loop device %s listed without an allow list", loop.Path)
		}
	}
}

func TestListerMissingSysfs(t *testing.T) {
	if _, err := (Lister{Root: filepath.Join(t.TempDir(), "nope")}).List(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("List on a missing root: %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
