package ironicjson

import (
	"maps"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// MaxMinor is the newest API minor version whose node shape is rendered
// (1.110: the newest version Metal3's baremetal-operator asks for).
const MaxMinor = 110

// Options controls how API documents are rendered.
type Options struct {
	// BaseURL is the API's public URL, for links (no trailing slash).
	BaseURL string
	// Minor is the request's API minor version; fields introduced later
	// are left out. 0 means MaxMinor.
	Minor int
	// Conductor is the conductor's host name, shown in the node's
	// "conductor" field.
	Conductor string
}

func (o Options) minor() int {
	if o.Minor == 0 {
		return MaxMinor
	}
	return o.Minor
}

// nodeFieldMinor maps node fields to the API minor version that introduced
// them (Ironic's VERSIONED_FIELDS).
var nodeFieldMinor = map[string]int{
	"driver_internal_info": 3, "name": 5, "inspection_finished_at": 6,
	"inspection_started_at": 6, "clean_step": 7, "raid_config": 12,
	"target_raid_config": 12, "network_interface": 20, "resource_class": 21,
	"boot_interface": 31, "console_interface": 31, "deploy_interface": 31,
	"inspect_interface": 31, "management_interface": 31, "power_interface": 31,
	"raid_interface": 31, "vendor_interface": 31, "storage_interface": 33,
	"traits": 37, "rescue_interface": 38, "bios_interface": 40, "fault": 42,
	"deploy_step": 44, "conductor_group": 46, "automated_clean": 47,
	"protected": 48, "protected_reason": 48, "conductor": 49, "owner": 50,
	"description": 51, "allocation_uuid": 52, "retired": 61, "retired_reason": 61,
	"lessee": 65, "network_data": 66, "boot_mode": 75, "secure_boot": 75, "shard": 82,
	"parent_node": 83, "firmware_interface": 86, "service_step": 87,
	"disable_power_off": 95, "instance_name": 104, "health": 109,
	// sub-resource links
	"states": 14, "portgroups": 24, "volume": 32,
}

// NodeFields are the fields a node document may contain, for validating a
// ?fields= query.
func NodeFields() []string {
	doc := nodeDoc(&store.Node{}, Options{})
	out := make([]string, 0, len(doc))
	for k := range doc {
		out = append(out, k)
	}
	return out
}

// DefaultNodeListFields are the fields of a node in a plain (not detailed)
// list.
var DefaultNodeListFields = []string{"instance_uuid", "maintenance", "power_state",
	"provision_state", "uuid", "name", "links"}

// Node renders n as the API shows it: every field of the requested version,
// secrets masked.
func Node(n *store.Node, o Options) map[string]any {
	doc := nodeDoc(n, o)
	doc["driver_info"] = MaskDict(n.DriverInfo)
	doc["instance_info"] = maskInstanceInfo(n.InstanceInfo)
	doc["driver_internal_info"] = maskInternal(n.DriverInternalInfo)
	if o.minor() < 2 && n.ProvisionState == statemachine.Available {
		doc["provision_state"] = nil
	}
	for f, minor := range nodeFieldMinor {
		if o.minor() < minor {
			delete(doc, f)
		}
	}
	return doc
}

// nodeDoc is the unmasked node document with links.
func nodeDoc(n *store.Node, o Options) map[string]any {
	doc := nodeFields(n, CopyDict, apiTime)
	traits := make([]any, len(n.Traits))
	for i, t := range n.Traits {
		traits[i] = t
	}
	doc["traits"] = traits
	doc["reservation"] = nil
	doc["chassis_uuid"] = nil
	doc["allocation_uuid"] = nil
	doc["conductor"] = nullString(o.Conductor)
	doc["links"] = links(o.BaseURL, "nodes", n.UUID)
	doc["ports"] = links(o.BaseURL, "nodes", n.UUID+"/ports")
	doc["states"] = links(o.BaseURL, "nodes", n.UUID+"/states")
	doc["portgroups"] = links(o.BaseURL, "nodes", n.UUID+"/portgroups")
	doc["volume"] = links(o.BaseURL, "nodes", n.UUID+"/volume")
	return doc
}

// nodeFieldCount is the number of fields nodeFields sets besides the
// interfaces; extraDocKeys bounds those Node and AgentNode add.
const (
	nodeFieldCount = 46
	extraDocKeys   = 16
)

// nodeFields are the fields the API's node document and the agent's have
// in common, unmasked: each dict as dict gives it, each time as timeText
// formats it.
func nodeFields(n *store.Node, dict func(map[string]any) map[string]any, timeText func(time.Time) any) map[string]any {
	ifaces := hardwaretype.Of(n.Driver, n.Interfaces)
	// Sized for every key the API or the agent adds: sized for the common
	// fields only, the map was rebuilt at twice the size once the
	// interfaces went in, and two agent documents are built per boot.
	doc := make(map[string]any, nodeFieldCount+len(ifaces)+extraDocKeys)
	doc["uuid"] = n.UUID
	doc["name"] = nullString(n.Name)
	doc["driver"] = n.Driver
	doc["provision_state"] = string(n.ProvisionState)
	doc["target_provision_state"] = nullString(string(n.TargetProvisionState))
	doc["provision_updated_at"] = timeText(n.ProvisionUpdatedAt)
	doc["power_state"] = nullString(n.PowerState)
	doc["target_power_state"] = nullString(n.TargetPowerState)
	doc["maintenance"] = n.Maintenance
	doc["maintenance_reason"] = nullString(n.MaintenanceReason)
	doc["fault"] = nullString(n.Fault)
	doc["last_error"] = nullString(n.LastError)
	doc["instance_uuid"] = nullString(n.InstanceUUID)
	doc["instance_info"] = dict(n.InstanceInfo)
	doc["driver_info"] = dict(n.DriverInfo)
	doc["driver_internal_info"] = dict(n.DriverInternalInfo)
	doc["properties"] = dict(n.Properties)
	doc["extra"] = dict(n.Extra)
	doc["clean_step"] = dict(n.CleanStep())
	doc["deploy_step"] = dict(n.DeployStep)
	doc["raid_config"] = dict(n.RAIDConfig)
	doc["target_raid_config"] = dict(n.TargetRAIDConfig)
	doc["resource_class"] = nullString(n.ResourceClass)
	doc["description"] = nullString(n.Description)
	doc["owner"] = nullString(n.Owner)
	doc["lessee"] = nullString(n.Lessee)
	doc["conductor_group"] = n.ConductorGroup
	doc["console_enabled"] = false
	doc["automated_clean"] = boolOrNull(n.AutomatedClean)
	doc["protected"] = n.Protected
	doc["protected_reason"] = nullString(n.ProtectedReason)
	doc["retired"] = n.Retired
	doc["retired_reason"] = nullString(n.RetiredReason)
	doc["network_data"] = dict(n.NetworkData)
	doc["boot_mode"] = nil
	doc["secure_boot"] = nil
	doc["shard"] = nullString(n.Shard)
	doc["parent_node"] = nullString(n.ParentNode)
	doc["service_step"] = dict(n.ServiceStep())
	doc["disable_power_off"] = n.DisablePowerOff
	doc["instance_name"] = nullString(n.InstanceName)
	doc["health"] = nil
	doc["inspection_started_at"] = nil
	doc["inspection_finished_at"] = nil
	doc["created_at"] = timeText(n.CreatedAt)
	doc["updated_at"] = timeText(n.UpdatedAt)
	for k, v := range ifaces {
		doc[k] = v
	}
	return doc
}

func boolOrNull(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

// LookupNode renders the node part of a lookup answer: uuid, properties,
// instance_info and driver_internal_info, secrets masked, and links.
func LookupNode(n *store.Node, o Options) wire.LookupNode {
	return wire.LookupNode{
		UUID:               n.UUID,
		Properties:         CopyDict(n.Properties),
		InstanceInfo:       maskInstanceInfo(n.InstanceInfo),
		DriverInternalInfo: maskInternal(n.DriverInternalInfo),
		Links:              linkList(o.BaseURL, "nodes", n.UUID),
	}
}

// AgentNode renders the node dictionary sent to the agent with step
// commands (Ironic's node.as_dict with secrets masked): driver_info
// passwords and the agent token are masked; instance_info, configdrive
// included, is sent as is, since the deploy steps need it. The document
// is for encoding at once: its dicts are the node's own, not copies,
// except driver_info (masked, a deep copy) and the top level of
// instance_info and driver_internal_info, whose keys the caller may
// replace (the token is a top-level key).
func AgentNode(n *store.Node, conductor string) map[string]any {
	doc := nodeFields(n, shareDict, agentTime)
	doc["id"] = n.ID
	doc["chassis_id"] = nil
	doc["allocation_id"] = nil
	doc["conductor_affinity"] = nil
	doc["reservation"] = nullString(conductor)
	objs := make([]any, len(n.Traits))
	for i, t := range n.Traits {
		objs[i] = map[string]any{"trait": t}
	}
	doc["traits"] = map[string]any{"objects": objs}
	doc["instance_info"] = topCopy(n.InstanceInfo)
	doc["driver_info"] = MaskDict(n.DriverInfo)
	dii := topCopy(n.DriverInternalInfo)
	maskToken(dii)
	doc["driver_internal_info"] = dii
	return doc
}

// topCopy copies m's top level: its values are m's own (nil gives an
// empty map). A deploy's driver_internal_info holds the steps, whose deep
// copy was a third of the time spent building the agent's document.
func topCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	maps.Copy(out, m)
	return out
}

// shareDict is m itself, or an empty map for nil (a dict is never null).
func shareDict(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// maskInstanceInfo masks instance_info for API readers: passwords, the
// configdrive and the image URL (which may be a temporary URL).
func maskInstanceInfo(ii map[string]any) map[string]any {
	out := MaskDict(ii)
	if v, ok := out["image_url"]; ok && v != nil && v != "" {
		out["image_url"] = wire.Masked
	}
	return out
}

// maskInternal masks the agent token in driver_internal_info.
func maskInternal(dii map[string]any) map[string]any {
	out := CopyDict(dii)
	maskToken(out)
	return out
}

// maskToken masks the agent token in a copy of driver_internal_info.
func maskToken(dii map[string]any) {
	if v, ok := dii["agent_secret_token"]; ok && v != nil && v != "" {
		dii["agent_secret_token"] = wire.Masked
	}
}

func links(base, resource, args string) []any {
	l := linkList(base, resource, args)
	out := make([]any, len(l))
	for i, x := range l {
		out[i] = map[string]any{"href": x.Href, "rel": x.Rel}
	}
	return out
}

func linkList(base, resource, args string) []wire.Link {
	base = strings.TrimSuffix(base, "/")
	return []wire.Link{
		{Href: base + "/v1/" + resource + "/" + args, Rel: "self"},
		{Href: base + "/" + resource + "/" + args, Rel: "bookmark"},
	}
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// apiTime formats a time as Ironic's API does ("2026-11-21T10:00:05.088239+00:00").
func apiTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000-07:00")
}

// agentTime formats a time as Ironic's node dictionaries carry it (naive UTC).
func agentTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000")
}
