package inspectdata

import (
	"encoding/json"
	"testing"
)

// TestParseLLDP: the inventory's LLDP TLVs come out as Ironic's
// parsed_lldp dictionaries (chassis MAC, port name, system name), an
// interface without TLVs is left out, and an unreadable inventory yields
// a problem rather than a panic.
func TestParseLLDP(t *testing.T) {
	inv := json.RawMessage(`{"interfaces": [
		{"name": "eth0", "mac_address": "52:54:00:6d:33:01",
		 "lldp": [[1, "04aabbccddeeff"], [2, "0545746865726e6574312f37"], [5, "737730"], [0, ""]]},
		{"name": "eth1", "mac_address": "52:54:00:6d:33:02", "lldp": null}]}`)
	parsed, problems := ParseLLDP(inv, nil)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	eth0, ok := parsed["eth0"].(map[string]any)
	if !ok || len(parsed) != 1 {
		t.Fatalf("parsed_lldp %v", parsed)
	}
	if eth0["switch_chassis_id"] != "aa:bb:cc:dd:ee:ff" || eth0["switch_port_id"] != "Ethernet1/7" || eth0["switch_system_name"] != "sw0" {
		t.Fatalf("eth0 %v", eth0)
	}
	if parsed, problems := ParseLLDP(json.RawMessage(`{"interfaces": 3}`), nil); parsed != nil || len(problems) != 1 {
		t.Fatalf("bad inventory: %v %v", parsed, problems)
	}
}
