package api

import (
	"net/http"
	"slices"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/wire"
)

// API minor versions of the drivers API.
const (
	minorRAID             = 12
	minorDriverProperties = 14
	minorDynamicDrivers   = 30
	minorDriverFields     = 77
)

// driverKindMinor hides the interface fields of the drivers API below the
// version that introduced the interface (Ironic's
// hide_fields_in_newer_versions).
var driverKindMinor = map[string]int{"storage": 33, "rescue": 38, "bios": 40, "firmware": 86}

// driverNames are the hardware types this conductor runs: its enabled
// power drivers.
func (s *Server) driverNames() []string {
	names := s.cfg.Drivers.DriverNames()
	slices.Sort(names)
	return names
}

// driverDoc renders a hardware type as GET /v1/drivers shows it; detail
// adds the type and the default and enabled implementations of every
// interface.
func (s *Server) driverDoc(r *http.Request, v version, name string, detail bool) map[string]any {
	base := s.baseURL(r)
	linksTo := func(sub string) []wire.Link {
		return []wire.Link{{Href: base + "/v1/drivers/" + sub, Rel: "self"}, {Href: base + "/drivers/" + sub, Rel: "bookmark"}}
	}
	hosts := []string{}
	if s.cfg.Conductor != "" {
		hosts = append(hosts, s.cfg.Conductor)
	}
	doc := map[string]any{"name": name, "hosts": hosts, "links": linksTo(name)}
	if v.minor >= minorDriverProperties {
		doc["properties"] = linksTo(name + "/properties")
	}
	if v.minor < minorDynamicDrivers {
		return doc
	}
	doc["type"] = "dynamic"
	if !detail {
		return doc
	}
	ty, ok := hardwaretype.Lookup(name)
	for _, kind := range hardwaretype.Kinds {
		if m := driverKindMinor[kind]; v.minor < m {
			continue
		}
		def, enabled := any(nil), []string{}
		if ok {
			def, enabled = ty.Default(kind), ty.Enabled(kind)
		}
		doc["default_"+kind+"_interface"] = def
		doc["enabled_"+kind+"_interfaces"] = enabled
	}
	return doc
}

// listDrivers serves GET /v1/drivers[?type=&detail=&fields=].
func (s *Server) listDrivers(w http.ResponseWriter, r *http.Request, v version) {
	q := r.URL.Query()
	detail, err := boolParam(r, "detail")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	fields, err := s.driverFields(r, v)
	switch {
	case err != nil:
	case detail != nil && v.minor < minorDynamicDrivers:
		err = errdefs.NotAcceptable("Request not acceptable.")
	case q.Get("type") != "" && v.minor < minorDynamicDrivers:
		err = errdefs.NotAcceptable("Request not acceptable.")
	case q.Get("type") != "" && q.Get("type") != "classic" && q.Get("type") != "dynamic":
		err = errdefs.InvalidArgument(`"type" filter must be one of "classic" or "dynamic", if specified.`)
	case fields != nil && detail != nil && *detail:
		err = errdefs.InvalidArgument("Can not specify ?detail=True and fields in the same request.")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := []map[string]any{}
	if q.Get("type") != "classic" {
		for _, name := range s.driverNames() {
			doc := s.driverDoc(r, v, name, detail != nil && *detail)
			if fields != nil {
				doc = ironicjson.Select(doc, fields)
			}
			out = append(out, doc)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"drivers": out})
}

// driverFields reads ?fields= of the drivers API (1.77).
func (s *Server) driverFields(r *http.Request, v version) ([]string, error) {
	if r.URL.Query().Get("fields") == "" {
		return nil, nil
	}
	if v.minor < minorDriverFields {
		return nil, errdefs.NotAcceptable("Request not acceptable.")
	}
	var valid []string
	for k := range s.driverDoc(r, v, "fake-hardware", true) {
		valid = append(valid, k)
	}
	return fieldsParam(r, valid)
}

// driverOf finds an enabled hardware type by name, with Ironic's 404.
func (s *Server) driverOf(name string) error {
	if !s.cfg.Drivers.HasDriver(name) {
		return errdefs.NotFound("Could not find the following driver(s) or hardware type(s): %s.", name)
	}
	return nil
}

// getDriver serves GET /v1/drivers/{name}: always detailed.
func (s *Server) getDriver(w http.ResponseWriter, r *http.Request, v version) {
	name := r.PathValue("name")
	fields, err := s.driverFields(r, v)
	if err == nil {
		err = s.driverOf(name)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	doc := s.driverDoc(r, v, name, true)
	if fields != nil {
		doc = ironicjson.Select(doc, fields)
	}
	writeJSON(w, http.StatusOK, doc)
}

// driverProperties serves GET /v1/drivers/{name}/properties: the
// driver_info keys the hardware type reads, with their descriptions.
func (s *Server) driverProperties(w http.ResponseWriter, r *http.Request, v version) {
	name := r.PathValue("name")
	if err := s.driverOf(name); err != nil {
		s.writeError(w, r, err)
		return
	}
	props := map[string]string{}
	if ty, ok := hardwaretype.Lookup(name); ok {
		props = ty.Properties()
	}
	writeJSON(w, http.StatusOK, props)
}

// raidLogicalDiskProperties are the keys of a logical disk in a target
// RAID configuration (Ironic's RAID_CONFIG_SCHEMA), with their
// descriptions.
var raidLogicalDiskProperties = map[string]string{
	"raid_level":               "RAID level for the logical disk. Valid values are '0', '1', '2', '5', '6', '1+0', '5+0' and '6+0'. Required.",
	"size_gb":                  "Size in GiB (Integer) for the logical disk. Use 'MAX' as size_gb if this logical disk is supposed to use the rest of the space available. Required.",
	"volume_name":              "Name of the volume to be created. If this is not specified, it will be auto-generated. Optional.",
	"is_root_volume":           "Specifies whether this disk is a root volume. By default, this is False. Optional.",
	"share_physical_disks":     "Specifies whether other logical disks can share physical disks with this logical disk. By default, this is False. Optional.",
	"disk_type":                "The type of disk preferred. Valid values are 'hdd' and 'ssd'. If this is not specified, disk type will not be a selection criterion for choosing backing physical disks. Optional.",
	"interface_type":           "The interface type of disk. Valid values are 'sata', 'scsi' and 'sas'. If this is not specified, interface type will not be a selection criterion for choosing backing physical disks. Optional.",
	"number_of_physical_disks": "The number of disks to use for this logical disk. By default, the driver uses the minimum number of disks required for that RAID level. Optional.",
	"controller":               "The name of the controller as read by the RAID interface. In order to trigger the setup of a Software RAID via the Ironic Python Agent, the value of this property needs to be set to 'software'. Optional.",
	"physical_disks":           "The physical disks to use for this logical disk. If not specified, the driver will choose the suitable physical disks to use. Optional.",
}

// driverRAIDProperties serves GET
// /v1/drivers/{name}/raid/logical_disk_properties (1.12): 404 when the
// hardware type's default RAID interface is no-raid, as Ironic answers.
func (s *Server) driverRAIDProperties(w http.ResponseWriter, r *http.Request, v version) {
	name := r.PathValue("name")
	err := s.driverOf(name)
	if err == nil && v.minor < minorRAID {
		err = errdefs.NotAcceptable("Request not acceptable.")
	}
	if ty, ok := hardwaretype.Lookup(name); err == nil && (!ok || ty.Default("raid") == "no-raid") {
		err = errdefs.NotFound("Driver %s does not support raid (disabled or not implemented).", name)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, raidLogicalDiskProperties)
}

// driverVendorMethods serves GET /v1/drivers/{name}/vendor_passthru/methods:
// no hardware type here has driver-level vendor methods.
func (s *Server) driverVendorMethods(w http.ResponseWriter, r *http.Request, v version) {
	if err := s.driverOf(r.PathValue("name")); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}
