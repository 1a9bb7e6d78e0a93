// Package inspectdata processes the data an inspecting agent posts the
// way Ironic's in-band inspection ("agent" inspect interface) processes
// it with its default hooks — ramdisk-error, validate-interfaces, ports,
// architecture — and the cpus, memory, local-gb, boot-mode and
// parse-lldp hooks: it derives the node's scheduling properties, the
// ports to create or update, and the plugin_data Ironic keeps beside the
// inventory (all_interfaces, valid_interfaces, macs, parsed_lldp, and
// what the agent posted besides the inventory). It is pure: no store, no
// network.
package inspectdata

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/rivetmetal/rivet/wire"
)

// AddPorts says which of the inventory's interfaces become ports
// (Ironic's [inspector]add_ports).
type AddPorts string

// The AddPorts policies.
const (
	// AddPXE adds the interface the node PXE-booted from (all interfaces
	// when the agent did not say which), Ironic's default.
	AddPXE AddPorts = "pxe"
	// AddAll adds every interface with a MAC address.
	AddAll AddPorts = "all"
	// AddActive adds the interfaces that had an IP address.
	AddActive AddPorts = "active"
	// AddDisabled adds none.
	AddDisabled AddPorts = "disabled"
)

// LLDPParser turns the LLDP data of an inventory (interfaces[].lldp, and
// the lldp_raw the agent's "lldp" collector may post) into Ironic's
// parsed_lldp: interface name → the neighbouring switch port's fields
// (switch_chassis_id, switch_port_id, switch_system_name, …). It returns
// nil when there is nothing to report; problems it can skip it reports
// without failing.
type LLDPParser func(inventory json.RawMessage, lldpRaw json.RawMessage) (parsed map[string]any, problems []error)

// Options configures Process.
type Options struct {
	// AddPorts is the port policy (default AddPXE).
	AddPorts AddPorts
	// ParseLLDP, when set, fills plugin_data.parsed_lldp.
	ParseLLDP LLDPParser
}

// Port is a port the inspection asks for: created when missing, its
// pxe_enabled (and client-id) updated when present.
type Port struct {
	Address    string
	PXEEnabled bool
	// ClientID is the InfiniBand DHCP client id, "" when none.
	ClientID string
	// Add says the port is created when missing (add_ports); ports
	// already there are updated whatever it says.
	Add bool
}

// Result is what an inspection yields.
type Result struct {
	// Inventory is the inventory as the agent posted it (its types kept).
	Inventory map[string]any
	// PluginData is Ironic's plugin_data.
	PluginData map[string]any
	// Properties are the scheduling properties to set on the node.
	Properties map[string]any
	// BootMode is the boot mode the ramdisk ran in ("uefi", "bios"), ""
	// when the agent did not say.
	BootMode string
	// Ports are the node's NICs, by MAC.
	Ports []Port
	// Problems are what was skipped (malformed interfaces, LLDP TLVs).
	Problems []error
}

// ErrNoInterfaces is the ramdisk's data without one usable NIC.
var ErrNoInterfaces = errors.New("no valid network interfaces")

// Process reads an agent's inspection data. An error means the data is
// unusable (Ironic's InvalidNodeInventory or a ramdisk error): it names
// what is wrong.
func Process(data wire.InspectionData, opts Options) (*Result, error) {
	if opts.AddPorts == "" {
		opts.AddPorts = AddPXE
	}
	if data.Error != nil && *data.Error != "" {
		return nil, fmt.Errorf("ramdisk reported an error: %s", *data.Error)
	}
	var inv map[string]any
	dec := json.NewDecoder(strings.NewReader(string(data.Inventory)))
	dec.UseNumber()
	if err := dec.Decode(&inv); err != nil || inv == nil {
		return nil, fmt.Errorf("the inventory is not a JSON object: %v", err)
	}
	res := &Result{Inventory: inv, PluginData: map[string]any{}, Properties: map[string]any{}}
	all, problems, err := interfaces(inv)
	res.Problems = append(res.Problems, problems...)
	if err != nil {
		return nil, err
	}
	valid := validInterfaces(inv, all, opts.AddPorts)
	if len(valid) == 0 && opts.AddPorts != AddDisabled {
		return nil, fmt.Errorf("%w: no network interfaces match the configuration (add_ports set to %q)", ErrNoInterfaces, opts.AddPorts)
	}
	macs := make([]any, 0, len(valid))
	for _, name := range slices.Sorted(maps.Keys(valid)) {
		macs = append(macs, valid[name]["mac_address"])
	}
	res.PluginData["all_interfaces"] = toAny(all)
	res.PluginData["valid_interfaces"] = toAny(valid)
	res.PluginData["macs"] = macs
	for _, name := range slices.Sorted(maps.Keys(all)) {
		iface := all[name]
		mac := iface["mac_address"].(string)
		p := Port{Address: mac, PXEEnabled: iface["pxe_enabled"] == true, Add: valid[name] != nil && opts.AddPorts != AddDisabled}
		if cid, ok := iface["client_id"].(string); ok {
			p.ClientID = cid
		}
		res.Ports = append(res.Ports, p)
	}
	var root map[string]any
	if len(data.RootDisk) > 0 && string(data.RootDisk) != "null" {
		if err := json.Unmarshal(data.RootDisk, &root); err != nil {
			return nil, fmt.Errorf("root_disk is not a JSON object: %v", err)
		}
		res.PluginData["root_disk"] = root
	}
	res.PluginData["boot_interface"] = nullable(data.BootInterface)
	res.PluginData["configuration"] = map[string]any{"collectors": orEmpty(data.Configuration.Collectors),
		"managers": managers(data.Configuration.Managers)}
	res.PluginData["error"] = nil
	if opts.ParseLLDP != nil {
		parsed, problems := opts.ParseLLDP(data.Inventory, nil)
		res.Problems = append(res.Problems, problems...)
		if parsed != nil {
			res.PluginData["parsed_lldp"] = parsed
		}
	}
	res.BootMode = bootMode(inv)
	properties(inv, root, res)
	return res, nil
}

// interfaces reads the inventory's NICs into all_interfaces: name →
// the inventory entry with its MAC normalised, pxe_enabled set and the
// IPv6 scope dropped. Entries without a name, MAC or with a bad MAC are
// skipped (and reported).
func interfaces(inv map[string]any) (map[string]map[string]any, []error, error) {
	list, ok := inv["interfaces"].([]any)
	if !ok {
		return nil, nil, fmt.Errorf("%w: no interfaces present in inventory", ErrNoInterfaces)
	}
	pxe := pxeMAC(inv)
	out := map[string]map[string]any{}
	var problems []error
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			problems = append(problems, fmt.Errorf("interface %d is not an object", i))
			continue
		}
		name, _ := m["name"].(string)
		macText, _ := m["mac_address"].(string)
		if name == "" {
			problems = append(problems, fmt.Errorf("interface %d has no name", i))
			continue
		}
		if macText == "" {
			continue // no link information
		}
		mac, ok := normalizeMAC(macText)
		if !ok {
			problems = append(problems, fmt.Errorf("interface %s: MAC address %q is not valid", name, macText))
			continue
		}
		iface := maps.Clone(m)
		iface["mac_address"] = mac
		iface["pxe_enabled"] = mac == pxe
		if v6, ok := iface["ipv6_address"].(string); ok {
			iface["ipv6_address"], _, _ = strings.Cut(v6, "%")
		}
		out[name] = iface
	}
	if len(out) == 0 {
		return nil, problems, fmt.Errorf("%w in the inventory", ErrNoInterfaces)
	}
	return out, problems, nil
}

// validInterfaces applies the add_ports policy to all_interfaces (Ironic's
// validate_interfaces): never the loopback; with "pxe" only the PXE NIC
// when it is known; with "active" only those with an address.
func validInterfaces(inv map[string]any, all map[string]map[string]any, policy AddPorts) map[string]map[string]any {
	pxe := pxeMAC(inv)
	out := map[string]map[string]any{}
	for name, iface := range all {
		ip, _ := iface["ipv4_address"].(string)
		if ip == "" {
			ip, _ = iface["ipv6_address"].(string)
		}
		if name == "lo" || isLoopback(ip) {
			continue
		}
		if policy == AddPXE && pxe != "" && iface["pxe_enabled"] != true {
			continue
		}
		if policy == AddActive && ip == "" {
			continue
		}
		out[name] = iface
	}
	return out
}

// pxeMAC is the MAC the node booted from (inventory.boot.pxe_interface,
// pxelinux form accepted), "" when unknown.
func pxeMAC(inv map[string]any) string {
	boot, _ := inv["boot"].(map[string]any)
	s, _ := boot["pxe_interface"].(string)
	if strings.Count(s, "-") == 6 {
		_, s, _ = strings.Cut(s, "-")
		s = strings.ReplaceAll(s, "-", ":")
	}
	mac, _ := normalizeMAC(s)
	return mac
}

// bootMode is the mode the ramdisk booted in.
func bootMode(inv map[string]any) string {
	boot, _ := inv["boot"].(map[string]any)
	switch m, _ := boot["current_boot_mode"].(string); m {
	case "uefi", "bios":
		return m
	}
	return ""
}

// properties derives cpus, cpu_arch, memory_mb, local_gb and the boot_mode
// capability (Ironic's architecture hook and its cpus, memory, local-gb
// and boot-mode hooks). local_gb is the root disk's size in GiB less one,
// kept for partitioning; the root disk is the one the agent reported, else
// the smallest of at least 4 GiB.
func properties(inv, root map[string]any, res *Result) {
	p := res.Properties
	cpu, _ := inv["cpu"].(map[string]any)
	if n := number(cpu["count"]); n >= 1 {
		p["cpus"] = int(n)
	}
	if a, _ := cpu["architecture"].(string); a != "" {
		p["cpu_arch"] = a
	}
	mem, _ := inv["memory"].(map[string]any)
	switch mb, total := number(mem["physical_mb"]), number(mem["total"]); {
	case mb >= 1:
		p["memory_mb"] = int(mb)
	case total > 0:
		p["memory_mb"] = int(total / (1 << 20))
	}
	size := number(root["size"])
	if size == 0 {
		disks, _ := inv["disks"].([]any)
		for _, d := range disks {
			dm, _ := d.(map[string]any)
			if s := number(dm["size"]); s >= 4<<30 && (size == 0 || s < size) {
				size = s
			}
		}
	}
	if gb := int(size/(1<<30)) - 1; gb > 0 {
		p["local_gb"] = gb
	}
}

// HasCapability reports whether a capabilities string has an entry for
// key.
func HasCapability(caps, key string) bool {
	for _, c := range strings.Split(caps, ",") {
		if k, _, _ := strings.Cut(strings.TrimSpace(c), ":"); k == key {
			return true
		}
	}
	return false
}

// MergeCapabilities sets key:value in a capabilities string
// ("boot_mode:uefi,secure_boot:true"), replacing an entry of the same key
// and keeping the others in order.
func MergeCapabilities(caps, key, value string) string {
	var out []string
	found := false
	for _, c := range strings.Split(caps, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if k, _, _ := strings.Cut(c, ":"); k == key {
			if !found {
				out = append(out, key+":"+value)
				found = true
			}
			continue
		}
		out = append(out, c)
	}
	if !found {
		out = append(out, key+":"+value)
	}
	return strings.Join(out, ",")
}

func number(v any) float64 {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case float64:
		return x
	case int:
		return float64(x)
	}
	return 0
}

func normalizeMAC(s string) (string, bool) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}

func isLoopback(ip string) bool {
	a := net.ParseIP(ip)
	return a != nil && a.IsLoopback()
}

func toAny(m map[string]map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func managers(l []wire.InspectionManager) []any {
	out := make([]any, len(l))
	for i, m := range l {
		out[i] = map[string]any{"name": m.Name, "version": m.Version}
	}
	return out
}
