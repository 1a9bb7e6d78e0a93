package api

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/conductor/store"
)

// The node's writable fields (POST /v1/nodes and PATCH /v1/nodes/{id}),
// written as one table: each field's JSON type, the API version that
// introduced it, whether a create and a patch may set it, and how it is
// read from and written to the node. Both handlers build a document of
// these fields (the node's current values for a patch, an empty node's
// for a create), change it (JSON Patch, or the body's keys) and read it
// back through the table, so the type rules are written once.

// fieldType is how a writable field's JSON value is read.
type fieldType int

const (
	// tString is a string or null ("" and null are the same).
	tString fieldType = iota
	// tBool is a boolean, or one of the strings Ironic's args.boolean
	// takes ("true", "false", "yes", "no", "1", "0", "on", "off"); null
	// is false.
	tBool
	// tTriBool is like tBool but keeps null (automated_clean).
	tTriBool
	// tDict is an object or null (an empty object).
	tDict
)

// nodeField is one writable node field.
type nodeField struct {
	name   string
	typ    fieldType
	minor  int
	create bool
	patch  bool
	maxLen int
	// get is the field's value in the writable document (a string or
	// nil, a bool, a *bool as bool or nil, a map).
	get func(n *store.Node) any
	// set stores the value read (string, bool, *bool or map[string]any).
	set func(n *store.Node, v any)
}

func strField(name string, minor int, create, patch bool, maxLen int, p func(n *store.Node) *string) nodeField {
	return nodeField{name: name, typ: tString, minor: minor, create: create, patch: patch, maxLen: maxLen,
		get: func(n *store.Node) any { return nullable(*p(n)) },
		set: func(n *store.Node, v any) { *p(n) = v.(string) }}
}

func boolField(name string, minor int, create, patch bool, p func(n *store.Node) *bool) nodeField {
	return nodeField{name: name, typ: tBool, minor: minor, create: create, patch: patch,
		get: func(n *store.Node) any { return *p(n) },
		set: func(n *store.Node, v any) { *p(n) = v.(bool) }}
}

func dictField(name string, minor int, p func(n *store.Node) *map[string]any) nodeField {
	return nodeField{name: name, typ: tDict, minor: minor, create: true, patch: true,
		get: func(n *store.Node) any { return ironicjson.CopyDict(*p(n)) },
		set: func(n *store.Node, v any) { *p(n) = v.(map[string]any) }}
}

// interfaceMinor is the API version that introduced each interface field.
var interfaceMinor = map[string]int{"network": 20, "storage": 33, "rescue": 38, "bios": 40, "firmware": 86}

// nodeFields is the table, by field name.
var nodeFields = func() map[string]nodeField {
	fields := []nodeField{
		strField("uuid", 1, true, false, 0, func(n *store.Node) *string { return &n.UUID }),
		strField("name", 5, true, true, 255, func(n *store.Node) *string { return &n.Name }),
		strField("driver", 1, true, true, 255, func(n *store.Node) *string { return &n.Driver }),
		dictField("driver_info", 1, func(n *store.Node) *map[string]any { return &n.DriverInfo }),
		dictField("instance_info", 1, func(n *store.Node) *map[string]any { return &n.InstanceInfo }),
		dictField("properties", 1, func(n *store.Node) *map[string]any { return &n.Properties }),
		dictField("extra", 1, func(n *store.Node) *map[string]any { return &n.Extra }),
		dictField("network_data", 66, func(n *store.Node) *map[string]any { return &n.NetworkData }),
		strField("instance_uuid", 1, true, true, 36, func(n *store.Node) *string { return &n.InstanceUUID }),
		boolField("maintenance", 1, true, true, func(n *store.Node) *bool { return &n.Maintenance }),
		// Not patchable in Ironic (it goes with PUT …/maintenance); kept
		// patchable here as before.
		strField("maintenance_reason", 1, false, true, 0, func(n *store.Node) *string { return &n.MaintenanceReason }),
		strField("resource_class", 21, true, true, 80, func(n *store.Node) *string { return &n.ResourceClass }),
		strField("conductor_group", 46, true, true, 255, func(n *store.Node) *string { return &n.ConductorGroup }),
		{name: "automated_clean", typ: tTriBool, minor: 47, create: true, patch: true,
			get: func(n *store.Node) any { return boolOrNil(n.AutomatedClean) },
			set: func(n *store.Node, v any) { n.AutomatedClean = v.(*bool) }},
		boolField("protected", 48, false, true, func(n *store.Node) *bool { return &n.Protected }),
		strField("protected_reason", 48, false, true, 255, func(n *store.Node) *string { return &n.ProtectedReason }),
		strField("owner", 50, true, true, 255, func(n *store.Node) *string { return &n.Owner }),
		strField("description", 51, true, true, 4096, func(n *store.Node) *string { return &n.Description }),
		boolField("retired", 61, true, true, func(n *store.Node) *bool { return &n.Retired }),
		strField("retired_reason", 61, true, true, 255, func(n *store.Node) *string { return &n.RetiredReason }),
		strField("lessee", 65, true, true, 255, func(n *store.Node) *string { return &n.Lessee }),
		strField("shard", 82, true, true, 255, func(n *store.Node) *string { return &n.Shard }),
		strField("parent_node", 83, true, true, 36, func(n *store.Node) *string { return &n.ParentNode }),
		boolField("disable_power_off", 95, true, true, func(n *store.Node) *bool { return &n.DisablePowerOff }),
		strField("instance_name", 104, true, true, 255, func(n *store.Node) *string { return &n.InstanceName }),
	}
	for _, kind := range hardwaretype.Kinds {
		field := hardwaretype.Field(kind)
		minor := interfaceMinor[kind]
		if minor == 0 {
			minor = 31
		}
		fields = append(fields, nodeField{name: field, typ: tString, minor: minor, create: true, patch: true, maxLen: 255,
			get: func(n *store.Node) any { return hardwaretype.Of(n.Driver, n.Interfaces)[field] },
			set: func(n *store.Node, v any) {
				if n.Interfaces == nil {
					n.Interfaces = map[string]string{}
				}
				n.Interfaces[field] = v.(string)
			}})
	}
	m := make(map[string]nodeField, len(fields))
	for _, f := range fields {
		m[f.name] = f
	}
	return m
}()

// acceptedNull are fields Ironic's schema takes that Rivet does not keep:
// a create or patch may only set them to null (or their default).
var acceptedNull = map[string]bool{"chassis_uuid": true, "console_enabled": true, "boot_mode": true, "secure_boot": true}

// writableDoc is the document of a node's writable fields.
func writableDoc(n *store.Node, create bool) map[string]any {
	doc := make(map[string]any, len(nodeFields))
	for name, f := range nodeFields {
		if (create && f.create) || (!create && f.patch) {
			doc[name] = f.get(n)
		}
	}
	return doc
}

// readDoc reads a changed writable document back into the node, checking
// each field's type and length. Fields absent from the document (removed
// by a patch) take their zero value; interfaces are resolved later.
func readDoc(doc map[string]any, n *store.Node, create bool) error {
	names := slices.Sorted(maps.Keys(nodeFields))
	for _, name := range names {
		f := nodeFields[name]
		if (create && !f.create) || (!create && !f.patch) {
			continue
		}
		v, err := readValue(f, doc[name])
		if err != nil {
			return err
		}
		f.set(n, v)
	}
	return nil
}

// readValue checks one field's JSON value.
func readValue(f nodeField, raw any) (any, error) {
	switch f.typ {
	case tString:
		switch x := raw.(type) {
		case nil:
			return "", nil
		case string:
			if f.maxLen > 0 && len(x) > f.maxLen {
				return nil, errdefs.InvalidArgument("Invalid value for %s: '%s' is too long (at most %d characters)", f.name, x, f.maxLen)
			}
			return x, nil
		}
		return nil, errdefs.InvalidArgument("Invalid value for %s: %s is not of type 'string', 'null'", f.name, jsonText(raw))
	case tBool, tTriBool:
		var b *bool
		switch x := raw.(type) {
		case nil:
		case bool:
			b = &x
		case string:
			v, ok := parseBool(x)
			if !ok {
				return nil, errdefs.InvalidArgument("Invalid value for %s: '%s' is not a boolean", f.name, x)
			}
			b = &v
		default:
			return nil, errdefs.InvalidArgument("Invalid value for %s: %s is not of type 'string', 'boolean', 'null'", f.name, jsonText(raw))
		}
		if f.typ == tTriBool {
			return b, nil
		}
		return b != nil && *b, nil
	case tDict:
		switch x := raw.(type) {
		case nil:
			return map[string]any{}, nil
		case map[string]any:
			return x, nil
		}
		return nil, errdefs.InvalidArgument("Invalid value for %s: %s is not of type 'object', 'null'", f.name, jsonText(raw))
	}
	return nil, fmt.Errorf("api: field %s has no type", f.name)
}

// parseBool reads the strings Ironic's args.boolean accepts.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "t", "yes", "y", "on", "1":
		return true, true
	case "false", "f", "no", "n", "off", "0":
		return false, true
	}
	return false, false
}

func boolOrNil(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// conductorGroupRE is Ironic's rule for conductor group names.
var conductorGroupRE = regexp.MustCompile(`^[a-zA-Z0-9_\-\.]*$`)

// checkNodeRules applies the rules that span fields or need the node's
// state, after a create or patch was read (Ironic's API and
// update_node checks). touched are the fields the request set.
func checkNodeRules(old, n *store.Node, touched map[string]bool) error {
	if touched["name"] && n.Name != old.Name && n.Name != "" && !validName(n.Name) {
		if old.UUID == "" {
			return errdefs.InvalidArgument("Cannot create node with invalid name '%s'", n.Name)
		}
		return errdefs.InvalidArgument("Node %s can not be updated with invalid name %s", n.UUID, n.Name)
	}
	if touched["instance_uuid"] && n.InstanceUUID != "" {
		u, err := uuid.Parse(n.InstanceUUID)
		if err != nil {
			return errdefs.InvalidArgument("Expected a UUID for instance_uuid but received %s.", n.InstanceUUID)
		}
		n.InstanceUUID = u.String()
	}
	if touched["conductor_group"] {
		if !conductorGroupRE.MatchString(n.ConductorGroup) {
			return errdefs.InvalidArgument("Invalid conductor group %s: only letters, digits, underscores, dashes and dots are allowed.", n.ConductorGroup)
		}
		n.ConductorGroup = strings.ToLower(n.ConductorGroup)
	}
	if !n.Maintenance {
		n.MaintenanceReason = ""
	}
	if touched["protected"] && n.Protected && !old.Protected && n.ProvisionState != "active" && n.ProvisionState != "rescue" {
		return errdefs.Conflict("Node %s can only be made protected in provision states 'active' or 'rescue', the current state is '%s'",
			n.UUID, n.ProvisionState)
	}
	if !n.Protected {
		if touched["protected_reason"] && n.ProtectedReason != "" {
			return errdefs.InvalidArgument("The protected_reason field can only be set when protected is True")
		}
		n.ProtectedReason = ""
	}
	if touched["retired"] && n.Retired && !old.Retired && n.ProvisionState == "available" {
		return errdefs.Conflict("Node %s can not have 'retired' set in provision state 'available', the current state is '%s'",
			n.UUID, n.ProvisionState)
	}
	if !n.Retired {
		if touched["retired_reason"] && n.RetiredReason != "" {
			return errdefs.InvalidArgument("The retired_reason field can only be set when retired is True")
		}
		n.RetiredReason = ""
	}
	if touched["network_data"] {
		if err := checkNetworkData(n.NetworkData); err != nil {
			return err
		}
	}
	// instance_info.display_name fills an unset instance_name (Ironic's
	// forward compatibility with Nova).
	if dn, ok := n.InstanceInfo["display_name"].(string); ok && dn != "" && n.InstanceName == "" && touched["instance_info"] {
		n.InstanceName = dn
	}
	return nil
}

// checkNetworkData checks the shape of network_data as Ironic's schema
// does at its top level: an object whose links, networks and services,
// when present, are lists of objects.
func checkNetworkData(nd map[string]any) error {
	for _, k := range slices.Sorted(maps.Keys(nd)) {
		switch k {
		case "links", "networks", "services":
			l, ok := nd[k].([]any)
			if !ok {
				return errdefs.InvalidArgument("Invalid network_data: %s is not of type 'array'", k)
			}
			for i, e := range l {
				if _, ok := e.(map[string]any); !ok {
					return errdefs.InvalidArgument("Invalid network_data: %s[%d] is not of type 'object'", k, i)
				}
			}
		default:
			return errdefs.InvalidArgument("Invalid network_data: Additional properties are not allowed ('%s' was unexpected)", k)
		}
	}
	return nil
}

// resolveInterfaces fixes the node's hardware interfaces against its
// hardware type: the fields the request set are checked; the others keep
// their value, or take the type's default when the driver changed or the
// request removed them (Ironic resets interfaces on a driver change).
func resolveInterfaces(old, n *store.Node, touched map[string]bool) error {
	ty, ok := hardwaretype.Lookup(n.Driver)
	if !ok {
		return errdefs.InvalidArgument(`No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group "".`, n.Driver)
	}
	driverChanged := old.UUID == "" || old.Driver != n.Driver
	req := map[string]string{}
	for _, field := range hardwaretype.Fields() {
		v := n.Interfaces[field]
		switch {
		case touched[field]:
			req[field] = v
		case driverChanged:
			req[field] = ""
		default:
			req[field] = v
		}
	}
	resolved, err := ty.Resolve(req)
	if err != nil {
		return errdefs.InvalidArgument("%v", err)
	}
	n.Interfaces = resolved
	return nil
}

// unknownKeys lists, sorted and quoted, the keys of a create body that
// are not writable fields.
func unknownKeys(raw map[string]json.RawMessage) []string {
	var out []string
	for k := range raw {
		if f, ok := nodeFields[k]; (ok && f.create) || acceptedNull[k] {
			continue
		}
		out = append(out, "'"+k+"'")
	}
	sort.Strings(out)
	return out
}

// tooNew reports whether field is newer than the request's version.
func tooNew(field string, v version) bool {
	f, ok := nodeFields[field]
	return ok && v.minor < f.minor
}

// nullOrDefault reports whether a raw JSON value is null, false or "".
func nullOrDefault(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	if s == "null" || s == "false" || s == `""` {
		return true
	}
	if u, err := strconv.Unquote(s); err == nil {
		b, ok := parseBool(u)
		return ok && !b
	}
	return false
}
