package store

import (
	"maps"
	"math"
	"slices"
)

// NodeAttributes are the node fields Ironic's API added after the first
// schema of this store (API 1.37–1.109: traits, automated_clean,
// protected, retired, lessee, network_data, disable_power_off, the
// per-node hardware interfaces, RAID configuration, …). The SQL stores
// keep them together in one JSON column ("attributes"), so that a field
// Ironic adds later needs no schema change; they are embedded in Node
// and read as node fields. Their zero values are Ironic's defaults.
type NodeAttributes struct {
	// AutomatedClean overrides the conductor's automated cleaning for
	// this node; nil means the conductor's setting.
	AutomatedClean *bool `json:"automated_clean,omitempty"`
	// DisablePowerOff says the node must never be powered off: where a
	// power off is asked for, it is rebooted instead.
	DisablePowerOff bool `json:"disable_power_off,omitempty"`
	// NetworkData is the node's static network configuration, in
	// OpenStack's network_data.json shape ({} when none).
	NetworkData map[string]any `json:"network_data,omitempty"`
	// Protected refuses deletion, undeploy and rebuild of an active node
	// while set; ProtectedReason says why.
	Protected       bool   `json:"protected,omitempty"`
	ProtectedReason string `json:"protected_reason,omitempty"`
	// Retired marks a node to be taken out of service once it is
	// unprovisioned; RetiredReason says why.
	Retired       bool   `json:"retired,omitempty"`
	RetiredReason string `json:"retired_reason,omitempty"`
	// Lessee is the project that leases the node.
	Lessee string `json:"lessee,omitempty"`
	// ConductorGroup, Shard and ParentNode are stored as given (a single
	// Rivet conductor group; shards and child nodes only as labels).
	ConductorGroup string `json:"conductor_group,omitempty"`
	Shard          string `json:"shard,omitempty"`
	ParentNode     string `json:"parent_node,omitempty"`
	// InstanceName is the name of the instance deployed on the node.
	InstanceName string `json:"instance_name,omitempty"`
	// Traits are the node's traits, in the order they were set.
	Traits []string `json:"traits,omitempty"`
	// Interfaces are the node's hardware interfaces by field name
	// ("boot_interface": "ipxe", …), resolved when the node was created
	// or its driver changed; a field absent here (nodes created before
	// the field was stored) takes the hardware type's default.
	Interfaces map[string]string `json:"interfaces,omitempty"`
	// TargetRAIDConfig is the RAID configuration asked for (PUT
	// …/states/raid); RAIDConfig the one last applied.
	TargetRAIDConfig map[string]any `json:"target_raid_config,omitempty"`
	RAIDConfig       map[string]any `json:"raid_config,omitempty"`
	// Fault is the fault the conductor detected ("power failure", …); ""
	// when none.
	Fault string `json:"fault,omitempty"`
}

// Clone returns a deep copy of the attributes.
func (a NodeAttributes) Clone() NodeAttributes {
	c := a
	if a.AutomatedClean != nil {
		v := *a.AutomatedClean
		c.AutomatedClean = &v
	}
	c.NetworkData = CloneJSONMap(a.NetworkData)
	c.Traits = slices.Clone(a.Traits)
	c.Interfaces = maps.Clone(a.Interfaces)
	c.TargetRAIDConfig = CloneJSONMap(a.TargetRAIDConfig)
	c.RAIDConfig = CloneJSONMap(a.RAIDConfig)
	return c
}

// Same reports whether a and b encode to the same attributes text
// (every field is omitted when empty): strictly, as SameJSONMap compares
// the JSON-valued ones, so that false only costs its caller an encoding.
// A field added to NodeAttributes must be compared here
// (TestNodeAttributesSameSeesEveryField fails otherwise).
func (a NodeAttributes) Same(b NodeAttributes) bool {
	return samePtr(a.AutomatedClean, b.AutomatedClean) && a.DisablePowerOff == b.DisablePowerOff &&
		sameOmitted(a.NetworkData, b.NetworkData) && a.Protected == b.Protected &&
		a.ProtectedReason == b.ProtectedReason && a.Retired == b.Retired && a.RetiredReason == b.RetiredReason &&
		a.Lessee == b.Lessee && a.ConductorGroup == b.ConductorGroup && a.Shard == b.Shard &&
		a.ParentNode == b.ParentNode && a.InstanceName == b.InstanceName && slices.Equal(a.Traits, b.Traits) &&
		maps.Equal(a.Interfaces, b.Interfaces) && sameOmitted(a.TargetRAIDConfig, b.TargetRAIDConfig) &&
		sameOmitted(a.RAIDConfig, b.RAIDConfig) && a.Fault == b.Fault
}

func samePtr[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// sameOmitted compares two JSON-valued fields that are omitted when empty.
func sameOmitted(a, b map[string]any) bool {
	return (len(a) == 0 && len(b) == 0) || SameJSONMap(a, b)
}

// PortAttributes are the port fields of API 1.88–1.101 (name,
// description, vendor, category), kept in one JSON column like the node's.
type PortAttributes struct {
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Vendor      string `json:"vendor,omitempty"`
	Category    string `json:"category,omitempty"`
}

// CloneJSONMap deep-copies a JSON-valued map: maps and slices of the
// shapes JSON decoding produces, and the string lists and maps the stores'
// fields hold, are copied down to their leaves; other values (strings,
// numbers, booleans, nulls) are immutable and shared. nil stays nil.
func CloneJSONMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = cloneJSONValue(v)
	}
	return c
}

func cloneJSONValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return CloneJSONMap(x)
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = cloneJSONValue(e)
		}
		return c
	case []string:
		return slices.Clone(x)
	case []map[string]any:
		c := make([]map[string]any, len(x))
		for i, e := range x {
			c[i] = CloneJSONMap(e)
		}
		return c
	case map[string]string:
		return maps.Clone(x)
	}
	return v
}

// SameJSONMap reports whether a and b hold the same JSON values of the
// kinds decoding JSON yields (objects, arrays, strings, float64 numbers,
// booleans, nulls), so that both encode to the same text. It is strict:
// a value of any other kind, a nil map or array, and -0 against 0 make
// it false, which only costs its caller an encoding.
func SameJSONMap(a, b map[string]any) bool {
	if a == nil || b == nil || len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !sameJSONValue(va, vb) {
			return false
		}
	}
	return true
}

func sameJSONValue(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		return ok && SameJSONMap(x, y)
	case []any:
		y, ok := b.([]any)
		if !ok || x == nil || y == nil || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSONValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case string:
		y, ok := b.(string)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	return false
}

// Clone is a deep copy of n: its JSON-valued fields are copied down to
// their leaves (CloneJSONMap) and its attributes with theirs; nil stays
// nil.
func (n *Node) Clone() *Node {
	if n == nil {
		return nil
	}
	c := *n
	c.InstanceInfo = CloneJSONMap(n.InstanceInfo)
	c.DriverInfo = CloneJSONMap(n.DriverInfo)
	c.DriverInternalInfo = CloneJSONMap(n.DriverInternalInfo)
	c.Properties = CloneJSONMap(n.Properties)
	c.Extra = CloneJSONMap(n.Extra)
	c.DeployStep = CloneJSONMap(n.DeployStep)
	c.NodeAttributes = n.NodeAttributes.Clone()
	return &c
}

// Clone is a deep copy of p (its attributes are strings); nil stays nil.
func (p *Port) Clone() *Port {
	if p == nil {
		return nil
	}
	c := *p
	c.Extra = CloneJSONMap(p.Extra)
	c.LocalLinkConnection = CloneJSONMap(p.LocalLinkConnection)
	c.InternalInfo = CloneJSONMap(p.InternalInfo)
	return &c
}
