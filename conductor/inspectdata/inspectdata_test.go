package inspectdata

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/rivetmetal/rivet/wire"
)

// inventory is an IPA-shaped inventory: a PXE NIC, a second NIC with an
// address, one without link information, the loopback, a NIC with a bad
// MAC; two disks.
const inventory = `{
 "interfaces": [
  {"name": "eth0", "mac_address": "52:54:00:AA:BB:01", "ipv4_address": "192.0.2.10", "ipv6_address": "fe80::1%eth0", "has_carrier": true, "lldp": null, "client_id": null, "speed_mbps": 1000},
  {"name": "eth1", "mac_address": "52:54:00:aa:bb:02", "ipv4_address": "", "ipv6_address": "", "client_id": "ff:00:00:00:00:00:02:00:00:02:c9:00:52:54:00:aa:bb:02"},
  {"name": "eth2", "mac_address": ""},
  {"name": "lo", "mac_address": "00:00:00:00:00:00", "ipv4_address": "127.0.0.1"},
  {"name": "bad", "mac_address": "zz"}
 ],
 "cpu": {"count": 4, "architecture": "x86_64", "frequency": "2400.0000", "flags": ["vmx"]},
 "memory": {"total": 8589934592, "physical_mb": 8192},
 "disks": [{"name": "/dev/sda", "size": 21474836480}, {"name": "/dev/sdb", "size": 1073741824}],
 "boot": {"current_boot_mode": "uefi", "pxe_interface": "01-52-54-00-aa-bb-01"},
 "system_vendor": {"manufacturer": "QEMU"}
}`

func TestProcess(t *testing.T) {
	var parsedWith json.RawMessage
	res, err := Process(wire.InspectionData{Inventory: json.RawMessage(inventory),
		RootDisk:      json.RawMessage(`{"name": "/dev/sda", "size": 21474836480}`),
		Configuration: wire.InspectionConfiguration{Collectors: []string{"default"}}},
		Options{ParseLLDP: func(inv, _ json.RawMessage) (map[string]any, []error) {
			parsedWith = inv
			return map[string]any{"eth0": map[string]any{"switch_port_id": "Ethernet1"}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	wantProps := map[string]any{"cpus": 4, "cpu_arch": "x86_64", "memory_mb": 8192, "local_gb": 19}
	if !reflect.DeepEqual(res.Properties, wantProps) || res.BootMode != "uefi" {
		t.Fatalf("properties %v boot mode %q", res.Properties, res.BootMode)
	}
	all := res.PluginData["all_interfaces"].(map[string]any)
	if len(all) != 3 || all["eth0"].(map[string]any)["pxe_enabled"] != true || all["eth1"].(map[string]any)["pxe_enabled"] != false ||
		all["eth0"].(map[string]any)["mac_address"] != "52:54:00:aa:bb:01" || all["eth0"].(map[string]any)["ipv6_address"] != "fe80::1" {
		t.Fatalf("all_interfaces %v", all)
	}
	valid := res.PluginData["valid_interfaces"].(map[string]any)
	if len(valid) != 1 || valid["eth0"] == nil {
		t.Fatalf("valid_interfaces (add_ports pxe) %v", valid)
	}
	if !reflect.DeepEqual(res.PluginData["macs"], []any{"52:54:00:aa:bb:01"}) {
		t.Fatalf("macs %v", res.PluginData["macs"])
	}
	wantPorts := []Port{{Address: "52:54:00:aa:bb:01", PXEEnabled: true, Add: true},
		{Address: "52:54:00:aa:bb:02", ClientID: "ff:00:00:00:00:00:02:00:00:02:c9:00:52:54:00:aa:bb:02"},
		{Address: "00:00:00:00:00:00"}}
	if !reflect.DeepEqual(res.Ports, wantPorts) {
		t.Fatalf("ports %+v", res.Ports)
	}
	if res.PluginData["parsed_lldp"].(map[string]any)["eth0"] == nil || string(parsedWith) != inventory {
		t.Fatalf("parsed_lldp %v", res.PluginData["parsed_lldp"])
	}
	if res.PluginData["root_disk"].(map[string]any)["name"] != "/dev/sda" || len(res.Problems) != 1 {
		t.Fatalf("root_disk %v problems %v", res.PluginData["root_disk"], res.Problems)
	}
	// Numbers keep their JSON form for the API (no float64 rounding).
	if n, ok := res.Inventory["memory"].(map[string]any)["total"].(json.Number); !ok || n.String() != "8589934592" {
		t.Fatalf("inventory memory.total %#v", res.Inventory["memory"])
	}
}

func TestProcessPolicies(t *testing.T) {
	data := wire.InspectionData{Inventory: json.RawMessage(inventory)}
	for _, tc := range []struct {
		policy AddPorts
		added  []string
	}{
		{AddAll, []string{"00:00:00:00:00:00", "52:54:00:aa:bb:01", "52:54:00:aa:bb:02"}},
		{AddActive, []string{"52:54:00:aa:bb:01"}},
		{AddDisabled, nil},
	} {
		res, err := Process(data, Options{AddPorts: tc.policy})
		if err != nil {
			t.Fatalf("%s: %v", tc.policy, err)
		}
		var added []string
		for _, p := range res.Ports {
			if p.Add {
				added = append(added, p.Address)
			}
		}
		// lo is never valid, whatever the policy.
		if tc.policy == AddAll {
			tc.added = tc.added[1:]
		}
		if !reflect.DeepEqual(added, tc.added) {
			t.Errorf("%s: added %v, want %v", tc.policy, added, tc.added)
		}
	}
}

func TestProcessRefuses(t *testing.T) {
	msg := "no disk"
	for what, data := range map[string]wire.InspectionData{
		"ramdisk error":  {Inventory: json.RawMessage(inventory), Error: &msg},
		"not an object":  {Inventory: json.RawMessage(`[1]`)},
		"no interfaces":  {Inventory: json.RawMessage(`{"cpu": {}}`)},
		"no usable NICs": {Inventory: json.RawMessage(`{"interfaces": [{"name": "eth0"}]}`)},
	} {
		if _, err := Process(data, Options{}); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	_, err := Process(wire.InspectionData{Inventory: json.RawMessage(`{"interfaces": []}`)}, Options{})
	if !errors.Is(err, ErrNoInterfaces) {
		t.Errorf("empty interfaces: %v", err)
	}
}

func TestHasCapability(t *testing.T) {
	if !HasCapability("cpu_vt:true, boot_mode:uefi", "boot_mode") || HasCapability("boot_modes:x", "boot_mode") || HasCapability("", "boot_mode") {
		t.Fatal("HasCapability")
	}
}

func TestMergeCapabilities(t *testing.T) {
	for _, tc := range [][4]string{
		{"", "boot_mode", "uefi", "boot_mode:uefi"},
		{"boot_mode:bios,secure_boot:true", "boot_mode", "uefi", "boot_mode:uefi,secure_boot:true"},
		{"cpu_vt:true", "boot_mode", "bios", "cpu_vt:true,boot_mode:bios"},
		{"boot_mode:bios, boot_mode:uefi", "boot_mode", "uefi", "boot_mode:uefi"},
	} {
		if got := MergeCapabilities(tc[0], tc[1], tc[2]); got != tc[3] {
			t.Errorf("MergeCapabilities(%q) = %q, want %q", tc[0], got, tc[3])
		}
	}
}
