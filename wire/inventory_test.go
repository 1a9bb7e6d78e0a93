package wire

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/inventory"
)

// ipaInventory is an inventory in the shape IPA's list_hardware_info gives
// it (contract §5.1), with every key the agent sends and the values a real
// server has: an LLDP list, a BMC with a MAC, an InfiniBand client id.
const ipaInventory = `{
  "interfaces": [
    {"name": "eno1", "mac_address": "3c:fd:fe:a1:b2:c3", "ipv4_address": "192.0.2.17", "ipv6_address": "2001:db8::17",
     "has_carrier": true, "lldp": [[1, "04b4969130faf8"], [2, "05457468657265746e31"]], "vendor": "0x8086", "product": "0x1572",
     "client_id": null, "biosdevname": "em1", "speed_mbps": 10000, "pci_address": "0000:18:00.0", "driver": "i40e"},
    {"name": "ib0", "mac_address": "a0:36:9f:00:00:01", "ipv4_address": "", "ipv6_address": "", "has_carrier": false, "lldp": null,
     "vendor": "0x15b3", "product": "0x1017", "client_id": "ff:00:00:00:00:00:02:00:00:02:c9:00:a0:36:9f:00:00:01",
     "biosdevname": null, "speed_mbps": 0, "pci_address": "0000:5e:00.0", "driver": "mlx5_core"}
  ],
  "cpu": {"model_name": "Intel(R) Xeon(R) Gold 6338N CPU @ 2.20GHz", "frequency": "3500.0000", "count": 64,
          "architecture": "x86_64", "flags": ["fpu", "vmx", "avx512f"], "socket_count": 2},
  "disks": [
    {"name": "/dev/sda", "model": "MZ7LH480HAHQ0D3", "vendor": "ATA", "serial": "S45PNA0M123456", "wwn": "0x5002538e40a1b2c3",
     "wwn_with_extension": "0x5002538e40a1b2c3", "wwn_vendor_extension": "", "hctl": "2:0:0:0",
     "by_path": "/dev/disk/by-path/pci-0000:00:17.0-ata-3.0", "size": 480103981056, "rotational": false,
     "logical_sectors": 512, "physical_sectors": 4096, "tran": "sata"}
  ],
  "memory": {"total": 270188662784, "physical_mb": 262144},
  "bmc_address": "192.0.2.200",
  "bmc_v6address": "::/0",
  "bmc_mac": "3c:fd:fe:a1:b2:00",
  "system_vendor": {"product_name": "PowerEdge R650", "serial_number": "7XK2L93", "manufacturer": "Dell Inc.",
                    "firmware": {"vendor": "Dell Inc.", "version": "1.9.2", "build_date": "03/02/2023"}},
  "boot": {"current_boot_mode": "uefi", "pxe_interface": "3c:fd:fe:a1:b2:c3"},
  "hostname": "node-17"
}`

// TestInventoryRoundTrip decodes an IPA-shaped inventory into the types
// and encodes it again: every key and value comes back, nothing is added.
func TestInventoryRoundTrip(t *testing.T) {
	var inv Inventory
	if err := json.Unmarshal([]byte(ipaInventory), &inv); err != nil {
		t.Fatal(err)
	}
	if len(inv.Interfaces) != 2 || inv.Interfaces[1].ClientID == nil || inv.Interfaces[0].BIOSDevName == nil ||
		inv.Disks[0].PhysicalSectors != 4096 || inv.BMCMAC == nil || inv.SystemVendor.Firmware.Version != "1.9.2" {
		t.Fatalf("decoded %+v", inv)
	}
	out, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	json.Unmarshal([]byte(ipaInventory), &want)
	json.Unmarshal(out, &got)
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("round trip changed the inventory:\nwant %v\n got %v", want, got)
	}
}

// TestInventoryDecodesAsAClientReadsIt decodes what the types encode with
// gophercloud's inventory types, the client-side definition of IPA's
// shape that the conductor's users read it with.
func TestInventoryDecodesAsAClientReadsIt(t *testing.T) {
	var inv Inventory
	json.Unmarshal([]byte(ipaInventory), &inv)
	b, _ := json.Marshal(inv)
	var gc inventory.InventoryType
	if err := json.Unmarshal(b, &gc); err != nil {
		t.Fatalf("gophercloud cannot decode the inventory: %v", err)
	}
	if gc.CPU.Count != 64 || gc.Disks[0].Name != "/dev/sda" || gc.Interfaces[0].MACAddress != "3c:fd:fe:a1:b2:c3" ||
		gc.Memory.PhysicalMb != 262144 || gc.BmcAddress != "192.0.2.200" || gc.Boot.CurrentBootMode != "uefi" {
		t.Fatalf("gophercloud read %+v", gc)
	}
}

// TestEmptyInventoryKeepsIPAKeys checks what an inventory with nothing
// known encodes to: every key present, lists null or [] as the agent's
// builder sets them, no key dropped by omitempty.
func TestEmptyInventoryKeepsIPAKeys(t *testing.T) {
	b, _ := json.Marshal(Inventory{BMCAddress: NoBMCAddress, BMCv6Address: NoBMCv6Address, Interfaces: []NetworkInterface{{}}, Disks: []Disk{{}}})
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"interfaces", "cpu", "disks", "memory", "bmc_address", "bmc_v6address", "bmc_mac", "system_vendor", "boot", "hostname"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	nic := m["interfaces"].([]any)[0].(map[string]any)
	for _, k := range []string{"lldp", "client_id", "biosdevname", "ipv4_address", "ipv6_address", "speed_mbps"} {
		if _, ok := nic[k]; !ok {
			t.Errorf("interface lacks %q: %v", k, nic)
		}
	}
	if m["bmc_address"] != "0.0.0.0" || m["bmc_v6address"] != "::/0" || m["bmc_mac"] != nil {
		t.Errorf("BMC keys %v %v %v", m["bmc_address"], m["bmc_v6address"], m["bmc_mac"])
	}
}
