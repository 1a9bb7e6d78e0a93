package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
	"github.com/rivetmetal/rivet/wire"
)

// fakeProvisioner records what the API hands to the engine's services; it
// stands for all of them (Provisioner, PowerManager, RamdiskEndpoints,
// Inspector, Drivers).
type fakeProvisioner struct {
	mu        sync.Mutex
	calls     []string
	requests  []provision.Request
	steps     []wire.PlannedStep
	power     []power.State
	timeout   time.Duration
	bootDev   power.BootDevice
	persist   bool
	err       error
	validated map[string]provision.InterfaceValidation
}

func (f *fakeProvisioner) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

func (f *fakeProvisioner) Provision(_ context.Context, ident string, req provision.Request) error {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	return f.record("provision " + req.Target)
}

func (f *fakeProvisioner) ManualClean(_ context.Context, ident string, steps []wire.PlannedStep, disableRamdisk bool) error {
	f.mu.Lock()
	f.steps = steps
	f.mu.Unlock()
	return f.record("clean")
}

func (f *fakeProvisioner) ChangePowerState(_ context.Context, ident string, target power.State, timeout time.Duration) error {
	f.mu.Lock()
	f.power = append(f.power, target)
	f.timeout = timeout
	f.mu.Unlock()
	return f.record("power")
}

func (f *fakeProvisioner) SetNodeBootDevice(_ context.Context, ident string, dev power.BootDevice, persistent bool) error {
	f.mu.Lock()
	f.bootDev, f.persist = dev, persistent
	f.mu.Unlock()
	return f.record("set boot device")
}

func (f *fakeProvisioner) NodeBootDevice(context.Context, string) (power.BootDevice, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bootDev, f.persist, f.err
}

func (f *fakeProvisioner) NodeSupportedBootDevices(context.Context, string) ([]power.BootDevice, error) {
	return []power.BootDevice{power.BootPXE, power.BootDisk}, f.err
}

func (f *fakeProvisioner) ValidateNode(context.Context, string) (map[string]provision.InterfaceValidation, error) {
	return f.validated, f.err
}

func (f *fakeProvisioner) DeleteNode(_ context.Context, ident string) error {
	return f.record("delete " + ident)
}

func (f *fakeProvisioner) Lookup(context.Context, []string, string, bool) (*store.Node, *string, error) {
	return nil, nil, errdefs.NotFound("Resource could not be found.")
}

func (f *fakeProvisioner) ReleaseToken(context.Context, string, string) error             { return nil }
func (f *fakeProvisioner) Heartbeat(context.Context, string, wire.HeartbeatRequest) error { return nil }
func (f *fakeProvisioner) ContinueInspection(_ context.Context, nodeUUID string, data wire.InspectionData) (*store.Node, error) {
	if err := f.record("continue_inspection " + nodeUUID); err != nil {
		return nil, err
	}
	if len(data.Inventory) == 0 {
		return nil, errors.New("the API passed inspection data without an inventory")
	}
	return &store.Node{UUID: "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11"}, nil
}
func (f *fakeProvisioner) HasDriver(name string) bool {
	return name == "fake-hardware" || name == "redfish" || name == "ipmi"
}
func (f *fakeProvisioner) DriverNames() []string { return []string{"fake-hardware", "ipmi", "redfish"} }
func (f *fakeProvisioner) Service(_ context.Context, ident string, steps []wire.PlannedStep, disableRamdisk bool) error {
	f.mu.Lock()
	f.steps = steps
	f.mu.Unlock()
	return f.record("service")
}
func (f *fakeProvisioner) HeartbeatTimeout() time.Duration { return 300 * time.Second }

type testAPI struct {
	t   *testing.T
	srv *httptest.Server
	st  *sqlite.Store
	p   *fakeProvisioner
}

func newTestAPI(t *testing.T) *testAPI { return newTestAPIWith(t, nil) }

// newTestAPIWith is newTestAPI with a configuration changed by set.
func newTestAPIWith(t *testing.T, set func(*Config)) *testAPI {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeProvisioner{}
	cfg := Config{Store: st, Provisioner: p, Power: p, Ramdisk: p, Inspector: p, Drivers: p, Conductor: "c1",
		Logger: slog.New(slog.DiscardHandler)}
	if set != nil {
		set(&cfg)
	}
	srv := httptest.NewServer(New(cfg))
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	return &testAPI{t: t, srv: srv, st: st, p: p}
}

// do sends a request at microversion ver ("" for none) and decodes a JSON
// answer into out.
func (a *testAPI) do(ver, method, path string, body, out any) (int, http.Header) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.srv.URL+path, rd)
	if ver != "" {
		req.Header.Set(wire.APIVersionHeader, ver)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, resp.Header
}

// fault checks an Ironic error answer: status and fault string.
func (a *testAPI) fault(what string, status int, body map[string]any, wantStatus int, wantMsg string) {
	a.t.Helper()
	if status != wantStatus {
		a.t.Errorf("%s: status %d, want %d (%v)", what, status, wantStatus, body)
		return
	}
	msg, ok := body["error_message"].(string)
	if !ok {
		a.t.Errorf("%s: not an Ironic error body: %v", what, body)
		return
	}
	var f struct {
		FaultCode   string `json:"faultcode"`
		FaultString string `json:"faultstring"`
		DebugInfo   any    `json:"debuginfo"`
	}
	if err := json.Unmarshal([]byte(msg), &f); err != nil {
		a.t.Errorf("%s: error_message is not a JSON string: %q", what, msg)
		return
	}
	if wantMsg != "" && f.FaultString != wantMsg {
		a.t.Errorf("%s: faultstring %q, want %q", what, f.FaultString, wantMsg)
	}
}

func (a *testAPI) createNode(fields map[string]any) map[string]any {
	a.t.Helper()
	var n map[string]any
	if st, _ := a.do("1.89", "POST", "/v1/nodes", fields, &n); st != http.StatusCreated {
		a.t.Fatalf("create node: %d %v", st, n)
	}
	return n
}

func TestMicroversions(t *testing.T) {
	a := newTestAPI(t)
	var root wire.RootDocument
	if st, _ := a.do("", "GET", "/", nil, &root); st != 200 || root.DefaultVersion.Version != "1.110" || root.DefaultVersion.MinVersion != "1.1" {
		t.Fatalf("GET / = %d %+v", st, root)
	}
	for _, tc := range []struct {
		header, want string
		status       int
	}{{"", "1.1", 200}, {"latest", "1.110", 200}, {"1.89", "1.89", 200}, {"1.110", "1.110", 200}, {"1.111", "", 406}, {"2.0", "", 406}} {
		var body map[string]any
		st, h := a.do(tc.header, "GET", "/v1/nodes", nil, &body)
		if st != tc.status || h.Get(wire.APIVersionHeader) != tc.want || h.Get(wire.APIMaxVersionHeader) != "1.110" ||
			h.Get(wire.APIMinVersionHeader) != "1.1" {
			t.Errorf("version %q: %d, headers %v", tc.header, st, h)
		}
		if tc.status == 406 {
			a.fault("version "+tc.header, st, body, 406, "")
		}
	}
	n := a.createNode(map[string]any{"name": "n1", "driver": "fake-hardware",
		"driver_info": map[string]any{"ipmi_password": "secret", "redfish_password": "x"}})
	uuid := n["uuid"].(string)
	var old, cur map[string]any
	a.do("1.82", "GET", "/v1/nodes/"+uuid, nil, &old)
	a.do("1.89", "GET", "/v1/nodes/n1", nil, &cur)
	for _, f := range []string{"parent_node", "firmware_interface", "service_step"} {
		if _, ok := old[f]; ok {
			t.Errorf("%s shown at 1.82", f)
		}
		if _, ok := cur[f]; !ok {
			t.Errorf("%s missing at 1.89", f)
		}
	}
	if di := cur["driver_info"].(map[string]any); di["ipmi_password"] != "******" || di["redfish_password"] != "******" {
		t.Errorf("secrets not masked: %v", di)
	}
}

func TestPowerBootDeviceMaintenanceValidate(t *testing.T) {
	a := newTestAPI(t)
	uuid := a.createNode(map[string]any{"name": "n1", "driver": "fake-hardware"})["uuid"].(string)
	var body map[string]any

	st, h := a.do("1.89", "PUT", "/v1/nodes/n1/states/power", map[string]any{"target": "soft power off", "timeout": 30}, nil)
	if st != 202 || h.Get("Location") != a.srv.URL+"/v1/nodes/n1/states" {
		t.Fatalf("power: %d %v", st, h)
	}
	if len(a.p.power) != 1 || a.p.power[0] != power.SoftOff || a.p.timeout != 30*time.Second {
		t.Fatalf("engine got %v timeout %s", a.p.power, a.p.timeout)
	}
	st, _ = a.do("1.26", "PUT", "/v1/nodes/n1/states/power", map[string]any{"target": "soft rebooting"}, &body)
	a.fault("soft reboot at 1.26", st, body, 406, "Request not acceptable.")
	st, _ = a.do("1.89", "PUT", "/v1/nodes/n1/states/power", map[string]any{"target": "power sideways"}, &body)
	a.fault("bad power target", st, body, 400, `The requested action "power sideways" can not be performed on node "n1" while it is in state "".`)
	st, _ = a.do("1.89", "PUT", "/v1/nodes/n1/states/power", map[string]any{"target": "power on", "timeout": 0}, &body)
	a.fault("zero timeout", st, body, 400, "")
	st, _ = a.do("1.89", "PUT", "/v1/nodes/nope/states/power", map[string]any{"target": "power on"}, &body)
	a.fault("unknown node", st, body, 404, "Node nope could not be found.")
	if len(a.p.power) != 1 {
		t.Fatalf("refused requests reached the engine: %v", a.p.power)
	}

	if st, _ := a.do("1.89", "PUT", "/v1/nodes/n1/management/boot_device", map[string]any{"boot_device": "pxe", "persistent": true}, nil); st != 204 {
		t.Fatalf("set boot device: %d", st)
	}
	if a.p.bootDev != power.BootPXE || !a.p.persist {
		t.Fatalf("engine got %s %v", a.p.bootDev, a.p.persist)
	}
	if st, _ := a.do("1.89", "GET", "/v1/nodes/n1/management/boot_device", nil, &body); st != 200 ||
		body["boot_device"] != "pxe" || body["persistent"] != true {
		t.Fatalf("get boot device: %d %v", st, body)
	}
	st, _ = a.do("1.89", "PUT", "/v1/nodes/n1/management/boot_device", map[string]any{"boot_device": "tape"}, &body)
	a.fault("bad boot device", st, body, 400, "Invalid boot device tape, valid devices are [bios cdrom disk floppy pxe safe uefihttp wanboot].")
	var supported map[string]any
	if st, _ := a.do("1.89", "GET", "/v1/nodes/n1/management/boot_device/supported", nil, &supported); st != 200 {
		t.Fatalf("supported: %d", st)
	} else if b, _ := json.Marshal(supported); string(b) != `{"supported_boot_devices":["pxe","disk"]}` {
		t.Fatalf("supported = %s", b)
	}

	if st, _ := a.do("1.89", "PUT", "/v1/nodes/n1/maintenance", map[string]any{"reason": "fan broken"}, nil); st != 202 {
		t.Fatalf("maintenance on: %d", st)
	}
	var n map[string]any
	a.do("1.89", "GET", "/v1/nodes/"+uuid, nil, &n)
	if n["maintenance"] != true || n["maintenance_reason"] != "fan broken" {
		t.Fatalf("after maintenance on: %v %v", n["maintenance"], n["maintenance_reason"])
	}
	var list map[string][]map[string]any
	a.do("1.89", "GET", "/v1/nodes?maintenance=true", nil, &list)
	if len(list["nodes"]) != 1 {
		t.Fatalf("maintenance filter: %v", list)
	}
	if st, _ := a.do("1.89", "DELETE", "/v1/nodes/n1/maintenance", nil, nil); st != 202 {
		t.Fatalf("maintenance off: %d", st)
	}
	a.do("1.89", "GET", "/v1/nodes/"+uuid, nil, &n)
	if n["maintenance"] != false || n["maintenance_reason"] != nil {
		t.Fatalf("after maintenance off: %v %v", n["maintenance"], n["maintenance_reason"])
	}

	yes := true
	a.p.validated = map[string]provision.InterfaceValidation{"power": {Result: &yes},
		"deploy": {Result: new(bool), Reason: "missing image_source"}, "raid": {Reason: "not supported"}}
	var validated map[string]any
	if st, _ := a.do("1.89", "GET", "/v1/nodes/n1/validate", nil, &validated); st != 200 {
		t.Fatalf("validate: %d", st)
	} else if b, _ := json.Marshal(validated); string(b) != `{"deploy":{"reason":"missing image_source","result":false},"power":{"reason":null,"result":true},"raid":{"reason":"not supported","result":null}}` {
		t.Fatalf("validate = %s", b)
	}

	// An engine entry point not implemented yet is a 501 in Ironic's format.
	a.p.err = errdefs.NotImplemented("Validating a node is not implemented by this conductor yet (node %s).", uuid)
	body = nil
	st, _ = a.do("1.89", "GET", "/v1/nodes/n1/validate", nil, &body)
	a.fault("not implemented", st, body, 501, "Validating a node is not implemented by this conductor yet (node "+uuid+").")
}

func TestProvisionRequests(t *testing.T) {
	a := newTestAPI(t)
	a.createNode(map[string]any{"name": "n1", "driver": "fake-hardware"})
	put := func(ver string, body map[string]any) (int, map[string]any) {
		var out map[string]any
		st, _ := a.do(ver, "PUT", "/v1/nodes/n1/states/provision", body, &out)
		return st, out
	}
	for _, tc := range []struct {
		what, ver  string
		body       map[string]any
		status     int
		wantFault  string
		wantCalled string
	}{
		{"missing target", "1.89", map[string]any{}, 400, `Missing argument: "target"`, ""},
		{"unknown verb", "1.89", map[string]any{"target": "fly"}, 400, `The requested action "fly" could not be understood.`, ""},
		{"clean too old", "1.14", map[string]any{"target": "clean", "clean_steps": []any{}}, 406, "Request not acceptable.", ""},
		{"clean without steps", "1.89", map[string]any{"target": "clean"}, 400, `"clean_steps" is required when setting target provision state to clean`, ""},
		{"clean bad interface", "1.89", map[string]any{"target": "clean", "clean_steps": []any{map[string]any{"interface": "bogus", "step": "x"}}}, 400,
			"Invalid clean step 0: 'bogus' is not one of [bios deploy firmware management power raid vendor]", ""},
		{"clean extra key", "1.89", map[string]any{"target": "clean", "clean_steps": []any{map[string]any{"interface": "deploy", "step": "x", "colour": 1}}}, 400,
			"Invalid clean step 0: Additional properties are not allowed ('colour' was unexpected)", ""},
		{"steps with manage", "1.89", map[string]any{"target": "manage", "clean_steps": []any{map[string]any{"interface": "deploy", "step": "x"}}}, 400,
			`"clean_steps" is only valid when setting target provision state to clean`, ""},
		{"configdrive with manage", "1.89", map[string]any{"target": "manage", "configdrive": "H4sI"}, 400,
			"Adding a config drive is only supported when setting provision state to active or rebuild", ""},
		{"rebuild configdrive too old", "1.34", map[string]any{"target": "rebuild", "configdrive": "H4sI"}, 406, "Request not acceptable.", ""},
		{"dict configdrive too old", "1.55", map[string]any{"target": "active", "configdrive": map[string]any{"user_data": "x"}}, 406, "Request not acceptable.", ""},
		{"vendor_data too old", "1.58", map[string]any{"target": "active", "configdrive": map[string]any{"vendor_data": map[string]any{}}}, 406, "Request not acceptable.", ""},
		{"bad configdrive key", "1.89", map[string]any{"target": "active", "configdrive": map[string]any{"bogus": 1}}, 400,
			"Invalid configdrive: Additional properties are not allowed ('bogus' was unexpected)", ""},
		{"deploy verb too old", "1.72", map[string]any{"target": "deploy"}, 406, "Request not acceptable.", ""},
		{"disable_ramdisk with deploy", "1.89", map[string]any{"target": "active", "disable_ramdisk": true}, 400,
			`"disable_ramdisk" can be passed only with "clean" or "service"`, ""},
		{"abort", "1.89", map[string]any{"target": "abort"}, 202, "", "provision abort"},
		{"inspect", "1.89", map[string]any{"target": "inspect"}, 202, "", "provision inspect"},
		{"rebuild with configdrive", "1.89", map[string]any{"target": "rebuild", "configdrive": "H4sIAAAAAAAC/0vOz0vLTNc1UihJLS5RSCnKLEsFAH0NynYTAAAA"}, 202, "", "provision rebuild"},
		{"deploy with dict configdrive", "1.89", map[string]any{"target": "active", "configdrive": map[string]any{"meta_data": map[string]any{"hostname": "n1"}}}, 202, "", "provision active"},
		{"manual clean", "1.89", map[string]any{"target": "clean", "clean_steps": []any{
			map[string]any{"interface": "deploy", "step": "erase_devices_metadata"},
			map[string]any{"interface": "raid", "step": "create_configuration", "args": map[string]any{"create_root_volume": true}, "reboot_requested": true},
		}}, 202, "", "clean"},
	} {
		a.p.calls = nil
		st, body := put(tc.ver, tc.body)
		if tc.wantFault != "" || tc.status >= 400 {
			a.fault(tc.what, st, body, tc.status, tc.wantFault)
		} else if st != tc.status {
			t.Errorf("%s: %d %v", tc.what, st, body)
		}
		called := ""
		if len(a.p.calls) > 0 {
			called = a.p.calls[0]
		}
		if called != tc.wantCalled {
			t.Errorf("%s: engine call %q, want %q", tc.what, called, tc.wantCalled)
		}
	}
	last := a.p.requests[len(a.p.requests)-1]
	if cd, ok := last.Configdrive.(map[string]any); !ok || cd["meta_data"].(map[string]any)["hostname"] != "n1" {
		t.Errorf("dict configdrive passed as %#v", last.Configdrive)
	}
	if rb := a.p.requests[len(a.p.requests)-2]; rb.Target != "rebuild" || rb.Configdrive != "H4sIAAAAAAAC/0vOz0vLTNc1UihJLS5RSCnKLEsFAH0NynYTAAAA" {
		t.Errorf("rebuild request = %+v", rb)
	}
	if len(a.p.steps) != 2 || a.p.steps[1].Interface != "raid" || a.p.steps[1].Step != "create_configuration" ||
		!a.p.steps[1].Reboots() || !strings.Contains(string(a.p.steps[1].Args), `"create_root_volume":true`) {
		t.Errorf("clean steps = %+v", a.p.steps)
	}
}

func TestInterfacesAndPorts(t *testing.T) {
	a := newTestAPI(t)
	var body map[string]any
	// Metal3 names every interface; the ones the driver provides are fine.
	n := a.createNode(map[string]any{"name": "bmh", "driver": "redfish", "boot_interface": "ipxe",
		"deploy_interface": "direct", "power_interface": "redfish", "management_interface": "redfish",
		"raid_interface": "no-raid", "firmware_interface": "no-firmware", "automated_clean": nil})
	if n["boot_interface"] != "ipxe" || n["power_interface"] != "redfish" {
		t.Fatalf("interfaces = %v", n)
	}
	st, _ := a.do("1.89", "POST", "/v1/nodes", map[string]any{"driver": "redfish", "deploy_interface": "fake"}, &body)
	a.fault("unsupported interface", st, body, 400,
		"deploy interface implementation 'fake' is not supported by hardware type redfish. Supported: direct, custom-agent, autodetect, ramdisk, anaconda, ansible, bootc.")
	if st, _ := a.do("1.89", "PATCH", "/v1/nodes/bmh", []map[string]any{
		{"op": "replace", "path": "/boot_interface", "value": "ipxe"},
		{"op": "add", "path": "/driver_info/redfish_password", "value": "pw"},
	}, &body); st != 200 || body["driver_info"].(map[string]any)["redfish_password"] != "******" {
		t.Fatalf("patch: %d %v", st, body)
	}
	body = nil
	st, _ = a.do("1.89", "PATCH", "/v1/nodes/bmh", []map[string]any{{"op": "replace", "path": "/power_interface", "value": "ipmitool"}}, &body)
	a.fault("patch interface", st, body, 400, "power interface implementation 'ipmitool' is not supported by hardware type redfish. Supported: redfish.")

	var port map[string]any
	if st, _ := a.do("1.89", "POST", "/v1/ports", map[string]any{"address": "52:54:00:AA:BB:CC", "node_uuid": n["uuid"], "pxe_enabled": false}, &port); st != 201 {
		t.Fatalf("port create: %d %v", st, port)
	}
	if port["address"] != "52:54:00:aa:bb:cc" || port["pxe_enabled"] != false || port["name"] != nil {
		t.Fatalf("port = %v", port)
	}
	var old map[string]any
	a.do("1.87", "GET", "/v1/ports/"+port["uuid"].(string), nil, &old)
	if _, ok := old["name"]; ok {
		t.Errorf("port name shown at 1.87")
	}
	var ports map[string][]map[string]any
	a.do("1.89", "GET", "/v1/ports?node=bmh", nil, &ports)
	if len(ports["ports"]) != 1 || ports["ports"][0]["address"] != "52:54:00:aa:bb:cc" {
		t.Fatalf("ports of bmh = %v", ports)
	}
	// The SQLite store cannot update ports in place yet.
	body = nil
	st, _ = a.do("1.89", "PATCH", "/v1/ports/"+port["uuid"].(string), []map[string]any{{"op": "replace", "path": "/pxe_enabled", "value": true}}, &body)
	if _, ok := any(a.st).(PortUpdater); !ok {
		a.fault("port patch", st, body, 501, "")
	} else if st != 200 || body["pxe_enabled"] != true {
		t.Errorf("port patch: %d %v", st, body)
	}
	if st, _ := a.do("1.89", "DELETE", "/v1/ports/"+port["uuid"].(string), nil, nil); st != 204 {
		t.Fatalf("port delete: %d", st)
	}
}

// TestBodyMemoryIsBounded: when the bodies being read hold the whole
// budget, another request waits, then gets 503, rather than taking more.
func TestBodyMemoryIsBounded(t *testing.T) {
	saved, savedWait := bodyMemory, bodyWait
	bodyMemory, bodyWait = semaphore.NewWeighted(1<<20), 100*time.Millisecond
	defer func() { bodyMemory, bodyWait = saved, savedWait }()
	a := newTestAPI(t)
	if !bodyMemory.TryAcquire(1 << 20) {
		t.Fatal("budget taken")
	}
	var body map[string]any
	st, _ := a.do("1.89", "POST", "/v1/nodes", map[string]any{"driver": "fake-hardware"}, &body)
	a.fault("budget spent", st, body, http.StatusServiceUnavailable, "The conductor is busy reading other large requests; retry later.")
	bodyMemory.Release(1 << 20)
	if st, _ := a.do("1.89", "POST", "/v1/nodes", map[string]any{"driver": "fake-hardware"}, nil); st != http.StatusCreated {
		t.Errorf("with the budget back: %d", st)
	}
}
