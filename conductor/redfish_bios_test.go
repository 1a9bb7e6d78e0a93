package conductor_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/fakeagent"
	"github.com/rivetmetal/rivet/conductor/power/redfish"
	"github.com/rivetmetal/rivet/internal/conductortest"
)

// redfishBIOSBMC is a Redfish service, shaped like the DMTF mockups, with
// one system that has a Bios described by an attribute registry and a
// manager with a firmware version; it takes HTTP basic authentication.
func redfishBIOSBMC(t *testing.T) *httptest.Server {
	const (
		sys      = "/redfish/v1/Systems/1"
		mgr      = "/redfish/v1/Managers/1"
		regID    = "BiosAttributeRegistryX1.v1_0_0"
		regFile  = "/redfish/v1/Registries/" + regID
		registry = regFile + "/" + regID + ".json"
	)
	ref := func(p string) map[string]any { return map[string]any{"@odata.id": p} }
	docs := map[string]any{
		"/redfish/v1/": map[string]any{"@odata.type": "#ServiceRoot.v1_11_0.ServiceRoot", "@odata.id": "/redfish/v1/",
			"Id": "RootService", "RedfishVersion": "1.11.0", "Systems": ref("/redfish/v1/Systems"),
			"Managers": ref("/redfish/v1/Managers"), "Registries": ref("/redfish/v1/Registries")},
		"/redfish/v1/Systems": map[string]any{"@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
			"@odata.id": "/redfish/v1/Systems", "Members@odata.count": 1, "Members": []any{ref(sys)}},
		sys: map[string]any{"@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem", "@odata.id": sys, "Id": "1",
			"PowerState": "Off", "BiosVersion": "U46 v2.72", "Bios": ref(sys + "/Bios"),
			"Boot":  map[string]any{"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None"},
			"Links": map[string]any{"ManagedBy": []any{ref(mgr)}}},
		sys + "/Bios": map[string]any{"@odata.type": "#Bios.v1_1_0.Bios", "@odata.id": sys + "/Bios", "Id": "BIOS",
			"AttributeRegistry": regID,
			"Attributes":        map[string]any{"ProcVirtualization": "Enabled", "PowerOnDelay": 30, "QuietBoot": false}},
		"/redfish/v1/Registries": map[string]any{"@odata.type": "#MessageRegistryFileCollection.MessageRegistryFileCollection",
			"@odata.id": "/redfish/v1/Registries", "Members@odata.count": 1, "Members": []any{ref(regFile)}},
		regFile: map[string]any{"@odata.type": "#MessageRegistryFile.v1_1_0.MessageRegistryFile", "@odata.id": regFile,
			"Id": regID, "Registry": regID, "Languages": []string{"en"},
			"Location": []any{map[string]any{"Language": "en", "Uri": registry}}},
		registry: map[string]any{"@odata.type": "#AttributeRegistry.v1_3_0.AttributeRegistry", "@odata.id": registry,
			"Id": regID, "Language": "en", "RegistryVersion": "1.0.0", "OwningEntity": "Contoso",
			"RegistryEntries": map[string]any{"Attributes": []any{
				map[string]any{"AttributeName": "ProcVirtualization", "Type": "Enumeration", "ResetRequired": true,
					"Value": []any{map[string]any{"ValueName": "Enabled"}, map[string]any{"ValueName": "Disabled"}}},
				map[string]any{"AttributeName": "PowerOnDelay", "Type": "Integer", "LowerBound": 0, "UpperBound": 120},
			}}},
		"/redfish/v1/Managers": map[string]any{"@odata.type": "#ManagerCollection.ManagerCollection",
			"@odata.id": "/redfish/v1/Managers", "Members@odata.count": 1, "Members": []any{ref(mgr)}},
		mgr: map[string]any{"@odata.type": "#Manager.v1_10_0.Manager", "@odata.id": mgr, "Id": "1",
			"ManagerType": "BMC", "FirmwareVersion": "7.00.00.171"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc, ok := docs[r.URL.Path]
		u, p, basic := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path != "/redfish/v1/" && (!basic || u != "admin" || p != "pw"):
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"Base.1.8.NoValidSession","message":"no valid session"}}`))
		case r.Method != http.MethodGet || !ok:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"Base.1.8.ResourceMissingAtURI","message":"not found"}}`))
		default:
			_ = json.NewEncoder(w).Encode(doc)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRedfishBIOSAndFirmware: GET /v1/nodes/{id}/bios and /firmware of a
// redfish node answer what its BMC's Bios, attribute registry, system and
// manager report.
func TestRedfishBIOSAndFirmware(t *testing.T) {
	bmc := redfishBIOSBMC(t)
	h := conductortest.New(t, fakeagent.Config{})
	cfg := h.Config()
	cfg.Drivers = append(cfg.Drivers, redfish.New(redfish.Config{Timeout: 5 * time.Second}),
		redfish.New(redfish.Config{Timeout: 5 * time.Second, Name: redfish.IDRACName}))
	h.Start(cfg)
	// The idrac hardware type reads the same through its idrac-redfish
	// interfaces.
	for _, c := range []struct{ driver, bios, firmware string }{
		{"redfish", "redfish", "redfish"},
		{"idrac", "idrac-redfish", "redfish"},
	} {
		t.Run(c.driver, func(t *testing.T) { checkBMCReads(t, h, bmc.URL, c.driver, c.bios, c.firmware) })
	}
}

// checkBMCReads creates a node of driver with the given interfaces on the
// fake BMC and reads its BIOS settings and firmware through the API.
func checkBMCReads(t *testing.T, h *conductortest.Harness, bmcURL, driver, biosIface, firmwareIface string) {
	var node map[string]any
	if st := h.CallVersion("1.86", "POST", "/v1/nodes", map[string]any{"name": driver, "driver": driver,
		"bios_interface": biosIface, "firmware_interface": firmwareIface,
		"driver_info": map[string]any{"redfish_address": bmcURL, "redfish_username": "admin",
			"redfish_password": "pw", "redfish_auth_type": "basic"}}, &node); st != http.StatusCreated {
		t.Fatalf("create node: %d %v", st, node)
	}
	var bios struct {
		BIOS []map[string]any `json:"bios"`
	}
	if st := h.CallVersion("1.74", "GET", "/v1/nodes/"+driver+"/bios?detail=true", nil, &bios); st != http.StatusOK {
		t.Fatalf("GET bios: %d", st)
	}
	if len(bios.BIOS) != 3 {
		t.Fatalf("bios = %v, want 3 settings", bios.BIOS)
	}
	byName := map[string]map[string]any{}
	for _, s := range bios.BIOS {
		byName[s["name"].(string)] = s
	}
	pv := byName["ProcVirtualization"]
	if pv["value"] != "Enabled" || pv["attribute_type"] != "Enumeration" || pv["reset_required"] != true {
		t.Errorf("ProcVirtualization = %v", pv)
	}
	if av, _ := pv["allowable_values"].([]any); len(av) != 2 || av[0] != "Enabled" || av[1] != "Disabled" {
		t.Errorf("ProcVirtualization allowable_values = %v", pv["allowable_values"])
	}
	if d := byName["PowerOnDelay"]; d["value"] != "30" || d["lower_bound"] != 0.0 || d["upper_bound"] != 120.0 {
		t.Errorf("PowerOnDelay = %v", d)
	}
	if q := byName["QuietBoot"]; q["value"] != "False" || q["attribute_type"] != nil {
		t.Errorf("QuietBoot (not in the registry) = %v", q)
	}

	var fw struct {
		Firmware []map[string]any `json:"firmware"`
	}
	if st := h.CallVersion("1.86", "GET", "/v1/nodes/"+driver+"/firmware", nil, &fw); st != http.StatusOK {
		t.Fatalf("GET firmware: %d", st)
	}
	want := map[string]string{"bios": "U46 v2.72", "bmc": "7.00.00.171"}
	if len(fw.Firmware) != len(want) {
		t.Fatalf("firmware = %v, want %v", fw.Firmware, want)
	}
	for _, c := range fw.Firmware {
		if v := want[c["component"].(string)]; v == "" || c["current_version"] != v {
			t.Errorf("firmware component %v, want one of %v", c, want)
		}
	}
}
