package redfish

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// fakeBMC is a Redfish service with one ComputerSystem, written from the
// DMTF schema shapes (ServiceRoot, ComputerSystemCollection,
// ComputerSystem with Boot and Actions/#ComputerSystem.Reset,
// SessionService/Sessions). It checks credentials (HTTP basic or a
// session token), validates the reset types and boot override values it
// is sent against the allowable values it advertises, and keeps the
// machine's state for tests to read.
type fakeBMC struct {
	srv      *httptest.Server
	user     string
	password string

	mu         sync.Mutex
	on         bool
	enabled    string // BootSourceOverrideEnabled
	target     string // BootSourceOverrideTarget
	mode       string // BootSourceOverrideMode
	sessions   map[string]bool
	resets     []string
	badRequest []string

	// What tests change of the BIOS and firmware the BMC reports.
	noBios      bool            // the system links no Bios
	noRegistry  bool            // the Bios names no AttributeRegistry
	biosVersion string          // ComputerSystem.BiosVersion ("" omits it)
	bmcVersion  string          // Manager.FirmwareVersion ("" omits it)
	fail        map[string]bool // paths answered with 500
	media       map[string]*fakeMedia
}

// fakeMedia is one of the manager's VirtualMedia devices.
type fakeMedia struct {
	types          []string
	image          string
	writeProtected bool
}

const systemPath = "/redfish/v1/Systems/437XR1138R2"

var (
	resetTypes    = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "PushPowerButton"}
	targetValues  = []string{"None", "Pxe", "Cd", "Hdd", "BiosSetup", "UefiHttp"}
	enabledValues = []string{"Disabled", "Once", "Continuous"}
	modeValues    = []string{"Legacy", "UEFI"}
)

func newFakeBMC(t *testing.T) *fakeBMC {
	b := &fakeBMC{user: "admin", password: "s3cret-pw", enabled: "Disabled", target: "None",
		mode: "UEFI", sessions: map[string]bool{}, biosVersion: "P89 v1.40 (10/06/2020)",
		bmcVersion: "iLO 5 v2.30", fail: map[string]bool{},
		media: map[string]*fakeMedia{"Floppy1": {types: []string{"Floppy", "USBStick"}},
			"CD1": {types: []string{"CD", "DVD"}}, "CD2": {types: []string{"CD", "DVD"}}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /redfish/v1/{$}", b.serviceRoot)
	mux.HandleFunc("GET /redfish/v1/Systems", b.auth(b.systems))
	mux.HandleFunc("GET "+systemPath, b.auth(b.system))
	mux.HandleFunc("PATCH "+systemPath, b.auth(b.patchSystem))
	mux.HandleFunc("POST "+systemPath+"/Actions/ComputerSystem.Reset", b.auth(b.reset))
	mux.HandleFunc("GET "+systemPath+"/Bios", b.auth(b.bios))
	mux.HandleFunc("GET /redfish/v1/Registries", b.auth(b.registries))
	mux.HandleFunc("GET "+registryFilePath, b.auth(b.registryFile))
	mux.HandleFunc("GET /redfish/v1/Registries/Base", b.auth(b.baseRegistryFile))
	mux.HandleFunc("GET "+registryPath, b.auth(b.registry))
	mux.HandleFunc("GET /redfish/v1/Managers", b.auth(b.managers))
	mux.HandleFunc("GET "+managerPath, b.auth(b.manager))
	mux.HandleFunc("GET "+managerPath+"/VirtualMedia", b.auth(b.mediaCollection))
	mux.HandleFunc("GET "+managerPath+"/VirtualMedia/{id}", b.auth(b.mediaDevice))
	mux.HandleFunc("POST "+managerPath+"/VirtualMedia/{id}/Actions/VirtualMedia.InsertMedia", b.auth(b.insertMedia))
	mux.HandleFunc("POST "+managerPath+"/VirtualMedia/{id}/Actions/VirtualMedia.EjectMedia", b.auth(b.ejectMedia))
	mux.HandleFunc("POST /redfish/v1/SessionService/Sessions", b.createSession)
	mux.HandleFunc("DELETE /redfish/v1/SessionService/Sessions/{id}", b.auth(b.deleteSession))
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBMC) machine() (on bool, enabled, target, mode string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.on, b.enabled, b.target, b.mode
}

func (b *fakeBMC) setPower(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = on
}

func (b *fakeBMC) openSessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// redfishError answers with the Redfish error shape.
func redfishError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": "Base.1.8." + code, "message": msg,
		"@Message.ExtendedInfo": []any{map[string]any{"MessageId": "Base.1.8." + code, "Message": msg}},
	}})
}

func (b *fakeBMC) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		ok := b.sessions[r.Header.Get("X-Auth-Token")]
		b.mu.Unlock()
		if u, p, basic := r.BasicAuth(); basic && u == b.user && p == b.password {
			ok = true
		}
		b.mu.Lock()
		fail := b.fail[r.URL.Path]
		b.mu.Unlock()
		if ok && fail {
			redfishError(w, http.StatusInternalServerError, "InternalError", "The request failed due to an internal service error.")
			return
		}
		if !ok {
			redfishError(w, http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
			return
		}
		h(w, r)
	}
}

func (b *fakeBMC) serviceRoot(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.type": "#ServiceRoot.v1_11_0.ServiceRoot", "@odata.id": "/redfish/v1/",
		"Id": "RootService", "Name": "Root Service", "RedfishVersion": "1.11.0",
		"UUID":           "92384634-2938-2342-8820-489239905423",
		"Systems":        map[string]any{"@odata.id": "/redfish/v1/Systems"},
		"SessionService": map[string]any{"@odata.id": "/redfish/v1/SessionService"},
		"Managers":       map[string]any{"@odata.id": "/redfish/v1/Managers"},
		"Registries":     map[string]any{"@odata.id": "/redfish/v1/Registries"},
		"Links":          map[string]any{"Sessions": map[string]any{"@odata.id": "/redfish/v1/SessionService/Sessions"}},
	})
}

func (b *fakeBMC) systems(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.type": "#ComputerSystemCollection.ComputerSystemCollection", "@odata.id": "/redfish/v1/Systems",
		"Name": "Computer System Collection", "Members@odata.count": 1,
		"Members": []any{map[string]any{"@odata.id": systemPath}},
	})
}

func (b *fakeBMC) system(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ps := "Off"
	if b.on {
		ps = "On"
	}
	doc := map[string]any{
		"@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem", "@odata.id": systemPath,
		"@odata.etag": fmt.Sprintf(`W/"%d"`, len(b.resets)),
		"Id":          "437XR1138R2", "Name": "WebFrontEnd483", "SystemType": "Physical",
		"PowerState": ps,
		"Boot": map[string]any{
			"BootSourceOverrideEnabled":                        b.enabled,
			"BootSourceOverrideTarget":                         b.target,
			"BootSourceOverrideTarget@Redfish.AllowableValues": targetValues,
			"BootSourceOverrideMode":                           b.mode,
		},
		"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
			"target":                            systemPath + "/Actions/ComputerSystem.Reset",
			"ResetType@Redfish.AllowableValues": resetTypes,
		}},
		"Links": map[string]any{"ManagedBy": []any{map[string]any{"@odata.id": managerPath}}},
	}
	if b.biosVersion != "" {
		doc["BiosVersion"] = b.biosVersion
	}
	if !b.noBios {
		doc["Bios"] = map[string]any{"@odata.id": systemPath + "/Bios"}
	}
	writeJSON(w, http.StatusOK, doc)
}

func (b *fakeBMC) reset(w http.ResponseWriter, r *http.Request) {
	var body struct{ ResetType string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !slices.Contains(resetTypes, body.ResetType) {
		redfishError(w, http.StatusBadRequest, "ActionParameterNotSupported", "invalid ResetType")
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resets = append(b.resets, body.ResetType)
	switch body.ResetType {
	case "On", "ForceRestart", "GracefulRestart":
		b.on = true
	case "ForceOff", "GracefulShutdown":
		b.on = false
	case "PushPowerButton":
		b.on = !b.on
	}
	w.WriteHeader(http.StatusNoContent)
}

func (b *fakeBMC) patchSystem(w http.ResponseWriter, r *http.Request) {
	var body map[string]map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body) != 1 || body["Boot"] == nil {
		redfishError(w, http.StatusBadRequest, "PropertyUnknown", "only Boot may be patched")
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	boot := body["Boot"]
	check := func(key string, allowed []string, dst *string) bool {
		v, ok := boot[key]
		if !ok {
			return true
		}
		s, isString := v.(string)
		if !isString || !slices.Contains(allowed, s) {
			b.badRequest = append(b.badRequest, fmt.Sprintf("%s=%v", key, v))
			return false
		}
		*dst = s
		return true
	}
	enabled, target, mode := b.enabled, b.target, b.mode
	if !check("BootSourceOverrideEnabled", enabledValues, &enabled) || !check("BootSourceOverrideTarget", targetValues, &target) ||
		!check("BootSourceOverrideMode", modeValues, &mode) {
		redfishError(w, http.StatusBadRequest, "PropertyValueNotInList", "invalid Boot value")
		return
	}
	b.enabled, b.target, b.mode = enabled, target, mode
	w.WriteHeader(http.StatusNoContent)
}

func (b *fakeBMC) createSession(w http.ResponseWriter, r *http.Request) {
	var body struct{ UserName, Password string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.UserName != b.user || body.Password != b.password {
		redfishError(w, http.StatusUnauthorized, "NoValidSession", "invalid credentials")
		return
	}
	b.mu.Lock()
	id := fmt.Sprint(len(b.sessions) + 1)
	token := "token-" + id
	b.sessions[token] = true
	b.mu.Unlock()
	w.Header().Set("X-Auth-Token", token)
	w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/"+token)
	writeJSON(w, http.StatusCreated, map[string]any{"@odata.id": "/redfish/v1/SessionService/Sessions/" + token,
		"Id": id, "UserName": body.UserName})
}

func (b *fakeBMC) deleteSession(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	delete(b.sessions, r.PathValue("id"))
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// The BIOS and firmware resources, shaped like the DMTF mockups and an
// HPE iLO 5: a Bios whose Attributes are described by an attribute
// registry that the service's Registries collection locates.
const (
	managerPath      = "/redfish/v1/Managers/1"
	registryID       = "BiosAttributeRegistryP89.v1_0_0"
	registryFilePath = "/redfish/v1/Registries/BiosAttributeRegistryP89.v1_0_0"
	registryPath     = "/redfish/v1/Registries/BiosAttributeRegistryP89.v1_0_0/BiosAttributeRegistryP89.v1_0_0.json"
)

func (b *fakeBMC) bios(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noBios {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
		return
	}
	doc := map[string]any{
		"@odata.type": "#Bios.v1_1_0.Bios", "@odata.id": systemPath + "/Bios",
		"Id": "BIOS", "Name": "BIOS Configuration Current Settings",
		"AttributeRegistry": registryID,
		"Attributes": map[string]any{
			"AdminPhone":         "",
			"BootMode":           "Uefi",
			"EmbeddedSata":       "Raid",
			"NicBoot1":           "NetworkBoot",
			"ProcTurboMode":      "Enabled",
			"ProcCoreDisable":    0,
			"UsbControl":         "UsbEnabled",
			"QuietBoot":          true,
			"SerialNumber":       "437XR1138R2",
			"PowerOnDelay":       30.0,
			"OemPassword":        nil,
			"WorkloadProfile":    "GeneralPowerEfficientCompute",
			"ServiceEmail":       "ops@example.com",
			"SriovGlobalEnable":  false,
			"ThermalShutdownLow": -5,
		},
		"@Redfish.Settings": map[string]any{"@odata.type": "#Settings.v1_3_0.Settings",
			"SettingsObject": map[string]any{"@odata.id": systemPath + "/Bios/Settings"}},
		"Actions": map[string]any{"#Bios.ResetBios": map[string]any{"target": systemPath + "/Bios/Actions/Bios.ResetBios"}},
	}
	if b.noRegistry {
		delete(doc, "AttributeRegistry")
	}
	writeJSON(w, http.StatusOK, doc)
}

func (b *fakeBMC) registries(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.type": "#MessageRegistryFileCollection.MessageRegistryFileCollection", "@odata.id": "/redfish/v1/Registries",
		"Name": "Registry File Collection", "Members@odata.count": 2,
		"Members": []any{map[string]any{"@odata.id": "/redfish/v1/Registries/Base"},
			map[string]any{"@odata.id": registryFilePath}},
	})
}

func (b *fakeBMC) registryFile(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.type": "#MessageRegistryFile.v1_1_0.MessageRegistryFile", "@odata.id": registryFilePath,
		"Id": registryID, "Name": "BIOS Attribute Registry File", "Registry": registryID,
		"Languages": []string{"de", "en"},
		"Location": []any{
			map[string]any{"Language": "de", "Uri": registryFilePath + "/de.json"},
			map[string]any{"Language": "en", "Uri": registryPath},
		},
	})
}

func (b *fakeBMC) baseRegistryFile(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.type": "#MessageRegistryFile.v1_1_0.MessageRegistryFile", "@odata.id": "/redfish/v1/Registries/Base",
		"Id": "Base", "Name": "Base Message Registry File", "Registry": "Base.1.8",
		"Languages": []string{"en"},
		"Location": []any{map[string]any{"Language": "en",
			"PublicationUri": "https://redfish.dmtf.org/registries/Base.1.8.1.json"}},
	})
}

func (b *fakeBMC) registry(w http.ResponseWriter, r *http.Request) {
	enum := func(names ...string) []any {
		out := make([]any, len(names))
		for i, n := range names {
			out[i] = map[string]any{"ValueName": n, "ValueDisplayName": n}
		}
		return out
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.type": "#AttributeRegistry.v1_3_0.AttributeRegistry", "@odata.id": registryPath,
		"Id": registryID, "Name": "BIOS Attribute Registry", "Language": "en", "OwningEntity": "Contoso",
		"RegistryVersion":  "1.0.0",
		"SupportedSystems": []any{map[string]any{"ProductName": "Contoso Server", "SystemId": "P89", "FirmwareVersion": "v1.40"}},
		"RegistryEntries": map[string]any{
			"Attributes": []any{
				map[string]any{"AttributeName": "BootMode", "Type": "Enumeration", "DisplayName": "Boot Mode",
					"Value": enum("Uefi", "LegacyBios"), "ResetRequired": true, "ReadOnly": false},
				map[string]any{"AttributeName": "ProcTurboMode", "Type": "Enumeration", "DisplayName": "Turbo Boost",
					"Value": enum("Enabled", "Disabled"), "ResetRequired": true},
				map[string]any{"AttributeName": "ProcCoreDisable", "Type": "Integer", "DisplayName": "Disabled cores",
					"LowerBound": 0, "UpperBound": 24, "ScalarIncrement": 1, "ResetRequired": true},
				map[string]any{"AttributeName": "AdminPhone", "Type": "String", "DisplayName": "Admin phone",
					"MinLength": 0, "MaxLength": 30, "ValueExpression": "^[0-9 +-]*$"},
				map[string]any{"AttributeName": "SerialNumber", "Type": "String", "DisplayName": "Serial Number",
					"MinLength": 0, "MaxLength": 16, "ReadOnly": true, "IsSystemUniqueProperty": true},
				map[string]any{"AttributeName": "QuietBoot", "Type": "Boolean", "DisplayName": "Quiet boot"},
				map[string]any{"AttributeName": "OemPassword", "Type": "Password", "DisplayName": "Setup password",
					"MinLength": 8, "MaxLength": 32, "WriteOnly": true},
			},
			"Menus": []any{map[string]any{"MenuName": "SystemOptions", "DisplayName": "System Options", "MenuPath": "./SystemOptions"}},
		},
	})
}

func (b *fakeBMC) managers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.type": "#ManagerCollection.ManagerCollection", "@odata.id": "/redfish/v1/Managers",
		"Name": "Manager Collection", "Members@odata.count": 1,
		"Members": []any{map[string]any{"@odata.id": managerPath}},
	})
}

func (b *fakeBMC) manager(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	doc := map[string]any{
		"@odata.type": "#Manager.v1_10_0.Manager", "@odata.id": managerPath,
		"Id": "1", "Name": "Manager", "ManagerType": "BMC", "Model": "iLO 5",
		"Status":       map[string]any{"State": "Enabled", "Health": "OK"},
		"VirtualMedia": map[string]any{"@odata.id": managerPath + "/VirtualMedia"},
		"Links":        map[string]any{"ManagerForServers": []any{map[string]any{"@odata.id": systemPath}}},
	}
	if b.bmcVersion != "" {
		doc["FirmwareVersion"] = b.bmcVersion
	}
	writeJSON(w, http.StatusOK, doc)
}

// set changes the fake's state under its lock.
func (b *fakeBMC) set(f func(b *fakeBMC)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

// mediaIDs are the VirtualMedia devices in the order the BMC lists them.
var mediaIDs = []string{"Floppy1", "CD1", "CD2"}

func (b *fakeBMC) mediaCollection(w http.ResponseWriter, r *http.Request) {
	members := make([]any, len(mediaIDs))
	for i, id := range mediaIDs {
		members[i] = map[string]any{"@odata.id": managerPath + "/VirtualMedia/" + id}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.type": "#VirtualMediaCollection.VirtualMediaCollection", "@odata.id": managerPath + "/VirtualMedia",
		"Name": "Virtual Media Services", "Members@odata.count": len(members), "Members": members,
	})
}

// mediaOf returns the device the request names, or answers 404.
func (b *fakeBMC) mediaOf(w http.ResponseWriter, r *http.Request) *fakeMedia {
	m := b.media[r.PathValue("id")]
	if m == nil {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
	}
	return m
}

func (b *fakeBMC) mediaDevice(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.mediaOf(w, r)
	if m == nil {
		return
	}
	id := r.PathValue("id")
	p := managerPath + "/VirtualMedia/" + id
	doc := map[string]any{
		"@odata.type": "#VirtualMedia.v1_3_0.VirtualMedia", "@odata.id": p, "Id": id, "Name": "Virtual Removable Media",
		"MediaTypes": m.types, "Image": nil, "ImageName": "", "Inserted": m.image != "",
		"WriteProtected": m.writeProtected, "ConnectedVia": "NotConnected",
		"Actions": map[string]any{
			"#VirtualMedia.InsertMedia": map[string]any{"target": p + "/Actions/VirtualMedia.InsertMedia"},
			"#VirtualMedia.EjectMedia":  map[string]any{"target": p + "/Actions/VirtualMedia.EjectMedia"},
		},
	}
	if m.image != "" {
		doc["Image"], doc["ConnectedVia"] = m.image, "URI"
	}
	writeJSON(w, http.StatusOK, doc)
}

func (b *fakeBMC) insertMedia(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Image          string
		Inserted       *bool
		WriteProtected *bool
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Image == "" {
		redfishError(w, http.StatusBadRequest, "ActionParameterMissing", "Image is required")
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.mediaOf(w, r)
	if m == nil {
		return
	}
	if m.image != "" {
		redfishError(w, http.StatusConflict, "ResourceInUse", "The device already holds an image.")
		return
	}
	m.image = body.Image
	m.writeProtected = body.WriteProtected == nil || *body.WriteProtected
	w.WriteHeader(http.StatusNoContent)
}

func (b *fakeBMC) ejectMedia(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.mediaOf(w, r)
	if m == nil {
		return
	}
	if m.image == "" {
		redfishError(w, http.StatusBadRequest, "ActionNotSupported", "No image is inserted.")
		return
	}
	m.image, m.writeProtected = "", false
	w.WriteHeader(http.StatusNoContent)
}

// images returns the image of each device ("" when empty).
func (b *fakeBMC) images() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]string{}
	for id, m := range b.media {
		out[id] = m.image
	}
	return out
}
