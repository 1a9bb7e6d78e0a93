package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/wire"
)

// fakeHardware answers the BMC data endpoints.
type fakeHardware struct {
	calls    []string
	attached []string
}

func (f *fakeHardware) BIOSSettings(context.Context, string) ([]power.BIOSSetting, error) {
	lo, hi, ro := 0, 10, false
	return []power.BIOSSetting{{Name: "ProcVirtualization", Value: "Enabled", AttributeType: "Enumeration",
		AllowableValues: []string{"Enabled", "Disabled"}}, {Name: "Timeout", Value: "5", AttributeType: "Integer",
		LowerBound: &lo, UpperBound: &hi, ReadOnly: &ro}}, nil
}

func (f *fakeHardware) FirmwareComponents(context.Context, string) ([]power.FirmwareComponent, error) {
	return []power.FirmwareComponent{{Component: "bios", CurrentVersion: "1.2"}, {Component: "bmc", CurrentVersion: "6.10"}}, nil
}

func (f *fakeHardware) VirtualMedia(context.Context, string) ([]power.VirtualMedia, error) {
	return []power.VirtualMedia{{Image: "http://x/data.iso", Inserted: true, MediaTypes: []string{"CD", "DVD"}}}, nil
}

func (f *fakeHardware) AttachVirtualMedia(_ context.Context, _, deviceType, url string) error {
	f.attached = append(f.attached, deviceType+" "+url)
	return nil
}

func (f *fakeHardware) DetachVirtualMedia(_ context.Context, _ string, types []string) error {
	f.calls = append(f.calls, "detach "+strings.Join(types, ","))
	return nil
}

func (f *fakeHardware) VendorMethods(context.Context, string) (map[string]provision.VendorMethod, error) {
	return map[string]provision.VendorMethod{"create_subscription": {HTTPMethods: []string{"POST"}}}, nil
}

func (f *fakeHardware) VendorPassthru(_ context.Context, _, method, httpMethod string, args map[string]any) (any, error) {
	f.calls = append(f.calls, httpMethod+" "+method)
	if method == "create_subscription" {
		return map[string]any{"Id": "sub1", "Destination": args["Destination"]}, nil
	}
	if method == "delete_subscription" {
		return nil, nil
	}
	return nil, errdefs.InvalidArgument("Unsupported method (%s)", method)
}

// TestDriversAPI: the drivers list BMO's readiness check reads, a
// driver's interfaces, properties, RAID properties, version gating.
func TestDriversAPI(t *testing.T) {
	a := newTestAPI(t)
	var list struct {
		Drivers []map[string]any `json:"drivers"`
	}
	if st, _ := a.do("1.110", "GET", "/v1/drivers", nil, &list); st != 200 || len(list.Drivers) != 3 {
		t.Fatalf("drivers = %d %v", st, list)
	}
	if d := list.Drivers[1]; d["name"] != "ipmi" || d["type"] != "dynamic" || d["hosts"].([]any)[0] != "c1" || d["default_boot_interface"] != nil {
		t.Fatalf("plain list entry %v", d)
	}
	a.do("1.110", "GET", "/v1/drivers?detail=true", nil, &list)
	if d := list.Drivers[1]; d["default_power_interface"] != "ipmitool" || !slices.Contains(d["enabled_inspect_interfaces"].([]any), "agent") {
		t.Fatalf("detailed entry %v", d)
	}
	var one map[string]any
	if st, _ := a.do("1.110", "GET", "/v1/drivers/redfish", nil, &one); st != 200 ||
		!slices.Contains(one["enabled_boot_interfaces"].([]any), "redfish-virtual-media") || one["default_firmware_interface"] != "redfish" {
		t.Fatalf("redfish = %d %v", st, one)
	}
	one = nil
	a.do("1.85", "GET", "/v1/drivers/redfish", nil, &one)
	if _, ok := one["default_firmware_interface"]; ok {
		t.Errorf("firmware interface shown at 1.85")
	}
	one = nil
	if st, _ := a.do("1.110", "GET", "/v1/drivers/redfish?fields=name,hosts", nil, &one); st != 200 || len(one) != 2 {
		t.Errorf("fields: %d %v", st, one)
	}
	var body map[string]any
	st, _ := a.do("1.76", "GET", "/v1/drivers/redfish?fields=name", nil, &body)
	a.fault("fields before 1.77", st, body, 406, "")
	st, _ = a.do("1.110", "GET", "/v1/drivers/nope", nil, &body)
	a.fault("unknown driver", st, body, 404, "Could not find the following driver(s) or hardware type(s): nope.")
	st, _ = a.do("1.110", "GET", "/v1/drivers?type=weird", nil, &body)
	a.fault("bad type", st, body, 400, `"type" filter must be one of "classic" or "dynamic", if specified.`)
	if st, _ := a.do("1.110", "GET", "/v1/drivers?type=classic", nil, &list); st != 200 || len(list.Drivers) != 0 {
		t.Errorf("classic drivers: %d %v", st, list)
	}
	var props map[string]string
	if st, _ := a.do("1.110", "GET", "/v1/drivers/ipmi/properties", nil, &props); st != 200 || props["ipmi_address"] == "" || props["deploy_kernel"] == "" {
		t.Errorf("ipmi properties: %d %v", st, props)
	}
	st, _ = a.do("1.110", "GET", "/v1/drivers/ipmi/raid/logical_disk_properties", nil, &body)
	a.fault("RAID properties of a type whose default is no-raid", st, body, 404, "Driver ipmi does not support raid (disabled or not implemented).")
	st, _ = a.do("1.11", "GET", "/v1/drivers/ipmi/raid/logical_disk_properties", nil, &body)
	a.fault("RAID properties at 1.11", st, body, 406, "")
}

// TestBMORegistration creates a node with BMO's body and patches it as
// BMO's Register does, at BMO's microversion, and checks the version
// rules of the newer fields.
func TestBMORegistration(t *testing.T) {
	a := newTestAPI(t)
	body := map[string]any{"name": "metal3~worker-0", "driver": "ipmi",
		"driver_info":    map[string]any{"ipmi_address": "192.0.2.10", "ipmi_port": "623", "ipmi_username": "admin", "ipmi_password": "pw", "ipmi_priv_level": "ADMINISTRATOR"},
		"boot_interface": "ipxe", "raid_interface": "no-raid", "inspect_interface": "agent", "disable_power_off": false,
		"properties": map[string]any{"capabilities": "boot_mode:uefi", "cpu_arch": "x86_64"}}
	var out map[string]any
	st, _ := a.do("1.94", "POST", "/v1/nodes", map[string]any{"driver": "ipmi", "disable_power_off": true}, &out)
	a.fault("disable_power_off at 1.94", st, out, 406, "")
	if st, _ := a.do("1.110", "POST", "/v1/nodes", body, &out); st != 201 {
		t.Fatalf("create: %d %v", st, out)
	}
	for k, want := range map[string]any{"provision_state": "enroll", "power_interface": "ipmitool", "inspect_interface": "agent",
		"deploy_interface": "direct", "raid_interface": "no-raid", "disable_power_off": false, "health": nil,
		"instance_name": nil, "automated_clean": nil} {
		if got, ok := out[k]; !ok || got != want {
			t.Errorf("created node %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	uuid := out["uuid"].(string)
	// Found by its name with ~, unversioned too.
	if st, _ := a.do("1.110", "GET", "/nodes/metal3~worker-0", nil, &out); st != 200 || out["uuid"] != uuid {
		t.Fatalf("GET /nodes/<name>: %d %v", st, out)
	}
	patch := []map[string]any{
		{"op": "add", "path": "/driver_info/deploy_kernel", "value": "http://x/k"},
		{"op": "add", "path": "/driver_info/kernel_append_params", "value": "%default% console=ttyS0"},
		{"op": "add", "path": "/automated_clean", "value": true},
		{"op": "add", "path": "/disable_power_off", "value": true},
		{"op": "add", "path": "/network_data", "value": map[string]any{"links": []any{}, "networks": []any{}, "services": []any{}}},
		{"op": "add", "path": "/properties/capabilities", "value": "boot_mode:bios"},
		{"op": "add", "path": "/lessee", "value": "tenant"},
		{"op": "add", "path": "/instance_name", "value": "worker-0"},
	}
	if st, _ := a.do("1.110", "PATCH", "/v1/nodes/"+uuid, patch, &out); st != 200 {
		t.Fatalf("patch: %d %v", st, out)
	}
	if out["automated_clean"] != true || out["disable_power_off"] != true || out["lessee"] != "tenant" ||
		out["instance_name"] != "worker-0" || out["network_data"] == nil || out["driver_info"].(map[string]any)["ipmi_password"] != "******" {
		t.Fatalf("patched node %v", out)
	}
	// remove restores an interface's default; a driver change resets them.
	a.do("1.110", "PATCH", "/v1/nodes/"+uuid, []map[string]any{{"op": "add", "path": "/inspect_interface", "value": "no-inspect"}}, &out)
	a.do("1.110", "PATCH", "/v1/nodes/"+uuid, []map[string]any{{"op": "remove", "path": "/inspect_interface"}}, &out)
	if out["inspect_interface"] != "agent" {
		t.Errorf("removed inspect_interface = %v", out["inspect_interface"])
	}
	a.do("1.110", "PATCH", "/v1/nodes/"+uuid, []map[string]any{{"op": "replace", "path": "/driver", "value": "redfish"}}, &out)
	if out["power_interface"] != "redfish" || out["bios_interface"] != "redfish" {
		t.Errorf("after a driver change: power %v bios %v", out["power_interface"], out["bios_interface"])
	}
	for _, tc := range []struct {
		what, ver string
		ops       []map[string]any
		status    int
		msg       string
	}{
		{"disable_power_off at 1.94", "1.94", []map[string]any{{"op": "add", "path": "/disable_power_off", "value": false}}, 406, ""},
		{"traits by patch", "1.110", []map[string]any{{"op": "add", "path": "/traits", "value": []any{"CUSTOM_X"}}}, 400,
			"Cannot update node traits via node patch. Node traits should be updated via the node traits API."},
		{"bad network_data", "1.110", []map[string]any{{"op": "add", "path": "/network_data", "value": map[string]any{"links": 3}}}, 400,
			"Invalid network_data: links is not of type 'array'"},
		{"protect in enroll", "1.110", []map[string]any{{"op": "add", "path": "/protected", "value": true}}, 409, ""},
		{"protected_reason alone", "1.110", []map[string]any{{"op": "add", "path": "/protected_reason", "value": "x"}}, 400,
			"The protected_reason field can only be set when protected is True"},
		{"retired_reason alone", "1.110", []map[string]any{{"op": "add", "path": "/retired_reason", "value": "x"}}, 400,
			"The retired_reason field can only be set when retired is True"},
		{"bool as string", "1.110", []map[string]any{{"op": "add", "path": "/automated_clean", "value": "maybe"}}, 400, ""},
		{"internal field", "1.110", []map[string]any{{"op": "add", "path": "/provision_state", "value": "active"}}, 400,
			"'/provision_state' is an internal attribute and can not be updated"},
		{"unknown field", "1.110", []map[string]any{{"op": "add", "path": "/colour", "value": "blue"}}, 400,
			"Adding a new attribute (/colour) to the root of the resource is not allowed."},
		{"unknown parent", "1.110", []map[string]any{{"op": "add", "path": "/parent_node", "value": "nope"}}, 400, "Node nope could not be found."},
	} {
		out = nil
		st, _ := a.do(tc.ver, "PATCH", "/v1/nodes/"+uuid, tc.ops, &out)
		a.fault(tc.what, st, out, tc.status, tc.msg)
	}
	// Booleans as Ironic's strings.
	if st, _ := a.do("1.110", "PATCH", "/v1/nodes/"+uuid, []map[string]any{{"op": "add", "path": "/retired", "value": "true"}}, &out); st != 200 || out["retired"] != true {
		t.Errorf("retired as a string: %d %v", st, out["retired"])
	}
	var list struct {
		Nodes []map[string]any `json:"nodes"`
	}
	a.do("1.110", "GET", "/v1/nodes?retired=true&lessee=tenant&fields=uuid,name,provision_state,boot_interface", nil, &list)
	if len(list.Nodes) != 1 || list.Nodes[0]["boot_interface"] != "ipxe" {
		t.Errorf("filtered list %v", list)
	}
	a.do("1.110", "GET", "/v1/nodes?retired=false", nil, &list)
	if len(list.Nodes) != 0 {
		t.Errorf("retired=false lists %v", list)
	}
	// A child node is listed only when asked for.
	child := a.createNode(map[string]any{"name": "child", "driver": "fake-hardware"})
	if st, _ := a.do("1.110", "PATCH", "/v1/nodes/child", []map[string]any{{"op": "add", "path": "/parent_node", "value": "metal3~worker-0"}}, &out); st != 200 || out["parent_node"] != uuid {
		t.Fatalf("parent_node by name: %d %v", st, out)
	}
	a.do("1.110", "GET", "/v1/nodes", nil, &list)
	if len(list.Nodes) != 1 {
		t.Errorf("default list shows children: %v", list)
	}
	a.do("1.110", "GET", "/v1/nodes?include_children=true", nil, &list)
	if len(list.Nodes) != 2 {
		t.Errorf("include_children: %v", list)
	}
	_ = child
}

// TestTraitsAndRAID: the node traits API and the target RAID
// configuration.
func TestTraitsAndRAID(t *testing.T) {
	a := newTestAPI(t)
	a.createNode(map[string]any{"name": "n1", "driver": "fake-hardware", "raid_interface": "agent"})
	a.createNode(map[string]any{"name": "n2", "driver": "ipmi"})
	var out map[string]any
	st, _ := a.do("1.36", "GET", "/v1/nodes/n1/traits", nil, &out)
	a.fault("traits at 1.36", st, out, 406, "")
	if st, _ := a.do("1.110", "PUT", "/v1/nodes/n1/traits", map[string]any{"traits": []string{"CUSTOM_GPU", "HW_CPU_X86_VMX", "CUSTOM_GPU"}}, nil); st != 204 {
		t.Fatalf("put traits: %d", st)
	}
	if st, _ := a.do("1.110", "PUT", "/v1/nodes/n1/traits/CUSTOM_FAST", nil, nil); st != 204 {
		t.Fatalf("add trait: %d", st)
	}
	var tr struct {
		Traits []string `json:"traits"`
	}
	a.do("1.110", "GET", "/v1/nodes/n1/traits", nil, &tr)
	if !slices.Equal(tr.Traits, []string{"CUSTOM_GPU", "HW_CPU_X86_VMX", "CUSTOM_FAST"}) {
		t.Fatalf("traits %v", tr.Traits)
	}
	a.do("1.110", "GET", "/v1/nodes/n1", nil, &out)
	if len(out["traits"].([]any)) != 3 {
		t.Errorf("node traits %v", out["traits"])
	}
	st, _ = a.do("1.110", "PUT", "/v1/nodes/n1/traits/lower_case", nil, &out)
	a.fault("bad trait", st, out, 400, "")
	st, _ = a.do("1.110", "DELETE", "/v1/nodes/n1/traits/CUSTOM_NONE", nil, &out)
	a.fault("delete missing trait", st, out, 404, "")
	if st, _ := a.do("1.110", "DELETE", "/v1/nodes/n1/traits/CUSTOM_GPU", nil, nil); st != 204 {
		t.Fatalf("delete trait: %d", st)
	}
	if st, _ := a.do("1.110", "DELETE", "/v1/nodes/n1/traits", nil, nil); st != 204 {
		t.Fatalf("delete traits: %d", st)
	}
	a.do("1.110", "GET", "/v1/nodes/n1/traits", nil, &tr)
	if len(tr.Traits) != 0 {
		t.Errorf("traits after delete all: %v", tr.Traits)
	}

	raid := map[string]any{"logical_disks": []any{
		map[string]any{"size_gb": 100, "raid_level": "1", "is_root_volume": true, "controller": "software", "physical_disks": []any{map[string]any{"name": "s== /dev/sda"}}},
		map[string]any{"size_gb": "MAX", "raid_level": "0"}}}
	if st, _ := a.do("1.110", "PUT", "/v1/nodes/n1/states/raid", raid, nil); st != 204 {
		t.Fatalf("set RAID: %d", st)
	}
	var states map[string]any
	a.do("1.110", "GET", "/v1/nodes/n1/states", nil, &states)
	if disks, _ := states["target_raid_config"].(map[string]any)["logical_disks"].([]any); len(disks) != 2 {
		t.Fatalf("target_raid_config %v", states["target_raid_config"])
	}
	st, _ = a.do("1.110", "PUT", "/v1/nodes/n2/states/raid", raid, &out)
	a.fault("RAID on no-raid", st, out, 404, "Driver ipmi does not support raid (disabled or not implemented).")
	st, _ = a.do("1.110", "PUT", "/v1/nodes/n1/states/raid", map[string]any{"logical_disks": []any{map[string]any{"size_gb": "all", "raid_level": "1"}}}, &out)
	a.fault("bad size", st, out, 400, "")
	st, _ = a.do("1.110", "PUT", "/v1/nodes/n1/states/raid", map[string]any{"logical_disks": []any{map[string]any{"size_gb": 10, "raid_level": "7"}}}, &out)
	a.fault("bad level", st, out, 400, "")
	if st, _ := a.do("1.110", "PUT", "/v1/nodes/n1/states/raid", map[string]any{}, nil); st != 204 {
		t.Fatalf("clear RAID: %d", st)
	}
}

// TestUnversionedAndHeaders: unversioned resource paths, the standard
// version header, request IDs.
func TestUnversionedAndHeaders(t *testing.T) {
	a := newTestAPI(t)
	a.createNode(map[string]any{"name": "n1", "driver": "fake-hardware"})
	for _, p := range []string{"/nodes", "/nodes/n1", "/ports", "/drivers", "/nodes/n1/states"} {
		if st, _ := a.do("1.110", "GET", p, nil, nil); st != 200 {
			t.Errorf("GET %s: %d", p, st)
		}
	}
	req, _ := http.NewRequest("GET", a.srv.URL+"/v1/nodes/n1", nil)
	req.Header.Set("OpenStack-API-Version", "baremetal 1.109")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var n map[string]any
	json.NewDecoder(resp.Body).Decode(&n)
	resp.Body.Close()
	if resp.Header.Get(wire.APIVersionHeader) != "1.109" || resp.Header.Get("OpenStack-API-Version") != "baremetal 1.109" {
		t.Errorf("headers %v", resp.Header)
	}
	if _, ok := n["health"]; !ok {
		t.Errorf("health missing at 1.109: %v", n)
	}
	if id := resp.Header.Get("X-OpenStack-Request-Id"); !strings.HasPrefix(id, "req-") || resp.Header.Get("OpenStack-Request-Id") != id {
		t.Errorf("request ids %v", resp.Header)
	}
	_, h := a.do("1.106", "GET", "/v1/nodes", nil, nil)
	if h.Get("X-OpenStack-Request-Id") != "" || h.Get("OpenStack-Request-Id") == "" {
		t.Errorf("request ids at 1.106: %v", h)
	}
}

// TestHardwareEndpoints: BIOS, firmware, virtual media and vendor
// passthru in Ironic's shapes.
func TestHardwareEndpoints(t *testing.T) {
	hw := &fakeHardware{}
	a := newTestAPIWith(t, func(c *Config) { c.Hardware = hw })
	a.createNode(map[string]any{"name": "n1", "driver": "redfish"})
	var bios struct {
		BIOS []map[string]any `json:"bios"`
	}
	if st, _ := a.do("1.110", "GET", "/v1/nodes/n1/bios?detail=true", nil, &bios); st != 200 || len(bios.BIOS) != 2 {
		t.Fatalf("bios: %d %v", st, bios)
	}
	if b := bios.BIOS[1]; b["name"] != "Timeout" || b["value"] != "5" || b["lower_bound"] != float64(0) || b["read_only"] != false || b["unique"] != nil {
		t.Errorf("detailed setting %v", b)
	}
	bios.BIOS = nil
	a.do("1.110", "GET", "/v1/nodes/n1/bios", nil, &bios)
	if _, ok := bios.BIOS[0]["attribute_type"]; ok {
		t.Errorf("registry fields without detail: %v", bios.BIOS[0])
	}
	var one map[string]any
	if st, _ := a.do("1.110", "GET", "/v1/nodes/n1/bios/ProcVirtualization", nil, &one); st != 200 || one["ProcVirtualization"] == nil {
		t.Errorf("one setting: %d %v", st, one)
	}
	var out map[string]any
	st, _ := a.do("1.73", "GET", "/v1/nodes/n1/bios?detail=true", nil, &out)
	a.fault("detail at 1.73", st, out, 406, "")
	var fw struct {
		Firmware []map[string]any `json:"firmware"`
	}
	if st, _ := a.do("1.110", "GET", "/v1/nodes/n1/firmware", nil, &fw); st != 200 || len(fw.Firmware) != 2 ||
		fw.Firmware[1]["component"] != "bmc" || fw.Firmware[1]["current_version"] != "6.10" {
		t.Fatalf("firmware: %d %v", st, fw)
	}
	if _, err := time.Parse(time.RFC3339, fw.Firmware[0]["created_at"].(string)); err != nil {
		t.Errorf("created_at %v: %v", fw.Firmware[0]["created_at"], err)
	}
	var vm []map[string]any
	if st, _ := a.do("1.110", "GET", "/v1/nodes/n1/vmedia", nil, &vm); st != 200 || len(vm) != 1 || vm[0]["inserted"] != true {
		t.Fatalf("vmedia: %d %v", st, vm)
	}
	st, _ = a.do("1.92", "GET", "/v1/nodes/n1/vmedia", nil, &out)
	a.fault("vmedia GET at 1.92", st, out, 406, "")
	if st, _ := a.do("1.110", "POST", "/v1/nodes/n1/vmedia", map[string]any{"device_type": "cdrom", "image_url": "http://x/y.iso"}, nil); st != 204 || len(hw.attached) != 1 {
		t.Fatalf("attach: %d %v", st, hw.attached)
	}
	if st, _ := a.do("1.110", "DELETE", "/v1/nodes/n1/vmedia?device_types=cdrom", nil, nil); st != 204 {
		t.Fatalf("detach: %d", st)
	}
	if st, _ := a.do("1.110", "POST", "/v1/nodes/n1/vendor_passthru?method=create_subscription",
		map[string]any{"Destination": "https://hook", "HttpHeaders": []any{map[string]any{"X-Auth": "v"}}}, &out); st != 200 || out["Id"] != "sub1" {
		t.Fatalf("create_subscription: %d %v", st, out)
	}
	if st, _ := a.do("1.110", "DELETE", "/v1/nodes/n1/vendor_passthru?method=delete_subscription", map[string]any{"id": "sub1"}, nil); st != 204 {
		t.Fatalf("delete_subscription: %d", st)
	}
	if !slices.Equal(hw.calls, []string{"detach cdrom", "POST create_subscription", "DELETE delete_subscription"}) {
		t.Errorf("calls %v", hw.calls)
	}
}

// TestProvisionMetal3Verbs: service, deploy_steps, abort of wait
// call-back by version, configdrive {}.
func TestProvisionMetal3Verbs(t *testing.T) {
	a := newTestAPI(t)
	a.createNode(map[string]any{"name": "n1", "driver": "fake-hardware"})
	put := func(ver string, body map[string]any) (int, map[string]any) {
		var out map[string]any
		st, _ := a.do(ver, "PUT", "/v1/nodes/n1/states/provision", body, &out)
		return st, out
	}
	steps := []any{map[string]any{"interface": "deploy", "step": "install_coreos", "args": map[string]any{}, "priority": 80}}
	st, out := put("1.68", map[string]any{"target": "active", "deploy_steps": steps})
	a.fault("deploy_steps at 1.68", st, out, 406, "")
	st, out = put("1.110", map[string]any{"target": "active", "deploy_steps": []any{map[string]any{"interface": "deploy", "step": "x", "priority": 80}}})
	a.fault("deploy step without args", st, out, 400, "Invalid deploy step 0: 'args' is a required property")
	st, out = put("1.110", map[string]any{"target": "active", "deploy_steps": []any{map[string]any{"interface": "deploy", "step": "x", "args": map[string]any{}, "priority": -1}}})
	a.fault("negative priority", st, out, 400, "")
	if st, out := put("1.110", map[string]any{"target": "active", "deploy_steps": steps, "configdrive": map[string]any{}}); st != 202 {
		t.Fatalf("active with deploy_steps: %d %v", st, out)
	}
	last := a.p.requests[len(a.p.requests)-1]
	if len(last.DeploySteps) != 1 || last.DeploySteps[0].PriorityValue() != 80 || last.DeploySteps[0].Step != "install_coreos" {
		t.Fatalf("deploy steps passed %+v", last.DeploySteps)
	}
	svc := []any{map[string]any{"interface": "bios", "step": "apply_configuration", "args": map[string]any{"settings": []any{}}}}
	st, out = put("1.86", map[string]any{"target": "service", "service_steps": svc})
	a.fault("service at 1.86", st, out, 406, "")
	st, out = put("1.110", map[string]any{"target": "service"})
	a.fault("service without steps", st, out, 400, `"service_steps" is required when setting target provision state to service`)
	if st, out := put("1.110", map[string]any{"target": "service", "service_steps": svc}); st != 202 || a.p.calls[len(a.p.calls)-1] != "service" {
		t.Fatalf("service: %d %v %v", st, out, a.p.calls)
	}
	st, out = put("1.107", map[string]any{"target": "service", "service_steps": svc, "disable_ramdisk": true})
	a.fault("service disable_ramdisk at 1.107", st, out, 406, "")
	// abort of wait call-back came with 1.110: the API tells the engine,
	// which checks it with the node's state under its lock
	// (conductor/orchestration_test.go, TestAbortDeployWait).
	for _, c := range []struct {
		version string
		refuse  bool
	}{{"1.109", true}, {"1.110", false}} {
		if st, out := put(c.version, map[string]any{"target": "abort"}); st != 202 {
			t.Fatalf("abort at %s: %d %v", c.version, st, out)
		}
		a.p.mu.Lock()
		req := a.p.requests[len(a.p.requests)-1]
		a.p.mu.Unlock()
		if req.Target != "abort" || req.NoAbortDeployWait != c.refuse {
			t.Errorf("abort at %s: the engine got %+v, want NoAbortDeployWait %v", c.version, req, c.refuse)
		}
	}
}
