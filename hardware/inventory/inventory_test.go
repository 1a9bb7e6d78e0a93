package inventory

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/inventory"
	"github.com/jaypipes/ghw/pkg/snapshot"
	"github.com/rivetmetal/rivet/wire"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// tree writes files (path → content) and symlinks ("->" prefix) under root.
func tree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fixtureMachine is a two-socket server with an NVMe, a SATA and a SAS disk
// and one NIC, in the sysfs/procfs layout the kernel uses.
func fixtureMachine(t *testing.T) string {
	root := t.TempDir()
	cpuinfo := ""
	files := map[string]string{
		"proc/meminfo":                                         "MemTotal:       263856116 kB\nMemFree:        260000000 kB\nHugepagesize:       2048 kB\n",
		"proc/sys/kernel/hostname":                             "node-17\n",
		"sys/devices/system/memory/block_size_bytes":           "8000000\n", // 128 MiB
		"sys/class/dmi/id/product_name":                        "PowerEdge R650\n",
		"sys/class/dmi/id/product_serial":                      "7XK2L93\n",
		"sys/class/dmi/id/sys_vendor":                          "Dell Inc.\n",
		"sys/class/dmi/id/bios_vendor":                         "Dell Inc.\n",
		"sys/class/dmi/id/bios_version":                        "1.9.2\n",
		"sys/class/dmi/id/bios_date":                           "03/02/2023\n",
		"sys/firmware/efi/fw_platform_size":                    "64\n",
		"sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "3500000\n",
		// NIC: an Intel X710 port.
		"sys/devices/pci0000:17/0000:17:02.0/0000:18:00.0/net/ens1f0/address": "3c:fd:fe:a1:b2:c3\n",
		"sys/devices/pci0000:17/0000:17:02.0/0000:18:00.0/net/ens1f0/carrier": "1\n",
		"sys/devices/pci0000:17/0000:17:02.0/0000:18:00.0/net/ens1f0/speed":   "10000\n",
		"sys/devices/pci0000:17/0000:17:02.0/0000:18:00.0/net/ens1f0/device":  "->../../../0000:18:00.0",
		"sys/devices/pci0000:17/0000:17:02.0/0000:18:00.0/vendor":             "0x8086\n",
		"sys/devices/pci0000:17/0000:17:02.0/0000:18:00.0/device":             "0x1572\n",
		"sys/devices/pci0000:17/0000:17:02.0/0000:18:00.0/driver":             "->../../../../bus/pci/drivers/i40e",
		"sys/bus/pci/drivers/i40e/.keep":                                      "",
		"sys/class/net/ens1f0":                                                "->../../devices/pci0000:17/0000:17:02.0/0000:18:00.0/net/ens1f0",
		"sys/devices/virtual/net/lo/address":                                  "00:00:00:00:00:00\n",
		"sys/class/net/lo":                                                    "->../../devices/virtual/net/lo",
		// Disks.
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/size":                     "1953525168\n",
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/dev":                      "259:0\n",
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/wwid":                     "eui.01000000010000005cd2e4b5e3b75051\n",
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/nsid":                     "1\n",
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/queue/rotational":         "0\n",
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/queue/logical_block_size": "512\n",
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/model":                            "Dell Ent NVMe P5600 MU U.2 1.6TB\n",
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/serial":                           "PHAB1234005G1P6AGN  \n",
		"sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1/device":                   "->../../nvme0",
		"sys/class/block/nvme0n1": "->../../devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1",
		"sys/block/nvme0n1":       "->../devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1",
		"sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda/size":             "937703088\n",
		"sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda/dev":              "8:0\n",
		"sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda/queue/rotational": "0\n",
		"sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda/device":           "->../../../2:0:0:0",
		"sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/vendor":                     "ATA     \n",
		"sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/model":                      "MZ7LH480HAHQ0D3 \n",
		"sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/wwid":                       "naa.5002538e40a1b2c3\n",
		"sys/class/block/sda":             "->../../devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda",
		"sys/block/sda":                   "->../devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda",
		"sys/class/ata_port/ata3/port_no": "3\n",
	}
	for cpu := 0; cpu < 4; cpu++ {
		pkg := cpu / 2
		cpuinfo += "processor\t: " + itoa(cpu) + "\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338N CPU @ 2.20GHz\n" +
			"cpu MHz\t\t: 2200.000\nphysical id\t: " + itoa(pkg) + "\ncore id\t\t: " + itoa(cpu%2) + "\nflags\t\t: fpu vme sse2 vmx avx512f\n\n"
		base := "sys/devices/system/cpu/cpu" + itoa(cpu) + "/topology/"
		files[base+"physical_package_id"] = itoa(pkg) + "\n"
		files[base+"core_id"] = itoa(cpu%2) + "\n"
		files[base+"thread_siblings_list"] = itoa(cpu) + "\n"
		files["sys/devices/system/cpu/cpu"+itoa(cpu)+"/online"] = "1\n"
	}
	files["proc/cpuinfo"] = cpuinfo
	for m := 0; m < 2048; m++ { // 2048 × 128 MiB = 256 GiB
		files["sys/devices/system/memory/memory"+itoa(m)+"/state"] = "online\n"
	}
	tree(t, root, files)
	return root
}

func itoa(n int) string { return strconv.Itoa(n) }

// decodeOracle decodes our JSON with gophercloud's inventory types, the
// client-side definition of IPA's shape.
func decodeOracle(t *testing.T, inv *wire.Inventory) inventory.InventoryType {
	t.Helper()
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	var got inventory.InventoryType
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("gophercloud cannot decode the inventory: %v\n%s", err, b)
	}
	return got
}

// TestCollectFromGhwSnapshot packs the fixture machine into a ghw snapshot,
// unpacks it with ghw's own code and collects the inventory from it.
func TestCollectFromGhwSnapshot(t *testing.T) {
	src := fixtureMachine(t)
	snap := filepath.Join(t.TempDir(), "machine.tar.gz")
	if err := snapshot.PackFrom(context.Background(), snap, src); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := snapshot.UnpackInto(snap, root); err != nil {
		t.Fatal(err)
	}
	inv, err := Collect(context.Background(), Options{Root: root, BootIF: "3c:fd:fe:a1:b2:c3", Logger: quiet(),
		Addresses: func(string) (string, string) { return "192.0.2.17", "" }})
	if err != nil {
		t.Fatal(err)
	}
	got := decodeOracle(t, inv)
	if got.CPU.Count != 4 || got.CPU.ModelName != "Intel(R) Xeon(R) Gold 6338N CPU @ 2.20GHz" || got.CPU.Architecture != architecture() ||
		got.CPU.Frequency != "3500.0000" || inv.CPU.SocketCount != 2 || !contains(got.CPU.Flags, "avx512f") {
		t.Errorf("cpu %+v (sockets %d)", got.CPU, inv.CPU.SocketCount)
	}
	if got.Memory.Total != 263856116*1024 || got.Memory.PhysicalMb != 256*1024 {
		t.Errorf("memory %+v", got.Memory)
	}
	if got.SystemVendor.ProductName != "PowerEdge R650" || got.SystemVendor.SerialNumber != "7XK2L93" || got.SystemVendor.Manufacturer != "Dell Inc." ||
		got.SystemVendor.Firmware != (inventory.SystemFirmwareType{Vendor: "Dell Inc.", Version: "1.9.2", BuildDate: "03/02/2023"}) {
		t.Errorf("system vendor %+v", got.SystemVendor)
	}
	if got.Boot.CurrentBootMode != "uefi" || got.Boot.PXEInterface != "3c:fd:fe:a1:b2:c3" || got.Hostname != "node-17" {
		t.Errorf("boot %+v hostname %q", got.Boot, got.Hostname)
	}
	if len(got.Interfaces) != 1 {
		t.Fatalf("interfaces %+v", got.Interfaces)
	}
	nic := got.Interfaces[0]
	if nic.Name != "ens1f0" || nic.MACAddress != "3c:fd:fe:a1:b2:c3" || !nic.HasCarrier || nic.SpeedMbps != 10000 || nic.Vendor != "0x8086" ||
		nic.Product != "0x1572" || nic.PCIAddress != "0000:18:00.0" || nic.IPV4Address != "192.0.2.17" || inv.Interfaces[0].Driver != "i40e" {
		t.Errorf("nic %+v driver %q", nic, inv.Interfaces[0].Driver)
	}
	disks := map[string]inventory.RootDiskType{}
	for _, d := range got.Disks {
		disks[d.Name] = d
	}
	if d := disks["/dev/nvme0n1"]; d.Model != "Dell Ent NVMe P5600 MU U.2 1.6TB" || d.Serial != "PHAB1234005G1P6AGN" ||
		d.Wwn != "eui.01000000010000005cd2e4b5e3b75051" || d.ByPath != "/dev/disk/by-path/pci-0000:3b:00.0-nvme-1" || d.Size != 1953525168*512 {
		t.Errorf("nvme %+v", d)
	}
	if d := disks["/dev/sda"]; d.Model != "MZ7LH480HAHQ0D3" || d.Vendor != "ATA" || d.Wwn != "0x5002538e40a1b2c3" || d.Hctl != "2:0:0:0" ||
		d.ByPath != "/dev/disk/by-path/pci-0000:00:17.0-ata-3.0" || d.Rotational {
		t.Errorf("sda %+v", d)
	}
	// The keys IPA sends beyond gophercloud's types are present too.
	b, _ := json.Marshal(inv)
	for _, k := range []string{`"socket_count":2`, `"tran":"nvme"`, `"logical_sectors":512`, `"bmc_address":"0.0.0.0"`, `"bmc_v6address":"::/0"`, `"lldp":null`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("inventory JSON lacks %s", k)
		}
	}
}

// TestCollectLive reads this machine, read-only, and checks the result
// against what Go itself knows; it also measures how long it takes.
func TestCollectLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the inventory reads Linux sysfs")
	}
	start := time.Now()
	inv, err := Collect(context.Background(), Options{Logger: quiet()})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeOracle(t, inv)
	if got.CPU.Count != runtime.NumCPU() {
		t.Errorf("cpu count %d, runtime.NumCPU %d", got.CPU.Count, runtime.NumCPU())
	}
	if got.Memory.Total <= 0 || got.Memory.PhysicalMb <= 0 {
		t.Errorf("memory %+v", got.Memory)
	}
	h, _ := os.Hostname()
	if got.Hostname != h {
		t.Errorf("hostname %q, want %q", got.Hostname, h)
	}
	t.Logf("live inventory in %v: %d CPUs, %d MiB, %d disks, %d NICs", took, got.CPU.Count, got.Memory.PhysicalMb, len(got.Disks), len(got.Interfaces))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// lanBMC answers Get LAN Configuration Parameters for channel 1 only.
type lanBMC struct{}

func (lanBMC) Exchange(_ context.Context, netFn, cmd byte, data []byte) ([]byte, error) {
	if netFn != 0x0c || cmd != 0x02 || len(data) < 2 || data[0] != 1 {
		return []byte{0xcc}, nil
	}
	switch data[1] {
	case 3:
		return []byte{0, 0x11, 192, 0, 2, 99}, nil
	case 5:
		return []byte{0, 0x11, 0x52, 0x54, 0, 0xb3, 0xc0, 0x01}, nil
	}
	return []byte{0x80}, nil
}

func TestCollectReadsBMC(t *testing.T) {
	inv, err := Collect(context.Background(), Options{Root: fixtureMachine(t), Logger: quiet(), BMC: lanBMC{}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(inv)
	for _, k := range []string{`"bmc_address":"192.0.2.99"`, `"bmc_mac":"52:54:00:b3:c0:01"`, `"bmc_v6address":"::/0"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("inventory JSON lacks %s", k)
		}
	}
}
