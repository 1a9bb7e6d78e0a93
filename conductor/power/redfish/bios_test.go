package redfish

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
)

// biosNode is a node of the fake BMC, with session authentication.
func biosNode(t *testing.T, b *fakeBMC) power.Node {
	t.Cleanup(func() {
		if n := b.openSessions(); n != 0 {
			t.Errorf("%d Redfish sessions left open", n)
		}
	})
	return power.Node{UUID: "n1", DriverInfo: map[string]any{"redfish_address": b.srv.URL,
		"redfish_username": b.user, "redfish_password": b.password, "redfish_auth_type": "session"}}
}

func intp(i int) *int    { return &i }
func boolp(b bool) *bool { return &b }

func settingsByName(t *testing.T, l []power.BIOSSetting) map[string]power.BIOSSetting {
	t.Helper()
	m := map[string]power.BIOSSetting{}
	for i, s := range l {
		if i > 0 && l[i-1].Name >= s.Name {
			t.Errorf("settings not sorted by name: %q before %q", l[i-1].Name, s.Name)
		}
		m[s.Name] = s
	}
	return m
}

func TestBIOSSettingsWithRegistry(t *testing.T) {
	b := newFakeBMC(t)
	d := New(Config{Timeout: 5 * time.Second})
	got, err := d.BIOSSettings(context.Background(), biosNode(t, b))
	if err != nil {
		t.Fatal(err)
	}
	m := settingsByName(t, got)
	if len(m) != 15 {
		t.Errorf("got %d settings, want the Bios's 15: %v", len(m), got)
	}
	want := map[string]power.BIOSSetting{
		"BootMode": {Name: "BootMode", Value: "Uefi", AttributeType: "Enumeration",
			AllowableValues: []string{"Uefi", "LegacyBios"}, ReadOnly: boolp(false), ResetRequired: boolp(true), Unique: boolp(false)},
		"ProcCoreDisable": {Name: "ProcCoreDisable", Value: "0", AttributeType: "Integer",
			LowerBound: intp(0), UpperBound: intp(24), ReadOnly: boolp(false), ResetRequired: boolp(true), Unique: boolp(false)},
		"AdminPhone": {Name: "AdminPhone", Value: "", AttributeType: "String",
			MinLength: intp(0), MaxLength: intp(30), ReadOnly: boolp(false), ResetRequired: boolp(false), Unique: boolp(false)},
		"SerialNumber": {Name: "SerialNumber", Value: "437XR1138R2", AttributeType: "String",
			MinLength: intp(0), MaxLength: intp(16), ReadOnly: boolp(true), ResetRequired: boolp(false), Unique: boolp(true)},
		"QuietBoot": {Name: "QuietBoot", Value: "True", AttributeType: "Boolean",
			ReadOnly: boolp(false), ResetRequired: boolp(false), Unique: boolp(false)},
		"OemPassword": {Name: "OemPassword", Value: "", AttributeType: "Password",
			ReadOnly: boolp(false), ResetRequired: boolp(false), Unique: boolp(false)},
		// Not in the registry: the value alone.
		"PowerOnDelay":       {Name: "PowerOnDelay", Value: "30"},
		"SriovGlobalEnable":  {Name: "SriovGlobalEnable", Value: "False"},
		"ThermalShutdownLow": {Name: "ThermalShutdownLow", Value: "-5"},
		"WorkloadProfile":    {Name: "WorkloadProfile", Value: "GeneralPowerEfficientCompute"},
	}
	for name, w := range want {
		if g := m[name]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, g, w)
		}
	}
}

func TestBIOSSettingsWithoutRegistry(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(b *fakeBMC)
	}{
		{"no AttributeRegistry", func(b *fakeBMC) { b.noRegistry = true }},
		{"Registries fail", func(b *fakeBMC) { b.fail["/redfish/v1/Registries"] = true }},
		{"registry file fails", func(b *fakeBMC) { b.fail[registryPath] = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBMC(t)
			b.set(tc.set)
			d := New(Config{Timeout: 5 * time.Second})
			got, err := d.BIOSSettings(context.Background(), biosNode(t, b))
			if err != nil {
				t.Fatal(err)
			}
			m := settingsByName(t, got)
			if len(m) != 15 {
				t.Fatalf("got %d settings, want 15", len(m))
			}
			if g, w := m["BootMode"], (power.BIOSSetting{Name: "BootMode", Value: "Uefi"}); !reflect.DeepEqual(g, w) {
				t.Errorf("BootMode = %+v, want %+v (no metadata)", g, w)
			}
			if g := m["ProcCoreDisable"]; g.Value != "0" || g.LowerBound != nil || g.ReadOnly != nil {
				t.Errorf("ProcCoreDisable = %+v, want value 0 without metadata", g)
			}
		})
	}
}

func TestBIOSSettingsErrors(t *testing.T) {
	b := newFakeBMC(t)
	d := New(Config{Timeout: 5 * time.Second})
	n := biosNode(t, b)

	b.set(func(b *fakeBMC) { b.fail[systemPath+"/Bios"] = true })
	_, err := d.BIOSSettings(context.Background(), n)
	if err == nil || !strings.Contains(err.Error(), "node n1") || !strings.Contains(err.Error(), "500") {
		t.Errorf("Bios answering 500: err = %v, want an error naming the node and the status", err)
	}

	b.set(func(b *fakeBMC) { b.fail = map[string]bool{}; b.noBios = true })
	_, err = d.BIOSSettings(context.Background(), n)
	if !errors.Is(err, power.ErrUnsupported) || !strings.Contains(err.Error(), "no Bios") {
		t.Errorf("system without Bios: err = %v, want ErrUnsupported", err)
	}

	b.set(func(b *fakeBMC) { b.noBios = false; b.fail[systemPath] = true })
	if _, err = d.BIOSSettings(context.Background(), n); err == nil {
		t.Error("system answering 500: no error")
	}

	bad := power.Node{UUID: "n2", DriverInfo: map[string]any{"redfish_address": b.srv.URL,
		"redfish_username": b.user, "redfish_password": "wrong-pw", "redfish_auth_type": "basic"}}
	_, err = d.BIOSSettings(context.Background(), bad)
	if err == nil || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("wrong password: err = %v, want an error without the password", err)
	}
	if _, err := d.BIOSSettings(context.Background(), power.Node{UUID: "n3", DriverInfo: map[string]any{}}); !errors.Is(err, power.ErrInvalidDriverInfo) {
		t.Errorf("no driver_info: err = %v, want ErrInvalidDriverInfo", err)
	}
}

func TestFirmwareComponents(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(b *fakeBMC)
		want []power.FirmwareComponent
	}{
		{"both", func(*fakeBMC) {}, []power.FirmwareComponent{
			{Component: "bios", CurrentVersion: "P89 v1.40 (10/06/2020)"}, {Component: "bmc", CurrentVersion: "iLO 5 v2.30"}}},
		{"no BiosVersion", func(b *fakeBMC) { b.biosVersion = "" }, []power.FirmwareComponent{
			{Component: "bmc", CurrentVersion: "iLO 5 v2.30"}}},
		{"no FirmwareVersion", func(b *fakeBMC) { b.bmcVersion = "" }, []power.FirmwareComponent{
			{Component: "bios", CurrentVersion: "P89 v1.40 (10/06/2020)"}}},
		{"neither", func(b *fakeBMC) { b.biosVersion, b.bmcVersion = "", "" }, []power.FirmwareComponent{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBMC(t)
			b.set(tc.set)
			d := New(Config{Timeout: 5 * time.Second})
			got, err := d.FirmwareComponents(context.Background(), biosNode(t, b))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFirmwareComponentsErrors(t *testing.T) {
	b := newFakeBMC(t)
	d := New(Config{Timeout: 5 * time.Second})
	n := biosNode(t, b)
	b.set(func(b *fakeBMC) { b.fail[managerPath] = true })
	_, err := d.FirmwareComponents(context.Background(), n)
	if err == nil || !strings.Contains(err.Error(), "node n1") || !strings.Contains(err.Error(), "managers") {
		t.Errorf("manager answering 500: err = %v, want an error naming the node and the managers", err)
	}
	b.set(func(b *fakeBMC) { b.fail = map[string]bool{systemPath: true} })
	if _, err := d.FirmwareComponents(context.Background(), n); err == nil {
		t.Error("system answering 500: no error")
	}
}

func TestPythonString(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{"Enabled", "Enabled"}, {true, "True"}, {false, "False"}, {float64(3), "3"},
		{float64(-5), "-5"}, {1.5, "1.5"}, {nil, ""}, {float64(1 << 40), "1099511627776"},
	} {
		if got := pythonString(tc.in); got != tc.want {
			t.Errorf("pythonString(%#v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
