package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
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
		var match func(n *store.Node) bool
		if err == nil {
			match, err = nodeListFilter(r, v)
		}
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
			if !match(n) {
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

// nodeListFilter reads the list filters of the attributes added by later
// versions (Ironic's): resource_class, conductor_group, fault, owner,
// lessee, retired, shard, instance_uuid, description_contains,
// parent_node and include_children. From 1.83 child nodes (with a
// parent_node) are listed only with include_children or parent_node.
func nodeListFilter(r *http.Request, v version) (func(n *store.Node) bool, error) {
	q := r.URL.Query()
	str := map[string]struct {
		minor int
		get   func(n *store.Node) string
	}{
		"resource_class":  {21, func(n *store.Node) string { return n.ResourceClass }},
		"fault":           {42, func(n *store.Node) string { return n.Fault }},
		"conductor_group": {46, func(n *store.Node) string { return n.ConductorGroup }},
		"owner":           {50, func(n *store.Node) string { return n.Owner }},
		"lessee":          {65, func(n *store.Node) string { return n.Lessee }},
		"shard":           {82, func(n *store.Node) string { return n.Shard }},
		"instance_uuid":   {1, func(n *store.Node) string { return n.InstanceUUID }},
		"parent_node":     {83, func(n *store.Node) string { return n.ParentNode }},
	}
	var checks []func(n *store.Node) bool
	for _, k := range slices.Sorted(maps.Keys(str)) {
		want := q.Get(k)
		if want == "" {
			continue
		}
		f := str[k]
		if v.minor < f.minor {
			return nil, errdefs.NotAcceptable("Request not acceptable.")
		}
		if k == "conductor_group" {
			want = strings.ToLower(want)
		}
		checks = append(checks, func(n *store.Node) bool { return f.get(n) == want })
	}
	if d := q.Get("description_contains"); d != "" {
		if v.minor < 51 {
			return nil, errdefs.NotAcceptable("Request not acceptable.")
		}
		checks = append(checks, func(n *store.Node) bool { return strings.Contains(n.Description, d) })
	}
	retired, err := boolParam(r, "retired")
	if err != nil {
		return nil, err
	}
	if retired != nil {
		if v.minor < 61 {
			return nil, errdefs.NotAcceptable("Request not acceptable.")
		}
		checks = append(checks, func(n *store.Node) bool { return n.Retired == *retired })
	}
	children, err := boolParam(r, "include_children")
	if err != nil {
		return nil, err
	}
	if v.minor >= 83 && q.Get("parent_node") == "" && (children == nil || !*children) {
		checks = append(checks, func(n *store.Node) bool { return n.ParentNode == "" })
	}
	return func(n *store.Node) bool {
		for _, c := range checks {
			if !c(n) {
				return false
			}
		}
		return true
	}, nil
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

// createNode serves POST /v1/nodes: every writable field of the
// request's version (nodefields.go), the interfaces resolved against the
// hardware type.
func (s *Server) createNode(w http.ResponseWriter, r *http.Request, v version) {
	var raw map[string]json.RawMessage
	if err := decodeBody(w, r, maxBody, &raw); err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.nodeFromBody(r, raw, v)
	if err != nil {
		s.writeError(w, r, err)
		return
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
	s.log.Info("node created", "node", n.UUID, "name", n.Name, "driver", n.Driver, "interfaces", n.Interfaces)
	w.Header().Set("Location", s.baseURL(r)+"/v1/nodes/"+n.UUID)
	writeJSON(w, http.StatusCreated, ironicjson.Node(n, s.opts(r, v)))
}

// nodeFromBody checks a create body and returns the node to create.
func (s *Server) nodeFromBody(r *http.Request, raw map[string]json.RawMessage, v version) (*store.Node, error) {
	if unknown := unknownKeys(raw); len(unknown) > 0 {
		return nil, errdefs.InvalidArgument("Additional properties are not allowed (%s unexpected)", strings.Join(unknown, ", "))
	}
	doc := writableDoc(&store.Node{}, true)
	touched := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		val := raw[k]
		switch {
		case acceptedNull[k]:
			if !nullOrDefault(val) {
				return nil, errdefs.InvalidArgument("Setting %s is not supported by this conductor.", k)
			}
			continue
		case tooNew(k, v) && !nullOrDefault(val):
			return nil, errdefs.NotAcceptable("Request not acceptable.")
		}
		var x any
		if err := json.Unmarshal(val, &x); err != nil {
			return nil, errdefs.InvalidArgument("Invalid value for %s: %v", k, err)
		}
		doc[k], touched[k] = x, true
	}
	n := &store.Node{}
	if err := readDoc(doc, n, true); err != nil {
		return nil, err
	}
	if n.Driver == "" {
		return nil, errdefs.InvalidArgument("'driver' is a required property")
	}
	if !s.cfg.Drivers.HasDriver(n.Driver) {
		return nil, errdefs.InvalidArgument(`No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group "".`, n.Driver)
	}
	if n.UUID != "" {
		u, err := uuid.Parse(n.UUID)
		if err != nil {
			return nil, errdefs.InvalidArgument("Expected a UUID but received %s.", n.UUID)
		}
		n.UUID = u.String()
	}
	if err := checkNodeRules(&store.Node{}, n, touched); err != nil {
		return nil, err
	}
	if err := s.resolveParent(r, n, touched); err != nil {
		return nil, err
	}
	if err := resolveInterfaces(&store.Node{}, n, touched); err != nil {
		return nil, err
	}
	return n, nil
}

// resolveParent replaces a parent_node given by name with its UUID; the
// parent must exist.
func (s *Server) resolveParent(r *http.Request, n *store.Node, touched map[string]bool) error {
	if !touched["parent_node"] || n.ParentNode == "" {
		return nil
	}
	p, err := s.cfg.Store.GetNode(r.Context(), n.ParentNode)
	if errors.Is(err, errdefs.ErrNotFound) {
		return errdefs.InvalidArgument("Node %s could not be found.", n.ParentNode)
	}
	if err != nil {
		return err
	}
	if p.UUID == n.UUID {
		return errdefs.InvalidArgument("Node %s can not be its own parent.", n.UUID)
	}
	n.ParentNode = p.UUID
	return nil
}

// patchNode serves PATCH /v1/nodes/{ident} (JSON Patch over the writable
// fields of the request's version).
func (s *Server) patchNode(w http.ResponseWriter, r *http.Request, v version) {
	var ops []jsonpatch.Op
	if err := decodeBody(w, r, maxBody, &ops); err != nil {
		s.writeError(w, r, err)
		return
	}
	touched, ops, err := checkNodePatch(ops, v)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var out *store.Node
	err = s.cfg.Store.WithNodeLock(r.Context(), r.PathValue("ident"), func(tx store.Tx) error {
		n := tx.Node()
		if transient(n) {
			return errdefs.Conflict("Node %s is locked by a running operation (provision state %q), please retry after the current operation is completed.",
				n.UUID, n.ProvisionState)
		}
		old := *n
		old.NodeAttributes = n.NodeAttributes.Clone()
		prev := &store.Node{UUID: n.UUID, Name: n.Name, Driver: n.Driver, DriverInfo: n.DriverInfo, InstanceInfo: n.InstanceInfo}
		doc, err := jsonpatch.Apply(writableDoc(n, false), ops)
		if err != nil {
			return errdefs.InvalidArgument("Invalid patch: %v", err)
		}
		if err := readDoc(doc, n, false); err != nil {
			return err
		}
		if n.Driver == "" {
			return errdefs.InvalidArgument("'driver' is a required property")
		}
		if n.Driver != old.Driver && !s.cfg.Drivers.HasDriver(n.Driver) {
			return errdefs.InvalidArgument(`No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group "".`, n.Driver)
		}
		if old.InstanceUUID != "" && n.InstanceUUID != "" && !strings.EqualFold(old.InstanceUUID, n.InstanceUUID) {
			return errdefs.Conflict("Node %s is associated with instance %s.", n.UUID, old.InstanceUUID)
		}
		if err := checkNodeRules(&old, n, touched); err != nil {
			return err
		}
		if err := s.resolveParent(r, n, touched); err != nil {
			return err
		}
		if err := resolveInterfaces(&old, n, touched); err != nil {
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

// checkNodePatch checks the paths of a node patch: each must name a field
// the request's version may patch. It returns the fields touched and the
// operations to apply (those on fields Rivet does not keep, which may only
// be reset, dropped).
func checkNodePatch(ops []jsonpatch.Op, v version) (map[string]bool, []jsonpatch.Op, error) {
	known := map[string]bool{}
	for _, f := range ironicjson.NodeFields() {
		known[f] = true
	}
	touched := map[string]bool{}
	var keep []jsonpatch.Op
	for _, op := range ops {
		toks, err := jsonpatch.Pointer(op.Path)
		if err != nil || len(toks) == 0 {
			return nil, nil, errdefs.InvalidArgument("Invalid patch path %q", op.Path)
		}
		root := toks[0]
		f, ok := nodeFields[root]
		switch {
		case root == "traits":
			return nil, nil, errdefs.InvalidArgument("Cannot update node traits via node patch. Node traits should be updated via the node traits API.")
		case acceptedNull[root]:
			if op.Op != "remove" && !nullOrDefault(op.Value) {
				return nil, nil, errdefs.InvalidArgument("Setting %s is not supported by this conductor.", root)
			}
			continue
		case ok && f.patch && v.minor < f.minor:
			return nil, nil, errdefs.NotAcceptable("Request not acceptable.")
		case ok && f.patch:
		case known[root] || ok:
			return nil, nil, errdefs.InvalidArgument("'/%s' is an internal attribute and can not be updated", root)
		default:
			return nil, nil, errdefs.InvalidArgument("Adding a new attribute (/%s) to the root of the resource is not allowed.", root)
		}
		touched[root] = true
		keep = append(keep, op)
	}
	return touched, keep, nil
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
	minorRebuildConfigdrive    = 35
	minorBuildConfigdrive      = 56
	minorVendorData            = 59
	minorDeploySteps           = 69
	minorDisableRamdisk        = 70
	minorServiceDisableRamdisk = 108
	minorAbortDeployWait       = 110
)

// stepInterfaces are the interfaces a clean, service or deploy step may
// name (Ironic's CLEANING_INTERFACE_PRIORITY and
// DEPLOYING_INTERFACE_PRIORITY).
var stepInterfaces = map[string]bool{"bios": true, "deploy": true, "firmware": true,
	"management": true, "power": true, "raid": true, "vendor": true}

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
	// Aborting a deploy waiting for its agent came with 1.110; the engine
	// checks it with the node's state, under its lock.
	req.NoAbortDeployWait = req.Target == "abort" && v.minor < minorAbortDeployWait
	disableRamdisk := body.DisableRamdisk != nil && *body.DisableRamdisk
	switch req.Target {
	case "clean":
		err = s.cfg.Provisioner.ManualClean(r.Context(), ident, steps, disableRamdisk)
	case "service":
		err = s.cfg.Provisioner.Service(r.Context(), ident, steps, disableRamdisk)
	default:
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
		// (rescue, unrescue, unhold).
		return provision.Request{}, nil, errNotUnderstood(t)
	case present(body.CleanSteps) && t != "clean":
		return provision.Request{}, nil, errdefs.InvalidArgument(`"clean_steps" is only valid when setting target provision state to clean`)
	case present(body.ServiceSteps) && t != "service":
		return provision.Request{}, nil, errdefs.InvalidArgument(`"service_steps" is only valid when setting target provision state to service`)
	case present(body.DeploySteps) && v.minor < minorDeploySteps:
		return provision.Request{}, nil, errdefs.NotAcceptable("Request not acceptable.")
	case present(body.DeploySteps) && t != "active" && t != "deploy" && t != "rebuild":
		return provision.Request{}, nil, errdefs.InvalidArgument(`"deploy_steps" is only valid when setting target provision state to active or rebuild`)
	case body.DisableRamdisk != nil && v.minor < minorDisableRamdisk:
		return provision.Request{}, nil, errdefs.NotAcceptable("Request not acceptable.")
	case body.DisableRamdisk != nil && t == "service" && v.minor < minorServiceDisableRamdisk:
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
	if present(body.DeploySteps) {
		steps, err := checkDeploySteps(body.DeploySteps)
		if err != nil {
			return provision.Request{}, nil, err
		}
		req.DeploySteps = steps
	}
	switch t {
	case "clean":
		if !present(body.CleanSteps) {
			return provision.Request{}, nil, errdefs.InvalidArgument(`"clean_steps" is required when setting target provision state to clean`)
		}
		steps, err := checkSteps("clean", body.CleanSteps)
		return req, steps, err
	case "service":
		if !present(body.ServiceSteps) {
			return provision.Request{}, nil, errdefs.InvalidArgument(`"service_steps" is required when setting target provision state to service`)
		}
		steps, err := checkSteps("service", body.ServiceSteps)
		return req, steps, err
	}
	return req, nil, nil
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

// checkSteps validates manual clean steps or service steps (kind "clean"
// or "service") against Ironic's schema: a non-empty list of {interface,
// step, args?, reboot_requested?} objects. The args pass through as
// given.
func checkSteps(kind string, raw json.RawMessage) ([]wire.PlannedStep, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errdefs.InvalidArgument("Invalid %s_steps: a list of steps is required", kind)
	}
	if len(list) == 0 {
		return nil, errdefs.InvalidArgument(`No %s steps specified. %s steps are required when setting the target provision state to "%s".`,
			kind, strings.ToUpper(kind[:1])+kind[1:], kind)
	}
	allowed := map[string]bool{"interface": true, "step": true, "args": true, "reboot_requested": true}
	steps := make([]wire.PlannedStep, 0, len(list))
	for i, m := range list {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !allowed[k] {
				return nil, errdefs.InvalidArgument("Invalid %s step %d: Additional properties are not allowed ('%s' was unexpected)", kind, i, k)
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
					return nil, errdefs.InvalidArgument("Invalid %s step %d: %s: %v", kind, i, k, err)
				}
			}
		}
		switch {
		case st.Interface == "":
			return nil, errdefs.InvalidArgument("Invalid %s step %d: 'interface' is a required property", kind, i)
		case !stepInterfaces[st.Interface]:
			return nil, errdefs.InvalidArgument("Invalid %s step %d: '%s' is not one of %s", kind, i, st.Interface, fmt.Sprint(slices.Sorted(maps.Keys(stepInterfaces))))
		case st.Step == "":
			return nil, errdefs.InvalidArgument("Invalid %s step %d: 'step' is a required property", kind, i)
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

// checkDeploySteps validates deploy steps against Ironic's schema: a list
// of {interface, step, args, priority} objects, all four required, the
// priority an integer >= 0 (or a string of digits).
func checkDeploySteps(raw json.RawMessage) ([]wire.PlannedStep, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errdefs.InvalidArgument("Invalid deploy_steps: a list of steps is required")
	}
	steps := make([]wire.PlannedStep, 0, len(list))
	for i, m := range list {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			switch k {
			case "interface", "step", "args", "priority":
			default:
				return nil, errdefs.InvalidArgument("Invalid deploy step %d: Additional properties are not allowed ('%s' was unexpected)", i, k)
			}
		}
		for _, k := range []string{"interface", "step", "args", "priority"} {
			if _, ok := m[k]; !ok {
				return nil, errdefs.InvalidArgument("Invalid deploy step %d: '%s' is a required property", i, k)
			}
		}
		var (
			st   wire.PlannedStep
			args map[string]any
			prio any
		)
		errs := []error{json.Unmarshal(m["interface"], &st.Interface), json.Unmarshal(m["step"], &st.Step),
			json.Unmarshal(m["args"], &args), json.Unmarshal(m["priority"], &prio)}
		if err := errors.Join(errs...); err != nil || args == nil {
			return nil, errdefs.InvalidArgument("Invalid deploy step %d: interface and step are strings, args an object", i)
		}
		var p int
		switch x := prio.(type) {
		case float64:
			if x < 0 || x != float64(int(x)) {
				return nil, errdefs.InvalidArgument("Invalid deploy step %d: priority %v is not an integer >= 0", i, x)
			}
			p = int(x)
		case string:
			n, err := strconv.Atoi(x)
			if err != nil || n < 0 {
				return nil, errdefs.InvalidArgument("Invalid deploy step %d: priority %q is not an integer >= 0", i, x)
			}
			p = n
		default:
			return nil, errdefs.InvalidArgument("Invalid deploy step %d: priority %v is not an integer >= 0", i, prio)
		}
		switch {
		case !stepInterfaces[st.Interface]:
			return nil, errdefs.InvalidArgument("Invalid deploy step %d: '%s' is not one of %s", i, st.Interface, fmt.Sprint(slices.Sorted(maps.Keys(stepInterfaces))))
		case st.Step == "":
			return nil, errdefs.InvalidArgument("Invalid deploy step %d: 'step' must not be empty", i)
		}
		st.Priority = &p
		st.Args = m["args"]
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
