package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/api/internal/jsonpatch"
	"github.com/rivetmetal/rivet/conductor/configiso"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// nameRE is Ironic's rule for logical names (RFC 3986 unreserved
// characters, API >= 1.10).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9\-._~]+$`)

func validName(name string) bool {
	if !nameRE.MatchString(name) {
		return false
	}
	_, err := uuid.Parse(name)
	return err != nil
}

// fieldsParam reads ?fields=a,b and checks the names against valid.
func fieldsParam(r *http.Request, valid []string) ([]string, error) {
	raw := r.URL.Query().Get("fields")
	if raw == "" {
		return nil, nil
	}
	ok := map[string]bool{}
	for _, f := range valid {
		ok[f] = true
	}
	var out []string
	for _, f := range strings.Split(raw, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !ok[f] {
			return nil, errdefs.InvalidArgument("Field %s is not a valid field.", f)
		}
		out = append(out, f)
	}
	return out, nil
}

func boolParam(r *http.Request, name string) (*bool, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return nil, errdefs.InvalidArgument("Invalid value for %s: %q is not a boolean.", name, raw)
	}
	return &b, nil
}

// listNodes serves GET /v1/nodes and /v1/nodes/detail.
func (s *Server) listNodes(detail bool) func(http.ResponseWriter, *http.Request, version) {
	return func(w http.ResponseWriter, r *http.Request, v version) {
		q := r.URL.Query()
		fields, err := fieldsParam(r, ironicjson.NodeFields())
		if err == nil && detail && fields != nil {
			err = errdefs.InvalidArgument("Can not specify ?fields on the detail endpoint.")
		}
		var maint, assoc, det *bool
		if err == nil {
			maint, err = boolParam(r, "maintenance")
		}
		if err == nil {
			assoc, err = boolParam(r, "associated")
		}
		if err == nil {
			det, err = boolParam(r, "detail")
		}
		limit := 0
		if err == nil && q.Get("limit") != "" {
			if limit, err = strconv.Atoi(q.Get("limit")); err != nil || limit < 0 {
				err = errdefs.InvalidArgument("Limit must be positive")
			}
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		nodes, err := s.cfg.Store.ListNodes(r.Context(), store.NodeFilter{
			ProvisionState: statemachine.State(q.Get("provision_state")),
			Driver:         q.Get("driver"),
			Maintenance:    maint,
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if marker := q.Get("marker"); marker != "" {
			for i, n := range nodes {
				if n.UUID == marker {
					nodes = nodes[i+1:]
					break
				}
			}
		}
		out := []map[string]any{}
		for _, n := range nodes {
			if assoc != nil && (*assoc != (n.InstanceUUID != "")) {
				continue
			}
			if limit > 0 && len(out) == limit {
				break
			}
			doc := ironicjson.Node(n, s.opts(r, v))
			switch {
			case fields != nil:
				doc = ironicjson.Select(doc, append(fields, "links"))
			case !detail && (det == nil || !*det):
				doc = ironicjson.Select(doc, ironicjson.DefaultNodeListFields)
			}
			out = append(out, doc)
		}
		body := map[string]any{"nodes": out}
		if limit > 0 && len(out) == limit {
			nq := r.URL.Query()
			nq.Set("marker", out[len(out)-1]["uuid"].(string))
			body["next"] = s.baseURL(r) + r.URL.Path + "?" + nq.Encode()
		}
		writeJSON(w, http.StatusOK, body)
	}
}

// getNode serves GET /v1/nodes/{ident}.
func (s *Server) getNode(w http.ResponseWriter, r *http.Request, v version) {
	fields, err := fieldsParam(r, ironicjson.NodeFields())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	doc := ironicjson.Node(n, s.opts(r, v))
	if fields != nil {
		doc = ironicjson.Select(doc, append(fields, "links"))
	}
	writeJSON(w, http.StatusOK, doc)
}

// nodeCreate is the body of POST /v1/nodes.
type nodeCreate struct {
	UUID          string         `json:"uuid"`
	Name          *string        `json:"name"`
	Driver        string         `json:"driver"`
	DriverInfo    map[string]any `json:"driver_info"`
	InstanceInfo  map[string]any `json:"instance_info"`
	Properties    map[string]any `json:"properties"`
	Extra         map[string]any `json:"extra"`
	ResourceClass *string        `json:"resource_class"`
	Description   *string        `json:"description"`
	Owner         *string        `json:"owner"`
	// AutomatedClean is accepted only as null: automated cleaning is a
	// conductor-wide setting, not stored per node.
	AutomatedClean *bool `json:"automated_clean"`
}

// createNode serves POST /v1/nodes.
func (s *Server) createNode(w http.ResponseWriter, r *http.Request, v version) {
	var raw map[string]json.RawMessage
	if err := decodeBody(w, r, maxBody, &raw); err != nil {
		s.writeError(w, r, err)
		return
	}
	known := map[string]bool{"uuid": true, "name": true, "driver": true, "driver_info": true,
		"instance_info": true, "properties": true, "extra": true, "resource_class": true,
		"description": true, "owner": true, "automated_clean": true}
	ifaces := map[string]string{}
	var unknown []string
	for k, val := range raw {
		if slices.Contains(ironicjson.InterfaceFields(), k) {
			var name *string
			if err := json.Unmarshal(val, &name); err != nil {
				s.writeError(w, r, errdefs.InvalidArgument("Invalid value for %s: a string is required", k))
				return
			}
			if name != nil {
				ifaces[k] = *name
			}
			continue
		}
		if !known[k] {
			unknown = append(unknown, "'"+k+"'")
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		s.writeError(w, r, errdefs.InvalidArgument("Additional properties are not allowed (%s unexpected)", strings.Join(unknown, ", ")))
		return
	}
	b, _ := json.Marshal(raw)
	var body nodeCreate
	if err := json.Unmarshal(b, &body); err != nil {
		s.writeError(w, r, errdefs.InvalidArgument("Invalid node: %v", err))
		return
	}
	if body.Driver == "" {
		s.writeError(w, r, errdefs.InvalidArgument("'driver' is a required property"))
		return
	}
	if !s.cfg.Drivers.HasDriver(body.Driver) {
		s.writeError(w, r, errdefs.InvalidArgument(`No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group "".`, body.Driver))
		return
	}
	if err := checkInterfaces(body.Driver, ifaces); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.AutomatedClean != nil {
		s.writeError(w, r, errAutomatedClean())
		return
	}
	n := &store.Node{Driver: body.Driver, DriverInfo: body.DriverInfo, InstanceInfo: body.InstanceInfo,
		Properties: body.Properties, Extra: body.Extra, ResourceClass: deref(body.ResourceClass),
		Description: deref(body.Description), Owner: deref(body.Owner)}
	if body.UUID != "" {
		u, err := uuid.Parse(body.UUID)
		if err != nil {
			s.writeError(w, r, errdefs.InvalidArgument("Expected a UUID but received %s.", body.UUID))
			return
		}
		n.UUID = u.String()
	}
	if body.Name != nil {
		if !validName(*body.Name) {
			s.writeError(w, r, errdefs.InvalidArgument("Cannot create node with invalid name '%s'", *body.Name))
			return
		}
		n.Name = *body.Name
	}
	if s.cfg.HostPaths != nil {
		if err := s.cfg.HostPaths.CheckHostPaths(n, nil); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if err := s.cfg.Store.CreateNode(r.Context(), n); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("node created", "node", n.UUID, "name", n.Name, "driver", n.Driver)
	w.Header().Set("Location", s.baseURL(r)+"/v1/nodes/"+n.UUID)
	writeJSON(w, http.StatusCreated, ironicjson.Node(n, s.opts(r, v)))
}

// patchable are the node fields a PATCH may change; other known fields
// are internal.
var patchable = map[string]bool{"name": true, "driver": true, "driver_info": true,
	"instance_info": true, "properties": true, "extra": true, "maintenance": true,
	"maintenance_reason": true, "description": true, "owner": true, "resource_class": true,
	"instance_uuid": true}

// patchNode serves PATCH /v1/nodes/{ident} (JSON Patch).
func (s *Server) patchNode(w http.ResponseWriter, r *http.Request, v version) {
	var ops []jsonpatch.Op
	if err := decodeBody(w, r, maxBody, &ops); err != nil {
		s.writeError(w, r, err)
		return
	}
	internal := map[string]bool{}
	for _, f := range ironicjson.NodeFields() {
		internal[f] = !patchable[f]
	}
	ifaces := map[string]string{}
	for _, op := range ops {
		toks, err := jsonpatch.Pointer(op.Path)
		if err != nil || len(toks) == 0 {
			s.writeError(w, r, errdefs.InvalidArgument("Invalid patch path %q", op.Path))
			return
		}
		if len(toks) == 1 && slices.Contains(ironicjson.InterfaceFields(), toks[0]) {
			// Interfaces are fixed by the driver: a patch may only
			// restate (or reset) them.
			var name string
			if op.Op != "remove" {
				if err := json.Unmarshal(op.Value, &name); err != nil {
					s.writeError(w, r, errdefs.InvalidArgument("Invalid value for %s: a string is required", toks[0]))
					return
				}
			}
			ifaces[toks[0]] = name
			continue
		}
		if len(toks) == 1 && toks[0] == "automated_clean" {
			if op.Op != "remove" && string(op.Value) != "null" {
				s.writeError(w, r, errAutomatedClean())
				return
			}
			continue
		}
		if internal[toks[0]] {
			s.writeError(w, r, errdefs.InvalidArgument("'/%s' is an internal attribute and can not be updated", toks[0]))
			return
		}
		if !patchable[toks[0]] {
			s.writeError(w, r, errdefs.InvalidArgument("Adding a new attribute (/%s) to the root of the resource is not allowed.", toks[0]))
			return
		}
	}
	ops = slices.DeleteFunc(slices.Clone(ops), func(op jsonpatch.Op) bool {
		toks, _ := jsonpatch.Pointer(op.Path)
		return len(toks) == 1 && (ifaces[toks[0]] != "" || toks[0] == "automated_clean" ||
			(op.Op == "remove" && slices.Contains(ironicjson.InterfaceFields(), toks[0])))
	})
	for k, v := range ifaces {
		if v == "" {
			delete(ifaces, k)
		}
	}
	var out *store.Node
	err := s.cfg.Store.WithNodeLock(r.Context(), r.PathValue("ident"), func(tx store.Tx) error {
		n := tx.Node()
		if transient(n) {
			return errdefs.Conflict("Node %s is locked by a running operation (provision state %q), please retry after the current operation is completed.",
				n.UUID, n.ProvisionState)
		}
		prev := &store.Node{UUID: n.UUID, Name: n.Name, Driver: n.Driver, DriverInfo: n.DriverInfo, InstanceInfo: n.InstanceInfo}
		if err := s.applyPatch(n, ops); err != nil {
			return err
		}
		if err := checkInterfaces(n.Driver, ifaces); err != nil {
			return err
		}
		if s.cfg.HostPaths != nil {
			if err := s.cfg.HostPaths.CheckHostPaths(n, prev); err != nil {
				return err
			}
		}
		out = n
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ironicjson.Node(out, s.opts(r, v)))
}

// applyPatch patches the node's patchable document and copies it back.
func (s *Server) applyPatch(n *store.Node, ops []jsonpatch.Op) error {
	doc := map[string]any{
		"name": nullable(n.Name), "driver": n.Driver, "maintenance": n.Maintenance,
		"maintenance_reason": nullable(n.MaintenanceReason), "description": nullable(n.Description),
		"owner": nullable(n.Owner), "resource_class": nullable(n.ResourceClass),
		"instance_uuid": nullable(n.InstanceUUID),
		"driver_info":   ironicjson.CopyDict(n.DriverInfo), "instance_info": ironicjson.CopyDict(n.InstanceInfo),
		"properties": ironicjson.CopyDict(n.Properties), "extra": ironicjson.CopyDict(n.Extra),
	}
	doc, err := jsonpatch.Apply(doc, ops)
	if err != nil {
		return errdefs.InvalidArgument("Invalid patch: %v", err)
	}
	str := func(k string) (string, error) {
		switch x := doc[k].(type) {
		case nil:
			return "", nil
		case string:
			return x, nil
		default:
			return "", errdefs.InvalidArgument("Invalid value for %s: a string is required", k)
		}
	}
	dict := func(k string) (map[string]any, error) {
		switch x := doc[k].(type) {
		case nil:
			return map[string]any{}, nil
		case map[string]any:
			return x, nil
		default:
			return nil, errdefs.InvalidArgument("Invalid value for %s: a dictionary is required", k)
		}
	}
	var errs []error
	get := func(dst *string, k string) {
		v, err := str(k)
		errs = append(errs, err)
		*dst = v
	}
	getDict := func(dst *map[string]any, k string) {
		v, err := dict(k)
		errs = append(errs, err)
		*dst = v
	}
	var name, driver string
	get(&name, "name")
	get(&driver, "driver")
	get(&n.MaintenanceReason, "maintenance_reason")
	get(&n.Description, "description")
	get(&n.Owner, "owner")
	get(&n.ResourceClass, "resource_class")
	get(&n.InstanceUUID, "instance_uuid")
	getDict(&n.DriverInfo, "driver_info")
	getDict(&n.InstanceInfo, "instance_info")
	getDict(&n.Properties, "properties")
	getDict(&n.Extra, "extra")
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	maint, ok := doc["maintenance"].(bool)
	if !ok {
		return errdefs.InvalidArgument("Invalid value for maintenance: a boolean is required")
	}
	if !maint {
		n.MaintenanceReason = ""
	}
	n.Maintenance = maint
	if name != n.Name && name != "" && !validName(name) {
		return errdefs.InvalidArgument("Node %s can not be updated with invalid name %s", n.UUID, name)
	}
	n.Name = name
	if driver != n.Driver && !s.cfg.Drivers.HasDriver(driver) {
		return errdefs.InvalidArgument(`No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group "".`, driver)
	}
	n.Driver = driver
	return nil
}

// deleteNode serves DELETE /v1/nodes/{ident}: the engine checks Ironic's
// rules and stops the node's running job first.
func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request, v version) {
	if err := s.cfg.Provisioner.DeleteNode(r.Context(), r.PathValue("ident")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// nodeStates serves GET /v1/nodes/{ident}/states.
func (s *Server) nodeStates(w http.ResponseWriter, r *http.Request, v version) {
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	doc := ironicjson.Node(n, s.opts(r, v))
	states := ironicjson.Select(doc, []string{"console_enabled", "last_error", "power_state",
		"provision_state", "provision_updated_at", "target_power_state", "target_provision_state",
		"raid_config", "target_raid_config", "boot_mode", "secure_boot"})
	writeJSON(w, http.StatusOK, states)
}

// provisionBody is the body of PUT /v1/nodes/{ident}/states/provision.
type provisionBody struct {
	Target         string          `json:"target"`
	Configdrive    configdriveArg  `json:"configdrive"`
	CleanSteps     json.RawMessage `json:"clean_steps"`
	DeploySteps    json.RawMessage `json:"deploy_steps"`
	ServiceSteps   json.RawMessage `json:"service_steps"`
	RescuePassword *string         `json:"rescue_password"`
	DisableRamdisk *bool           `json:"disable_ramdisk"`
}

// verbMinor is the API minor version that introduced each provision verb
// (Ironic's MIN_VERB_VERSIONS); verbs absent here are understood at every
// version.
var verbMinor = map[string]int{
	"manage": 4, "provide": 4, "inspect": 6, "abort": 13, "clean": 15,
	"adopt": 17, "rescue": 38, "unrescue": 38, "deploy": 73, "undeploy": 73,
	"unhold": 85, "service": 87,
}

// knownVerbs are the targets Ironic's API understands.
var knownVerbs = map[string]bool{"active": true, "deleted": true, "rebuild": true,
	"manage": true, "provide": true, "inspect": true, "abort": true, "clean": true,
	"adopt": true, "rescue": true, "unrescue": true, "deploy": true, "undeploy": true,
	"unhold": true, "service": true}

// Minor versions of provision request features.
const (
	minorRebuildConfigdrive = 35
	minorBuildConfigdrive   = 56
	minorVendorData         = 59
	minorDeploySteps        = 69
	minorDisableRamdisk     = 70
)

// stepInterfaces are the interfaces a manual clean step may name
// (Ironic's clean step schema).
var stepInterfaces = map[string]bool{"bios": true, "deploy": true, "firmware": true,
	"management": true, "power": true, "raid": true}

// setProvisionState serves PUT /v1/nodes/{ident}/states/provision: it
// checks the request as Ironic's API does (verb, microversion, which
// arguments go with which verb, their shapes) and hands it to the engine,
// which decides whether the node's state allows it.
func (s *Server) setProvisionState(w http.ResponseWriter, r *http.Request, v version) {
	var body provisionBody
	if err := decodeBody(w, r, maxProvisionBody, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	req, steps, err := checkProvision(body, v)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ident := r.PathValue("ident")
	if req.Target == "clean" {
		err = s.cfg.Provisioner.ManualClean(r.Context(), ident, steps, body.DisableRamdisk != nil && *body.DisableRamdisk)
	} else {
		err = s.cfg.Provisioner.Provision(r.Context(), ident, req)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", s.baseURL(r)+"/v1/nodes/"+ident+"/states")
	w.WriteHeader(http.StatusAccepted)
}

// errNotUnderstood refuses a provision verb.
func errNotUnderstood(verb string) error {
	return errdefs.InvalidArgument(`The requested action "%s" could not be understood.`, verb)
}

// checkProvision validates a provision request's shape and microversion
// (the engine checks what the node's state allows) and returns the
// engine's request and, for "clean", the steps.
func checkProvision(body provisionBody, v version) (provision.Request, []wire.PlannedStep, error) {
	present := func(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }
	t := body.Target
	switch {
	case t == "":
		return provision.Request{}, nil, errdefs.InvalidArgument(`Missing argument: "target"`)
	case !knownVerbs[t]:
		return provision.Request{}, nil, errNotUnderstood(t)
	case v.minor < verbMinor[t]:
		return provision.Request{}, nil, errdefs.NotAcceptable("Request not acceptable.")
	case statemachine.Verbs[t] == "":
		// One of Ironic's verbs this conductor has no transitions for
		// (rescue, unrescue, unhold, service).
		return provision.Request{}, nil, errNotUnderstood(t)
	case present(body.CleanSteps) && t != "clean":
		return provision.Request{}, nil, errdefs.InvalidArgument(`"clean_steps" is only valid when setting target provision state to clean`)
	case present(body.ServiceSteps) && t != "service":
		return provision.Request{}, nil, errdefs.InvalidArgument(`"service_steps" is only valid when setting target provision state to service`)
	case present(body.DeploySteps) && v.minor < minorDeploySteps:
		return provision.Request{}, nil, errdefs.NotAcceptable("Request not acceptable.")
	case present(body.DeploySteps) && t != "active" && t != "deploy" && t != "rebuild":
		return provision.Request{}, nil, errdefs.InvalidArgument(`"deploy_steps" is only valid when setting target provision state to active or rebuild`)
	case present(body.DeploySteps):
		return provision.Request{}, nil, errdefs.InvalidArgument("Custom deploy steps are not supported yet.")
	case body.DisableRamdisk != nil && v.minor < minorDisableRamdisk:
		return provision.Request{}, nil, errdefs.NotAcceptable("Request not acceptable.")
	case body.DisableRamdisk != nil && t != "clean" && t != "service":
		return provision.Request{}, nil, errdefs.InvalidArgument(`"disable_ramdisk" can be passed only with "clean" or "service"`)
	case body.RescuePassword != nil && t != "rescue":
		return provision.Request{}, nil, errdefs.InvalidArgument(`"rescue_password" is only valid when setting target provision state to rescue`)
	}
	req := provision.Request{Target: t}
	if body.Configdrive.present {
		cd, err := checkConfigdrive(body.Configdrive, t, v)
		if err != nil {
			return provision.Request{}, nil, err
		}
		req.Configdrive = cd
	}
	if t != "clean" {
		return req, nil, nil
	}
	if !present(body.CleanSteps) {
		return provision.Request{}, nil, errdefs.InvalidArgument(`"clean_steps" is required when setting target provision state to clean`)
	}
	steps, err := checkCleanSteps(body.CleanSteps)
	return req, steps, err
}

// configdriveArg is the configdrive of a provision request, checked
// against its limits (conductor/configiso) as the body is decoded: a
// string must be an image the agent decodes to at most 64 MiB (or a URL),
// an object's JSON must be within the description limits before a tree is
// built from it. A refusal is kept in err and reported by checkConfigdrive
// after the checks that come first (verb, microversion).
type configdriveArg struct {
	present bool
	kind    byte // '"' or '{' (or the first byte of anything else)
	value   any
	err     error
}

// UnmarshalJSON implements json.Unmarshaler.
func (c *configdriveArg) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*c = configdriveArg{}
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	c.present, c.kind = true, b[0]
	switch c.kind {
	case '"':
		// Checked in place when it decodes to itself (no escapes, valid
		// UTF-8, as base64 always is): a refused drive is never copied.
		if raw := b[1 : len(b)-1]; bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
			if err := configiso.CheckBytes(raw); err != nil {
				c.err = errdefs.InvalidArgument("Invalid configdrive: %v", err)
				return nil
			}
			c.value = string(raw)
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			c.err = errdefs.InvalidArgument("Invalid configdrive: %v", err)
		} else if err := configiso.CheckString(s); err != nil {
			c.err = errdefs.InvalidArgument("Invalid configdrive: %v", err)
		} else {
			c.value = s
		}
	case '{':
		if err := configiso.CheckJSON(b); err != nil {
			c.err = errdefs.InvalidArgument("Invalid configdrive: %v", err)
			return nil
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			c.err = errdefs.InvalidArgument("Invalid configdrive: %v", err)
			return nil
		}
		c.value = m
	default:
		if len(b) > 64 {
			b = append(b[:64:64], "..."...)
		}
		c.err = errdefs.InvalidArgument("Invalid configdrive: %s is not of type 'string', 'object'", string(b))
	}
	return nil
}

// checkConfigdrive validates a config drive: a string (gzipped, base64
// ISO or URL), or from 1.56 a dictionary Ironic builds the ISO from, only
// with "active"/"deploy" and, from 1.35, "rebuild".
func checkConfigdrive(cd configdriveArg, target string, v version) (any, error) {
	switch {
	case target == "rebuild" && v.minor < minorRebuildConfigdrive:
		return nil, errdefs.NotAcceptable("Request not acceptable.")
	case target != "active" && target != "deploy" && target != "rebuild":
		return nil, errdefs.InvalidArgument("Adding a config drive is only supported when setting provision state to active or rebuild")
	case cd.kind == '{' && v.minor < minorBuildConfigdrive:
		return nil, errdefs.NotAcceptable("Request not acceptable.")
	case cd.err != nil:
		return nil, cd.err
	}
	switch x := cd.value.(type) {
	case string:
		return x, nil
	case map[string]any:
		allowed := map[string]bool{"meta_data": true, "network_data": true, "user_data": true, "vendor_data": true}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if !allowed[k] {
				return nil, errdefs.InvalidArgument("Invalid configdrive: Additional properties are not allowed ('%s' was unexpected)", k)
			}
			if k == "vendor_data" && v.minor < minorVendorData {
				return nil, errdefs.NotAcceptable("Request not acceptable.")
			}
		}
		return x, nil
	default:
		return nil, errdefs.InvalidArgument("Invalid configdrive: not of type 'string', 'object'")
	}
}

// checkCleanSteps validates manual clean steps against Ironic's schema: a
// non-empty list of {interface, step, args?, reboot_requested?} objects.
// The args pass through as given.
func checkCleanSteps(raw json.RawMessage) ([]wire.PlannedStep, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errdefs.InvalidArgument("Invalid clean_steps: a list of steps is required")
	}
	if len(list) == 0 {
		return nil, errdefs.InvalidArgument(`No clean steps specified. Clean steps are required when setting the target provision state to "clean".`)
	}
	allowed := map[string]bool{"interface": true, "step": true, "args": true, "reboot_requested": true}
	steps := make([]wire.PlannedStep, 0, len(list))
	for i, m := range list {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !allowed[k] {
				return nil, errdefs.InvalidArgument("Invalid clean step %d: Additional properties are not allowed ('%s' was unexpected)", i, k)
			}
		}
		var (
			st     wire.PlannedStep
			args   map[string]json.RawMessage
			reboot *bool
		)
		for k, dst := range map[string]any{"interface": &st.Interface, "step": &st.Step, "args": &args, "reboot_requested": &reboot} {
			if v, ok := m[k]; ok {
				if err := json.Unmarshal(v, dst); err != nil {
					return nil, errdefs.InvalidArgument("Invalid clean step %d: %s: %v", i, k, err)
				}
			}
		}
		switch {
		case st.Interface == "":
			return nil, errdefs.InvalidArgument("Invalid clean step %d: 'interface' is a required property", i)
		case !stepInterfaces[st.Interface]:
			return nil, errdefs.InvalidArgument("Invalid clean step %d: '%s' is not one of %s", i, st.Interface, fmt.Sprint(slices.Sorted(maps.Keys(stepInterfaces))))
		case st.Step == "":
			return nil, errdefs.InvalidArgument("Invalid clean step %d: 'step' is a required property", i)
		}
		if args != nil {
			st.Args = m["args"]
		}
		if reboot != nil && *reboot {
			st.RebootRequested = reboot
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// nodePorts serves GET /v1/nodes/{ident}/ports.
func (s *Server) nodePorts(w http.ResponseWriter, r *http.Request, v version) {
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writePorts(w, r, v, store.PortFilter{NodeID: n.ID}, false)
}

// checkInterfaces accepts hardware interface fields that name what the
// driver provides (Metal3 sets them on every node it enrolls) and refuses
// anything else with Ironic's message.
func checkInterfaces(driver string, ifaces map[string]string) error {
	have := ironicjson.Interfaces(driver)
	for _, field := range slices.Sorted(maps.Keys(ifaces)) {
		if want := ifaces[field]; want != have[field] {
			kind := strings.TrimSuffix(field, "_interface")
			return errdefs.InvalidArgument("%s interface implementation '%s' is not supported by hardware type %s. Supported: %s.",
				kind, want, driver, have[field])
		}
	}
	return nil
}

func errAutomatedClean() error {
	return errdefs.InvalidArgument("Setting automated_clean per node is not supported: automated cleaning is a conductor-wide setting.")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
