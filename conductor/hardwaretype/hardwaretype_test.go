package hardwaretype

import (
	"errors"
	"slices"
	"testing"
)

// TestMetal3Interfaces enrolls what baremetal-operator sends for each BMC
// type it supports on these hardware types.
func TestMetal3Interfaces(t *testing.T) {
	for _, tc := range []struct {
		driver string
		ifaces map[string]string
	}{
		{"ipmi", map[string]string{"boot_interface": "ipxe", "raid_interface": "no-raid", "inspect_interface": "agent"}},
		{"redfish", map[string]string{"boot_interface": "ipxe", "firmware_interface": "redfish", "raid_interface": "redfish", "inspect_interface": "agent"}},
		{"redfish", map[string]string{"boot_interface": "redfish-virtual-media", "firmware_interface": "redfish", "raid_interface": "redfish", "inspect_interface": "redfish"}},
		{"redfish", map[string]string{"boot_interface": "redfish-https", "deploy_interface": "ramdisk"}},
		{"ipmi", map[string]string{"deploy_interface": "custom-agent", "raid_interface": "agent"}},
		// BMO's idrac-redfish:// and idrac-virtualmedia:// bodies.
		{"idrac", map[string]string{"boot_interface": "ipxe", "management_interface": "idrac-redfish", "power_interface": "idrac-redfish",
			"raid_interface": "idrac-redfish", "bios_interface": "idrac-redfish", "firmware_interface": "redfish", "vendor_interface": "idrac-redfish",
			"inspect_interface": "agent"}},
		{"idrac", map[string]string{"boot_interface": "idrac-redfish-virtual-media", "management_interface": "idrac-redfish",
			"power_interface": "idrac-redfish", "inspect_interface": "redfish"}},
	} {
		ty, ok := Lookup(tc.driver)
		if !ok {
			t.Fatalf("no hardware type %s", tc.driver)
		}
		got, err := ty.Resolve(tc.ifaces)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.driver, tc.ifaces, err)
		}
		for f, v := range tc.ifaces {
			if got[f] != v {
				t.Errorf("%s: %s = %q, want %q", tc.driver, f, got[f], v)
			}
		}
		if len(got) != len(Kinds) {
			t.Errorf("%s: %d interfaces resolved, want %d", tc.driver, len(got), len(Kinds))
		}
	}
}

func TestDefaultsAreImplemented(t *testing.T) {
	for _, name := range Names() {
		ty, _ := Lookup(name)
		for _, k := range Kinds {
			if d := ty.Default(k); !Implemented(k, d) {
				t.Errorf("%s: default %s interface %q is not implemented", name, k, d)
			}
		}
	}
}

func TestResolveRefuses(t *testing.T) {
	ty, _ := Lookup("ipmi")
	_, err := ty.Resolve(map[string]string{"power_interface": "redfish"})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Kind != "power" || !slices.Equal(ue.Enabled, []string{"ipmitool"}) {
		t.Fatalf("ipmi with redfish power: %v", err)
	}
	if want := "power interface implementation 'redfish' is not supported by hardware type ipmi. Supported: ipmitool."; err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}
	if _, err := ty.Resolve(map[string]string{"foo_interface": "x"}); err == nil {
		t.Fatal("an unknown field resolved")
	}
	fake, _ := Lookup("fake-hardware")
	for _, k := range Kinds {
		if !fake.Accepts(k, "fake") {
			t.Errorf("fake-hardware does not accept fake %s", k)
		}
	}
}

func TestOf(t *testing.T) {
	got := Of("ipmi", map[string]string{"inspect_interface": "no-inspect", "bogus": "x"})
	if got["inspect_interface"] != "no-inspect" || got["power_interface"] != "ipmitool" || got["boot_interface"] != "ipxe" || len(got) != len(Kinds) {
		t.Fatalf("Of(ipmi) = %v", got)
	}
	if got := Of("no-such-driver", nil); got["deploy_interface"] != "direct" {
		t.Fatalf("Of(unknown) = %v", got)
	}
	if k, ok := KindOf("raid_interface"); !ok || k != "raid" {
		t.Fatalf("KindOf = %q %v", k, ok)
	}
	if NotImplemented("boot", "redfish-virtual-media") == "" {
		t.Fatal("no message")
	}
	ty, _ := Lookup("redfish")
	if p := ty.Properties(); p["redfish_address"] == "" || p["deploy_kernel"] == "" {
		t.Fatalf("properties %v", p)
	}
}
