package ironicjson

import "github.com/rivetmetal/rivet/conductor/store"

// portFieldMinor maps port fields to the API minor version that introduced
// them.
var portFieldMinor = map[string]int{
	"internal_info": 18, "local_link_connection": 19, "pxe_enabled": 19,
	"portgroup_uuid": 24, "physical_network": 34, "is_smartnic": 53, "name": 88,
	"description": 97, "vendor": 100, "category": 101,
}

// DefaultPortListFields are the fields of a port in a plain list.
var DefaultPortListFields = []string{"uuid", "address", "links"}

// PortFields are the fields a port document may contain.
func PortFields() []string {
	doc := Port(&store.Port{}, Options{})
	out := make([]string, 0, len(doc))
	for k := range doc {
		out = append(out, k)
	}
	return out
}

// Port renders p as the API shows it.
func Port(p *store.Port, o Options) map[string]any {
	doc := map[string]any{
		"uuid":                  p.UUID,
		"address":               p.Address,
		"node_uuid":             p.NodeUUID,
		"extra":                 CopyDict(p.Extra),
		"local_link_connection": CopyDict(p.LocalLinkConnection),
		"pxe_enabled":           p.PXEEnabled,
		"internal_info":         CopyDict(p.InternalInfo),
		"portgroup_uuid":        nil,
		"physical_network":      nullString(p.PhysicalNetwork),
		"is_smartnic":           false,
		"name":                  nullString(p.Name),
		"description":           nullString(p.Description),
		"vendor":                nullString(p.Vendor),
		"category":              nullString(p.Category),
		"created_at":            apiTime(p.CreatedAt),
		"updated_at":            apiTime(p.UpdatedAt),
		"links":                 links(o.BaseURL, "ports", p.UUID),
	}
	for f, minor := range portFieldMinor {
		if o.minor() < minor {
			delete(doc, f)
		}
	}
	return doc
}

// AgentPort renders the port dictionary sent to the agent with step
// commands.
func AgentPort(p *store.Port) map[string]any {
	return map[string]any{
		"id":                    p.ID,
		"uuid":                  p.UUID,
		"node_id":               p.NodeID,
		"node_uuid":             p.NodeUUID,
		"address":               p.Address,
		"extra":                 CopyDict(p.Extra),
		"local_link_connection": CopyDict(p.LocalLinkConnection),
		"portgroup_id":          nil,
		"pxe_enabled":           p.PXEEnabled,
		"internal_info":         CopyDict(p.InternalInfo),
		"physical_network":      nullString(p.PhysicalNetwork),
		"is_smartnic":           false,
		"name":                  nullString(p.Name),
		"description":           nullString(p.Description),
		"vendor":                nullString(p.Vendor),
		"category":              nullString(p.Category),
		"created_at":            agentTime(p.CreatedAt),
		"updated_at":            agentTime(p.UpdatedAt),
	}
}

// Select keeps only the named fields of doc (a ?fields= query); unknown
// names are ignored here and validated by the caller.
func Select(doc map[string]any, fields []string) map[string]any {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		if v, ok := doc[f]; ok {
			out[f] = v
		}
	}
	return out
}
