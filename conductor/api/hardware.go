package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// NodeHardware reads and changes what a node's BMC keeps beyond power:
// BIOS settings, firmware versions, virtual media and vendor methods
// (provision.Hardware).
type NodeHardware interface {
	BIOSSettings(ctx context.Context, ident string) ([]power.BIOSSetting, error)
	FirmwareComponents(ctx context.Context, ident string) ([]power.FirmwareComponent, error)
	VirtualMedia(ctx context.Context, ident string) ([]power.VirtualMedia, error)
	AttachVirtualMedia(ctx context.Context, ident, deviceType, imageURL string) error
	DetachVirtualMedia(ctx context.Context, ident string, deviceTypes []string) error
	VendorMethods(ctx context.Context, ident string) (map[string]provision.VendorMethod, error)
	VendorPassthru(ctx context.Context, ident, method, httpMethod string, args map[string]any) (any, error)
}

// API minor versions of the hardware endpoints.
const (
	minorBIOS          = 40
	minorBIOSDetail    = 74
	minorFirmware      = 86
	minorVMediaAttach  = 89
	minorVMediaGet     = 93
	minorTargetRAIDSet = 12
)

// notAcceptable is Ironic's 406 for a request older than the feature.
func notAcceptable() error { return errdefs.NotAcceptable("Request not acceptable.") }

// errNoHardware answers when the API runs without a hardware service.
func errNoHardware() error {
	return errdefs.NotImplemented("This conductor does not read BMC data.")
}

// biosDoc renders a BIOS setting; detail adds the registry fields (1.74).
func (s *Server) biosDoc(r *http.Request, nodeUUID string, b power.BIOSSetting, detail bool) map[string]any {
	doc := map[string]any{"name": b.Name, "value": b.Value, "created_at": nil, "updated_at": nil,
		"links": []wire.Link{{Href: s.baseURL(r) + "/v1/nodes/" + nodeUUID + "/bios/" + b.Name, Rel: "self"},
			{Href: s.baseURL(r) + "/nodes/" + nodeUUID + "/bios/" + b.Name, Rel: "bookmark"}}}
	if detail {
		intOrNil := func(p *int) any {
			if p == nil {
				return nil
			}
			return *p
		}
		boolOrNil := func(p *bool) any {
			if p == nil {
				return nil
			}
			return *p
		}
		var allowed any
		if b.AllowableValues != nil {
			allowed = b.AllowableValues
		}
		doc["attribute_type"] = nullable(b.AttributeType)
		doc["allowable_values"] = allowed
		doc["lower_bound"] = intOrNil(b.LowerBound)
		doc["upper_bound"] = intOrNil(b.UpperBound)
		doc["min_length"] = intOrNil(b.MinLength)
		doc["max_length"] = intOrNil(b.MaxLength)
		doc["read_only"] = boolOrNil(b.ReadOnly)
		doc["reset_required"] = boolOrNil(b.ResetRequired)
		doc["unique"] = boolOrNil(b.Unique)
	}
	return doc
}

// nodeBIOS serves GET /v1/nodes/{ident}/bios[?detail=true] (1.40; detail
// 1.74) and GET /v1/nodes/{ident}/bios/{setting}.
func (s *Server) nodeBIOS(w http.ResponseWriter, r *http.Request, v version) {
	detail, err := boolParam(r, "detail")
	switch {
	case err != nil:
	case v.minor < minorBIOS:
		err = notAcceptable()
	case detail != nil && *detail && v.minor < minorBIOSDetail:
		err = notAcceptable()
	case s.cfg.Hardware == nil:
		err = errNoHardware()
	}
	var n *store.Node
	if err == nil {
		n, err = s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	}
	var settings []power.BIOSSetting
	if err == nil {
		settings, err = s.cfg.Hardware.BIOSSettings(r.Context(), n.UUID)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if name := r.PathValue("setting"); name != "" {
		for _, b := range settings {
			if b.Name == name {
				writeJSON(w, http.StatusOK, map[string]any{name: s.biosDoc(r, n.UUID, b, v.minor >= minorBIOSDetail)})
				return
			}
		}
		s.writeError(w, r, errdefs.NotFound("Node %s doesn't have a BIOS setting '%s'", n.UUID, name))
		return
	}
	out := make([]map[string]any, len(settings))
	for i, b := range settings {
		out[i] = s.biosDoc(r, n.UUID, b, detail != nil && *detail)
	}
	writeJSON(w, http.StatusOK, map[string]any{"bios": out})
}

// nodeFirmware serves GET /v1/nodes/{ident}/firmware (1.86): the
// components read from the BMC, created with the node.
func (s *Server) nodeFirmware(w http.ResponseWriter, r *http.Request, v version) {
	var err error
	switch {
	case v.minor < minorFirmware:
		err = notAcceptable()
	case s.cfg.Hardware == nil:
		err = errNoHardware()
	}
	var n *store.Node
	if err == nil {
		n, err = s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	}
	var comps []power.FirmwareComponent
	if err == nil {
		comps, err = s.cfg.Hardware.FirmwareComponents(r.Context(), n.UUID)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	created := n.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000-07:00")
	out := make([]map[string]any, len(comps))
	for i, c := range comps {
		out[i] = map[string]any{"component": c.Component, "initial_version": c.CurrentVersion,
			"current_version": c.CurrentVersion, "last_version_flashed": nil, "created_at": created, "updated_at": nil}
	}
	writeJSON(w, http.StatusOK, map[string]any{"firmware": out})
}

// vmediaBody is the body of POST /v1/nodes/{ident}/vmedia.
type vmediaBody struct {
	DeviceType          string  `json:"device_type"`
	ImageURL            string  `json:"image_url"`
	ImageDownloadSource *string `json:"image_download_source"`
}

// vmediaDeviceTypes are the device types Ironic's vmedia API takes.
var vmediaDeviceTypes = map[string]bool{"cdrom": true, "floppy": true, "dvd": true, "usb": true}

// nodeVMedia serves GET (1.93), POST and DELETE (1.89)
// /v1/nodes/{ident}/vmedia. GET answers a bare JSON list, as Ironic's
// Redfish driver does.
func (s *Server) nodeVMedia(w http.ResponseWriter, r *http.Request, v version) {
	var err error
	switch {
	case r.Method == http.MethodGet && v.minor < minorVMediaGet, v.minor < minorVMediaAttach:
		err = notAcceptable()
	case s.cfg.Hardware == nil:
		err = errNoHardware()
	}
	var n *store.Node
	if err == nil {
		n, err = s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch r.Method {
	case http.MethodGet:
		l, err := s.cfg.Hardware.VirtualMedia(r.Context(), n.UUID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out := make([]map[string]any, len(l))
		for i, m := range l {
			types := m.MediaTypes
			if types == nil {
				types = []string{}
			}
			out[i] = map[string]any{"image": m.Image, "inserted": m.Inserted, "media_types": types}
		}
		writeJSON(w, http.StatusOK, out)
	case http.MethodPost:
		var body vmediaBody
		if err := decodeBody(w, r, maxBody, &body); err != nil {
			s.writeError(w, r, err)
			return
		}
		switch {
		case !vmediaDeviceTypes[body.DeviceType]:
			err = errdefs.InvalidArgument("Invalid device_type %q: one of cdrom, dvd, floppy, usb is required.", body.DeviceType)
		case body.ImageURL == "":
			err = errdefs.InvalidArgument("'image_url' is a required property")
		default:
			err = s.cfg.Hardware.AttachVirtualMedia(r.Context(), n.UUID, body.DeviceType, body.ImageURL)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		var types []string
		for _, list := range r.URL.Query()["device_types"] {
			for _, t := range strings.Split(list, ",") {
				if t = strings.TrimSpace(t); t != "" {
					if !vmediaDeviceTypes[t] {
						s.writeError(w, r, errdefs.InvalidArgument("Invalid device type %q.", t))
						return
					}
					types = append(types, t)
				}
			}
		}
		if err := s.cfg.Hardware.DetachVirtualMedia(r.Context(), n.UUID, types); err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// vendorMethods serves GET /v1/nodes/{ident}/vendor_passthru/methods.
func (s *Server) vendorMethods(w http.ResponseWriter, r *http.Request, v version) {
	if s.cfg.Hardware == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	var methods map[string]provision.VendorMethod
	if err == nil {
		methods, err = s.cfg.Hardware.VendorMethods(r.Context(), n.UUID)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := map[string]any{}
	for name, m := range methods {
		out[name] = map[string]any{"http_methods": m.HTTPMethods, "async": m.Async, "description": m.Description,
			"attach": m.Attach, "require_exclusive_lock": m.RequireLock}
	}
	writeJSON(w, http.StatusOK, out)
}

// vendorPassthru serves /v1/nodes/{ident}/vendor_passthru?method=…: the
// JSON body (if any) is the method's arguments; a synchronous method's
// result is answered with 200, nothing with 204.
func (s *Server) vendorPassthru(w http.ResponseWriter, r *http.Request, v version) {
	method := r.URL.Query().Get("method")
	if method == "" {
		s.writeError(w, r, errdefs.InvalidArgument("Method not specified"))
		return
	}
	var args map[string]any
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, maxBody, &args); err != nil && !strings.Contains(err.Error(), "EOF") {
			s.writeError(w, r, err)
			return
		}
	}
	if s.cfg.Hardware == nil {
		s.writeError(w, r, errdefs.InvalidArgument("Unsupported method (%s) passed through to vendor extension.", method))
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	var out any
	if err == nil {
		out, err = s.cfg.Hardware.VendorPassthru(r.Context(), n.UUID, method, r.Method, args)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if out == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// raidBody checks a target RAID configuration as Ironic's RAID schema
// does: {} clears it; otherwise logical_disks is a non-empty list of
// objects, each with size_gb (a number or "MAX") and a known raid_level.
func checkTargetRAID(cfg map[string]any) error {
	if len(cfg) == 0 {
		return nil
	}
	for k := range cfg {
		if k != "logical_disks" {
			return errdefs.InvalidArgument("RAID config validation error: Additional properties are not allowed ('%s' was unexpected)", k)
		}
	}
	disks, ok := cfg["logical_disks"].([]any)
	if !ok || len(disks) == 0 {
		return errdefs.InvalidArgument("RAID config validation error: 'logical_disks' must be a non-empty list")
	}
	levels := map[string]bool{"0": true, "1": true, "2": true, "5": true, "6": true, "1+0": true, "5+0": true, "6+0": true}
	for i, d := range disks {
		m, ok := d.(map[string]any)
		if !ok {
			return errdefs.InvalidArgument("RAID config validation error: logical disk %d is not an object", i)
		}
		switch sz := m["size_gb"].(type) {
		case json.Number, float64:
		case string:
			if sz != "MAX" {
				return errdefs.InvalidArgument("RAID config validation error: logical disk %d: size_gb %q is neither a number nor 'MAX'", i, sz)
			}
		default:
			return errdefs.InvalidArgument("RAID config validation error: logical disk %d: 'size_gb' is a required property", i)
		}
		lvl, _ := m["raid_level"].(string)
		if !levels[lvl] {
			return errdefs.InvalidArgument("RAID config validation error: logical disk %d: raid_level %v is not one of 0, 1, 2, 5, 6, 1+0, 5+0, 6+0", i, m["raid_level"])
		}
	}
	return nil
}

// setTargetRAID serves PUT /v1/nodes/{ident}/states/raid (1.12): the
// target RAID configuration is stored (204); a node whose RAID interface
// is no-raid gets Ironic's 404. Applying it is the RAID interface's clean
// steps.
func (s *Server) setTargetRAID(w http.ResponseWriter, r *http.Request, v version) {
	if v.minor < minorTargetRAIDSet {
		s.writeError(w, r, notAcceptable())
		return
	}
	var cfg map[string]any
	if err := decodeBody(w, r, maxBody, &cfg); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkTargetRAID(cfg); err != nil {
		s.writeError(w, r, err)
		return
	}
	var stored map[string]any
	b, _ := json.Marshal(cfg)
	_ = json.Unmarshal(b, &stored)
	err := s.cfg.Store.WithNodeLock(r.Context(), r.PathValue("ident"), func(tx store.Tx) error {
		n := tx.Node()
		if hardwaretype.Of(n.Driver, n.Interfaces)["raid_interface"] == "no-raid" {
			return errdefs.NotFound("Driver %s does not support raid (disabled or not implemented).", n.Driver)
		}
		n.TargetRAIDConfig = stored
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
