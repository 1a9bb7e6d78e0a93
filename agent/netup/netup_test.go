package netup

import "testing"

func TestParseIP(t *testing.T) {
	for _, spec := range []string{"", "dhcp", "on", "any"} {
		if m, _, err := ParseIP(spec); err != nil || m != ModeDHCP {
			t.Errorf("ParseIP(%q) = %v, %v", spec, m, err)
		}
	}
	if m, _, _ := ParseIP("off"); m != ModeOff {
		t.Error("ip=off")
	}
	m, st, err := ParseIP("10.0.2.20::10.0.2.2:255.255.255.0:node1:eth0:none")
	if err != nil || m != ModeStatic || st.Address.String() != "10.0.2.20/24" || st.Gateway.String() != "10.0.2.2" ||
		st.Device != "eth0" || st.Hostname != "node1" {
		t.Fatalf("static: %v %+v %v", m, st, err)
	}
	m, st, err = ParseIP(":::::eth1:dhcp")
	if err != nil || m != ModeDHCP || st.Device != "eth1" {
		t.Fatalf("dhcp on one device: %v %+v %v", m, st, err)
	}
	for _, bad := range []string{"10.0.2.300::::::", "10.0.2.20::gw::::", "10.0.2.20:::255.255.0::eth0:", "10.0.2.20:::::eth0:dhcp"} {
		if _, _, err := ParseIP(bad); err == nil {
			t.Errorf("ParseIP(%q) accepted", bad)
		}
	}
}
