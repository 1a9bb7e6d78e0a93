// Package hardwaretype describes the conductor's hardware types as Ironic
// does: for each hardware type (a node's "driver": fake-hardware, ipmi,
// redfish, and Rivet's own qemu) and each of the thirteen hardware
// interfaces, the implementations it accepts — the names Ironic's hardware
// type of the same name accepts, so that clients written against Ironic
// (Metal3's baremetal-operator, metalsmith, Bifrost, scripts) can enroll
// nodes unchanged — the default one, and which of them this conductor
// carries out (Implemented). A node may be enrolled with any accepted
// implementation; an operation that needs one this conductor does not
// carry out fails with a clear last_error, not the enrollment.
package hardwaretype

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Kinds are the hardware interface kinds, in Ironic's order
// (ironic.drivers.base.ALL_INTERFACES sorted as the API lists them).
var Kinds = []string{"bios", "boot", "console", "deploy", "firmware", "inspect",
	"management", "network", "power", "raid", "rescue", "storage", "vendor"}

// Field is the node field of an interface kind ("boot" → "boot_interface").
func Field(kind string) string { return kind + "_interface" }

// KindOf is the interface kind of a node field ("boot_interface" → "boot").
func KindOf(field string) (string, bool) {
	k, ok := strings.CutSuffix(field, "_interface")
	return k, ok && slices.Contains(Kinds, k)
}

// Fields are the node's interface fields, in Kinds order.
func Fields() []string {
	out := make([]string, len(Kinds))
	for i, k := range Kinds {
		out[i] = Field(k)
	}
	return out
}

// Type is a hardware type: the implementations of each interface kind it
// accepts, its default first.
type Type struct {
	Name       string
	interfaces map[string][]string
}

// Enabled lists the implementations of kind the type accepts, the default
// first.
func (t *Type) Enabled(kind string) []string { return slices.Clone(t.interfaces[kind]) }

// Default is the implementation of kind a node gets when none is asked for.
func (t *Type) Default(kind string) string {
	if l := t.interfaces[kind]; len(l) > 0 {
		return l[0]
	}
	return ""
}

// Accepts reports whether the type accepts impl for kind.
func (t *Type) Accepts(kind, impl string) bool { return slices.Contains(t.interfaces[kind], impl) }

// Defaults are the default implementation of every kind, by field name.
func (t *Type) Defaults() map[string]string {
	out := make(map[string]string, len(Kinds))
	for _, k := range Kinds {
		out[Field(k)] = t.Default(k)
	}
	return out
}

// UnsupportedError refuses an implementation a hardware type does not
// accept (Ironic's IncompatibleInterface).
type UnsupportedError struct {
	Type, Kind, Impl string
	Enabled          []string
}

// Error implements error, in Ironic's words.
func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s interface implementation '%s' is not supported by hardware type %s. Supported: %s.",
		e.Kind, e.Impl, e.Type, strings.Join(e.Enabled, ", "))
}

// Resolve returns the node's interfaces by field name: those requested
// (by field name; "" means the default) checked against the type, the
// defaults for the rest.
func (t *Type) Resolve(requested map[string]string) (map[string]string, error) {
	out := t.Defaults()
	for _, field := range slices.Sorted(maps.Keys(requested)) {
		impl := requested[field]
		kind, ok := KindOf(field)
		if !ok {
			return nil, fmt.Errorf("hardwaretype: %q is not an interface field", field)
		}
		if impl == "" {
			continue
		}
		if !t.Accepts(kind, impl) {
			return nil, &UnsupportedError{Type: t.Name, Kind: kind, Impl: impl, Enabled: t.Enabled(kind)}
		}
		out[field] = impl
	}
	return out, nil
}

// Lookup finds a hardware type by name.
func Lookup(name string) (*Type, bool) {
	t, ok := types[name]
	return t, ok
}

// Names lists the hardware types this package knows, sorted.
func Names() []string { return slices.Sorted(maps.Keys(types)) }

// Of returns a node's effective interfaces by field name: those stored on
// the node over its hardware type's defaults (a node enrolled before its
// interfaces were stored has none). An unknown driver gets the generic
// defaults.
func Of(driver string, stored map[string]string) map[string]string {
	t, ok := Lookup(driver)
	if !ok {
		t = &Type{Name: driver, interfaces: generic(nil)}
	}
	out := t.Defaults()
	for f, v := range stored {
		if _, ok := KindOf(f); ok && v != "" {
			out[f] = v
		}
	}
	return out
}

// Implemented reports whether this conductor carries out implementation
// impl of an interface kind (with the hardware type's own power driver
// for power and management). Implementations that are accepted but not
// implemented fail the operation that needs them, with NotImplemented's
// message.
func Implemented(kind, impl string) bool { return implemented[kind][impl] }

// NotImplemented is the last_error of an operation that needs an
// implementation this conductor does not carry out.
func NotImplemented(kind, impl string) string {
	return fmt.Sprintf("The %s interface %q is not implemented by this conductor (rivet-conductor) yet; "+
		"set %s to one of: %s.", kind, impl, Field(kind), strings.Join(slices.Sorted(maps.Keys(implemented[kind])), ", "))
}

// implemented are the implementations this conductor carries out, by
// kind. bios and firmware "redfish" read settings and components; their
// apply and update steps are not implemented. raid "agent" runs the RAID
// steps the agent reports; the target RAID configuration is stored.
// "fake" implementations do nothing and succeed; deploy "autodetect"
// deploys as "direct".
var implemented = map[string]map[string]bool{
	"bios":       set("no-bios", "fake", "redfish"),
	"boot":       set("ipxe", "pxe", "http", "http-ipxe", "fake", "qemu"),
	"console":    set("no-console", "fake"),
	"deploy":     set("direct", "custom-agent", "autodetect"),
	"firmware":   set("no-firmware", "fake", "redfish"),
	"inspect":    set("agent", "no-inspect", "fake"),
	"management": set("ipmitool", "redfish", "idrac-redfish", "fake", "qemu"),
	"network":    set("noop", "flat"),
	"power":      set("ipmitool", "redfish", "idrac-redfish", "fake", "qemu"),
	"raid":       set("no-raid", "agent", "fake"),
	"rescue":     set("no-rescue", "fake"),
	"storage":    set("noop", "fake"),
	"vendor":     set("no-vendor", "fake", "redfish", "idrac-redfish"),
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// generic are the interfaces of Ironic's generic hardware type, with
// Rivet's defaults first (what an ironic.conf enabling the implemented
// ones first would give), and own overriding kinds.
func generic(own map[string][]string) map[string][]string {
	g := map[string][]string{
		"bios":       {"no-bios"},
		"boot":       {"ipxe", "pxe", "http-ipxe", "http"},
		"console":    {"no-console", "fake-graphical"},
		"deploy":     {"direct", "custom-agent", "autodetect", "ramdisk", "anaconda", "ansible", "bootc"},
		"firmware":   {"no-firmware"},
		"inspect":    {"agent", "no-inspect"},
		"management": {"noop"},
		"network":    {"noop", "flat", "neutron", "ironic-networking"},
		"power":      {},
		"raid":       {"no-raid", "agent"},
		"rescue":     {"no-rescue", "agent"},
		"storage":    {"noop", "cinder", "external"},
		"vendor":     {"no-vendor"},
	}
	for k, v := range own {
		g[k] = v
	}
	return g
}

// withFake puts "fake" after the default of each generic kind, as Ironic's
// fake-hardware type accepts the fake implementation of every interface.
func withFake(g map[string][]string) map[string][]string {
	for k, l := range g {
		if !slices.Contains(l, "fake") {
			g[k] = append(l, "fake")
		}
	}
	return g
}

// types are the hardware types by name.
var types = map[string]*Type{
	"fake-hardware": {Name: "fake-hardware", interfaces: withFake(generic(map[string][]string{
		"boot":       {"fake", "ipxe", "pxe", "http-ipxe", "http"},
		"management": {"fake"},
		"power":      {"fake"},
		"vendor":     {"no-vendor", "fake"},
	}))},
	"ipmi": {Name: "ipmi", interfaces: generic(map[string][]string{
		"console":    {"no-console", "ipmitool-socat", "fake-graphical"},
		"management": {"ipmitool", "noop"},
		"power":      {"ipmitool"},
		"vendor":     {"no-vendor", "ipmitool"},
	})},
	"redfish": {Name: "redfish", interfaces: generic(map[string][]string{
		"bios":       {"redfish", "no-bios"},
		"boot":       {"ipxe", "pxe", "http-ipxe", "http", "redfish-virtual-media", "redfish-https"},
		"console":    {"no-console", "redfish-graphical", "ipmitool-socat", "fake-graphical"},
		"firmware":   {"redfish", "no-firmware"},
		"inspect":    {"agent", "redfish", "no-inspect"},
		"management": {"redfish", "noop"},
		"power":      {"redfish"},
		"raid":       {"no-raid", "redfish", "agent"},
		"vendor":     {"redfish", "no-vendor"},
	})},
	// idrac is Dell's iDRAC through Redfish (power and management
	// idrac-redfish run as redfish's; the others are accepted, not
	// carried out), as BMO enrolls idrac-redfish:// and
	// idrac-virtualmedia:// hosts. Defaults are the implemented ones.
	"idrac": {Name: "idrac", interfaces: generic(map[string][]string{
		"bios":       {"no-bios", "idrac-redfish"},
		"boot":       {"ipxe", "pxe", "http-ipxe", "http", "idrac-redfish-virtual-media", "redfish-https"},
		"console":    {"no-console", "fake-graphical"},
		"firmware":   {"redfish", "no-firmware"},
		"inspect":    {"agent", "idrac-redfish", "redfish", "no-inspect"},
		"management": {"idrac-redfish", "noop"},
		"power":      {"idrac-redfish"},
		"raid":       {"no-raid", "idrac-redfish", "agent"},
		"vendor":     {"no-vendor", "idrac-redfish"},
	})},
	// qemu is Rivet's own: the conductor runs the node as a QEMU process
	// and boots the deploy kernel directly.
	"qemu": {Name: "qemu", interfaces: generic(map[string][]string{
		"boot":       {"qemu"},
		"management": {"qemu"},
		"power":      {"qemu"},
	})},
}
