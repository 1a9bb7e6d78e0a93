package dashboard

import (
	"time"

	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Detail is a node page's data. It names only what the page shows: no
// driver_info (BMC passwords), no agent token, no instance secrets.
type Detail struct {
	Node       Summary        `json:"node"`
	CreatedAt  time.Time      `json:"created_at"`
	UpdatedAt  time.Time      `json:"updated_at,omitzero"`
	Image      string         `json:"image,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
	Ports      []PortView     `json:"ports"`
	Inventory  map[string]any `json:"inventory,omitempty"`
	// Deploys are the per-phase timings of the deploys known, oldest
	// first: those the dashboard saw end, and the node record's last.
	Deploys []Deploy       `json:"deploys"`
	History []HistoryEvent `json:"history"`
	// HistorySource says where History comes from ("store": the node
	// history the conductors record; "feed": what this conductor's change
	// feed saw since it started).
	HistorySource string `json:"history_source"`
}

// PortView is a port as the node page shows it.
type PortView struct {
	UUID            string `json:"uuid"`
	Address         string `json:"address"`
	PXEEnabled      bool   `json:"pxe_enabled"`
	PhysicalNetwork string `json:"physical_network,omitempty"`
}

// Inventory shape limits: lists longer than this are cut.
const maxInventoryList = 256

func detailOf(n *store.Node, ports []*store.Port, hist []HistoryEvent, seen []Deploy, fromFeed bool) Detail {
	d := Detail{Node: summarize(n), CreatedAt: n.CreatedAt, UpdatedAt: n.UpdatedAt,
		Ports: make([]PortView, 0, len(ports)), History: hist, Deploys: seen, HistorySource: "store"}
	if fromFeed {
		d.HistorySource = "feed"
	}
	if d.History == nil {
		d.History = []HistoryEvent{}
	}
	if src, ok := n.InstanceInfo["image_source"].(string); ok {
		d.Image = trimURL(src)
	}
	d.Properties = pick(n.Properties, "cpus", "cpu_arch", "memory_mb", "local_gb", "capabilities")
	for _, p := range ports {
		d.Ports = append(d.Ports, PortView{UUID: p.UUID, Address: p.Address, PXEEnabled: p.PXEEnabled, PhysicalNetwork: p.PhysicalNetwork})
	}
	if inv, ok := n.DriverInternalInfo[keyInventry].(map[string]any); ok {
		d.Inventory = inventoryView(inv)
	}
	if last := deployOf(n); last != nil && (len(seen) == 0 || !sameDeploy(last, &seen[len(seen)-1])) {
		if n.ProvisionState == statemachine.Active && hasTotal(last) {
			last.FinishedAt = n.ProvisionUpdatedAt
		}
		d.Deploys = append(d.Deploys, *last)
	}
	if d.Deploys == nil {
		d.Deploys = []Deploy{}
	}
	return d
}

// inventoryView keeps the parts of an IPA inventory the page shows.
func inventoryView(inv map[string]any) map[string]any {
	out := map[string]any{}
	if m, ok := inv["cpu"].(map[string]any); ok {
		out["cpu"] = pick(m, "model_name", "count", "architecture", "frequency")
	}
	if m, ok := inv["memory"].(map[string]any); ok {
		out["memory"] = pick(m, "total", "physical_mb")
	}
	if m, ok := inv["system_vendor"].(map[string]any); ok {
		out["system_vendor"] = pick(m, "manufacturer", "product_name", "serial_number")
	}
	if m, ok := inv["boot"].(map[string]any); ok {
		out["boot"] = pick(m, "current_boot_mode")
	}
	if s, ok := inv["bmc_address"].(string); ok {
		out["bmc_address"] = s
	}
	out["disks"] = pickList(inv["disks"], "name", "model", "vendor", "size", "rotational", "serial", "wwn", "by_path")
	out["interfaces"] = pickList(inv["interfaces"], "name", "mac_address", "ipv4_address", "ipv6_address", "speed_mbps", "has_carrier", "driver")
	return out
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			switch v.(type) {
			case string, float64, bool, int, int64, nil:
				out[k] = v
			}
		}
	}
	return out
}

func pickList(v any, keys ...string) []map[string]any {
	list, _ := v.([]any)
	out := []map[string]any{}
	for _, e := range list {
		if len(out) == maxInventoryList {
			break
		}
		if m, ok := e.(map[string]any); ok {
			out = append(out, pick(m, keys...))
		}
	}
	return out
}
