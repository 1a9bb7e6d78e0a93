package api

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/api/internal/jsonpatch"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/conductor/store"
)

var macRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// normalizeMAC validates a MAC address and returns it lower-cased (Ironic's
// validate_and_normalize_mac).
func normalizeMAC(s string) (string, bool) {
	m := strings.ToLower(strings.TrimSpace(s))
	return m, macRE.MatchString(m)
}

// portCreate is the body of POST /v1/ports.
type portCreate struct {
	UUID                string         `json:"uuid"`
	Address             string         `json:"address"`
	NodeUUID            string         `json:"node_uuid"`
	NodeIdent           string         `json:"node_ident"`
	Extra               map[string]any `json:"extra"`
	LocalLinkConnection map[string]any `json:"local_link_connection"`
	PXEEnabled          *bool          `json:"pxe_enabled"`
	PhysicalNetwork     *string        `json:"physical_network"`
	IsSmartNIC          *bool          `json:"is_smartnic"`
	PortgroupUUID       *string        `json:"portgroup_uuid"`
	Name                *string        `json:"name"`
	Description         *string        `json:"description"`
	Vendor              *string        `json:"vendor"`
	Category            *string        `json:"category"`
}

// API minor versions of port fields.
const (
	minorPortName        = 88
	minorPortNodeIdent   = 94
	minorPortDescription = 97
	minorPortVendor      = 100
	minorPortCategory    = 101
)

// portAttr is one of the port's string attributes: its field, the
// version that introduced it and its longest value (Ironic's schema).
type portAttr struct {
	field  string
	minor  int
	maxLen int
	ptr    func(p *store.Port) *string
}

var portAttrs = []portAttr{
	{"name", minorPortName, 255, func(p *store.Port) *string { return &p.Name }},
	{"description", minorPortDescription, 255, func(p *store.Port) *string { return &p.Description }},
	{"vendor", minorPortVendor, 32, func(p *store.Port) *string { return &p.Vendor }},
	{"category", minorPortCategory, 80, func(p *store.Port) *string { return &p.Category }},
}

// checkPortAttrs checks the port's attributes against the request's
// version, their lengths and the uniqueness of the name.
func (s *Server) checkPortAttrs(r *http.Request, p *store.Port, given map[string]bool, v version) error {
	for _, a := range portAttrs {
		val := *a.ptr(p)
		if given[a.field] && val != "" && v.minor < a.minor {
			return errdefs.NotAcceptable("Request not acceptable.")
		}
		if len(val) > a.maxLen {
			return errdefs.InvalidArgument("Invalid value for %s: '%s' is too long (at most %d characters)", a.field, val, a.maxLen)
		}
	}
	if p.Name == "" || !given["name"] {
		return nil
	}
	if !validName(p.Name) {
		return errdefs.InvalidArgument("Invalid port name '%s'", p.Name)
	}
	all, err := s.cfg.Store.ListPorts(r.Context(), store.PortFilter{})
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Name == p.Name && o.UUID != p.UUID {
			return errdefs.AlreadyExists("A port with name %s already exists.", p.Name)
		}
	}
	return nil
}

// createPort serves POST /v1/ports.
func (s *Server) createPort(w http.ResponseWriter, r *http.Request, v version) {
	var body portCreate
	if err := decodeBody(w, r, maxBody, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Address == "" {
		s.writeError(w, r, errdefs.InvalidArgument("'address' is a required property"))
		return
	}
	mac, ok := normalizeMAC(body.Address)
	if !ok {
		s.writeError(w, r, errdefs.InvalidArgument("Expected a MAC address but received %s.", body.Address))
		return
	}
	ident := body.NodeUUID
	switch {
	case body.NodeIdent != "" && v.minor < minorPortNodeIdent:
		s.writeError(w, r, errdefs.NotAcceptable("Request not acceptable."))
		return
	case body.NodeIdent != "" && body.NodeUUID != "":
		s.writeError(w, r, errdefs.InvalidArgument("Only one of node_uuid and node_ident may be given."))
		return
	case body.NodeIdent != "":
		ident = body.NodeIdent
	case body.NodeUUID == "":
		s.writeError(w, r, errdefs.InvalidArgument("'node_uuid' is a required property"))
		return
	}
	if body.IsSmartNIC != nil && *body.IsSmartNIC {
		s.writeError(w, r, errdefs.InvalidArgument("Smart NIC ports are not supported."))
		return
	}
	if body.PortgroupUUID != nil && *body.PortgroupUUID != "" {
		s.writeError(w, r, errdefs.InvalidArgument("Port groups are not supported."))
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), ident)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			err = errdefs.InvalidArgument("Node %s could not be found.", ident)
		}
		s.writeError(w, r, err)
		return
	}
	p := &store.Port{NodeID: n.ID, Address: mac, PXEEnabled: true, Extra: body.Extra,
		LocalLinkConnection: body.LocalLinkConnection, PhysicalNetwork: deref(body.PhysicalNetwork),
		PortAttributes: store.PortAttributes{Name: deref(body.Name), Description: deref(body.Description),
			Vendor: deref(body.Vendor), Category: deref(body.Category)}}
	given := map[string]bool{"name": body.Name != nil, "description": body.Description != nil,
		"vendor": body.Vendor != nil, "category": body.Category != nil}
	if err := s.checkPortAttrs(r, p, given, v); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.PXEEnabled != nil {
		p.PXEEnabled = *body.PXEEnabled
	}
	if body.UUID != "" {
		u, err := uuid.Parse(body.UUID)
		if err != nil {
			s.writeError(w, r, errdefs.InvalidArgument("Expected a UUID but received %s.", body.UUID))
			return
		}
		p.UUID = u.String()
	}
	if err := s.cfg.Store.CreatePort(r.Context(), p); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("port created", "port", p.UUID, "node", n.UUID, "address", p.Address)
	w.Header().Set("Location", s.baseURL(r)+"/v1/ports/"+p.UUID)
	writeJSON(w, http.StatusCreated, ironicjson.Port(p, s.opts(r, v)))
}

// listPorts serves GET /v1/ports and /v1/ports/detail.
func (s *Server) listPorts(detail bool) func(http.ResponseWriter, *http.Request, version) {
	return func(w http.ResponseWriter, r *http.Request, v version) {
		q := r.URL.Query()
		f := store.PortFilter{}
		if a := q.Get("address"); a != "" {
			mac, ok := normalizeMAC(a)
			if !ok {
				s.writeError(w, r, errdefs.InvalidArgument("Expected a MAC address but received %s.", a))
				return
			}
			f.Address = mac
		}
		node := q.Get("node")
		if node == "" {
			node = q.Get("node_uuid")
		}
		if node != "" {
			n, err := s.cfg.Store.GetNode(r.Context(), node)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			f.NodeID = n.ID
		}
		s.writePorts(w, r, v, f, detail)
	}
}

func (s *Server) writePorts(w http.ResponseWriter, r *http.Request, v version, f store.PortFilter, detail bool) {
	fields, err := fieldsParam(r, ironicjson.PortFields())
	if err == nil && r.URL.Query().Get("detail") != "" {
		var det *bool
		if det, err = boolParam(r, "detail"); det != nil && *det {
			detail = true
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ports, err := s.cfg.Store.ListPorts(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := []map[string]any{}
	for _, p := range ports {
		doc := ironicjson.Port(p, s.opts(r, v))
		switch {
		case fields != nil:
			doc = ironicjson.Select(doc, append(fields, "links"))
		case !detail:
			doc = ironicjson.Select(doc, ironicjson.DefaultPortListFields)
		}
		out = append(out, doc)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ports": out})
}

// getPort serves GET /v1/ports/{uuid}.
func (s *Server) getPort(w http.ResponseWriter, r *http.Request, v version) {
	fields, err := fieldsParam(r, ironicjson.PortFields())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.cfg.Store.GetPort(r.Context(), r.PathValue("uuid"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	doc := ironicjson.Port(p, s.opts(r, v))
	if fields != nil {
		doc = ironicjson.Select(doc, append(fields, "links"))
	}
	writeJSON(w, http.StatusOK, doc)
}

// deletePort serves DELETE /v1/ports/{uuid}.
func (s *Server) deletePort(w http.ResponseWriter, r *http.Request, v version) {
	if err := s.cfg.Store.DeletePort(r.Context(), r.PathValue("uuid")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// patchablePort are the port fields a PATCH may change.
var patchablePort = map[string]bool{"address": true, "node_uuid": true, "extra": true,
	"local_link_connection": true, "pxe_enabled": true, "physical_network": true,
	"name": true, "description": true, "vendor": true, "category": true}

// patchPort serves PATCH /v1/ports/{uuid} (JSON Patch), when the store
// can update ports in place.
func (s *Server) patchPort(w http.ResponseWriter, r *http.Request, v version) {
	up, ok := s.cfg.Store.(PortUpdater)
	if !ok {
		s.writeError(w, r, errdefs.NotImplemented("Updating ports is not implemented by this conductor's store yet."))
		return
	}
	var ops []jsonpatch.Op
	if err := decodeBody(w, r, maxBody, &ops); err != nil {
		s.writeError(w, r, err)
		return
	}
	given := map[string]bool{}
	for _, op := range ops {
		toks, err := jsonpatch.Pointer(op.Path)
		if err != nil || len(toks) == 0 {
			s.writeError(w, r, errdefs.InvalidArgument("Invalid patch path %q", op.Path))
			return
		}
		if !patchablePort[toks[0]] {
			s.writeError(w, r, errdefs.InvalidArgument("'/%s' is an internal attribute and can not be updated", toks[0]))
			return
		}
		given[toks[0]] = true
	}
	p, err := s.cfg.Store.GetPort(r.Context(), r.PathValue("uuid"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	doc := map[string]any{"address": p.Address, "node_uuid": p.NodeUUID, "pxe_enabled": p.PXEEnabled,
		"physical_network": nullable(p.PhysicalNetwork), "extra": ironicjson.CopyDict(p.Extra),
		"local_link_connection": ironicjson.CopyDict(p.LocalLinkConnection)}
	for _, a := range portAttrs {
		doc[a.field] = nullable(*a.ptr(p))
	}
	if doc, err = jsonpatch.Apply(doc, ops); err != nil {
		s.writeError(w, r, errdefs.InvalidArgument("Invalid patch: %v", err))
		return
	}
	err = s.applyPortPatch(r, p, doc)
	if err == nil {
		err = s.checkPortAttrs(r, p, given, v)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := up.UpdatePort(r.Context(), p); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("port updated", "port", p.UUID, "address", p.Address)
	writeJSON(w, http.StatusOK, ironicjson.Port(p, s.opts(r, v)))
}

// applyPortPatch copies a patched port document back into p, checking
// each field.
func (s *Server) applyPortPatch(r *http.Request, p *store.Port, doc map[string]any) error {
	addr, _ := doc["address"].(string)
	mac, ok := normalizeMAC(addr)
	if !ok {
		return errdefs.InvalidArgument("Expected a MAC address but received %v.", doc["address"])
	}
	p.Address = mac
	pxe, ok := doc["pxe_enabled"].(bool)
	if !ok {
		return errdefs.InvalidArgument("Invalid value for pxe_enabled: a boolean is required")
	}
	p.PXEEnabled = pxe
	switch pn := doc["physical_network"].(type) {
	case nil:
		p.PhysicalNetwork = ""
	case string:
		p.PhysicalNetwork = pn
	default:
		return errdefs.InvalidArgument("Invalid value for physical_network: a string is required")
	}
	for k, dst := range map[string]*map[string]any{"extra": &p.Extra, "local_link_connection": &p.LocalLinkConnection} {
		switch m := doc[k].(type) {
		case nil:
			*dst = map[string]any{}
		case map[string]any:
			*dst = m
		default:
			return errdefs.InvalidArgument("Invalid value for %s: a dictionary is required", k)
		}
	}
	for _, a := range portAttrs {
		switch x := doc[a.field].(type) {
		case nil:
			*a.ptr(p) = ""
		case string:
			*a.ptr(p) = x
		default:
			return errdefs.InvalidArgument("Invalid value for %s: a string is required", a.field)
		}
	}
	nodeUUID, _ := doc["node_uuid"].(string)
	if nodeUUID != p.NodeUUID {
		n, err := s.cfg.Store.GetNode(r.Context(), nodeUUID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.InvalidArgument("Node %s could not be found.", nodeUUID)
		}
		if err != nil {
			return err
		}
		p.NodeID, p.NodeUUID = n.ID, n.UUID
	}
	return nil
}
