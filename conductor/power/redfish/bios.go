package redfish

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"

	rf "github.com/stmcginnis/gofish/redfish"

	"github.com/rivetmetal/rivet/conductor/power"
)

var (
	_ power.BIOSReader     = (*Driver)(nil)
	_ power.FirmwareReader = (*Driver)(nil)
)

// BIOSSettings implements power.BIOSReader: the Attributes of the
// system's Bios resource, described by the BIOS attribute registry the
// Bios names (found, as Ironic's sushy finds it, among the service's
// Registries by Id or Registry, in English when offered). Without a
// registry, or when it cannot be read, the settings come without
// metadata, as Ironic caches them. Values are rendered as Ironic renders
// them (Python's str: 3, True, Enabled).
func (d *Driver) BIOSSettings(ctx context.Context, node power.Node) ([]power.BIOSSetting, error) {
	const op = "read BIOS settings"
	s, err := d.connect(ctx, node, op)
	if err != nil {
		return nil, err
	}
	defer s.close()
	bios, err := s.system.Bios()
	if err != nil {
		return nil, fmt.Errorf("redfish: node %s: %s: get Bios: %w", node.UUID, op, err)
	}
	if bios == nil {
		return nil, fmt.Errorf("redfish: node %s: %s: system %s has no Bios resource: %w",
			node.UUID, op, s.system.ODataID, power.ErrUnsupported)
	}
	var meta map[string]rf.Attribute
	if bios.AttributeRegistry != "" {
		meta, err = s.attributeRegistry(bios.AttributeRegistry)
		if err != nil {
			d.cfg.Logger.Info("redfish: BIOS attribute registry unreadable; settings without metadata",
				"node", node.UUID, "registry", bios.AttributeRegistry, "error", err)
		}
	}
	out := make([]power.BIOSSetting, 0, len(bios.Attributes))
	for name, v := range bios.Attributes {
		b := power.BIOSSetting{Name: name, Value: pythonString(v)}
		if a, ok := meta[name]; ok {
			describe(&b, a)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b power.BIOSSetting) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// attributeRegistry reads the attribute registry named id from the
// service's Registries and indexes its attributes by name; nil when the
// service does not list it.
func (s *session) attributeRegistry(id string) (map[string]rf.Attribute, error) {
	files, err := s.client.Service.Registries()
	if err != nil {
		return nil, fmt.Errorf("list registries: %w", err)
	}
	var uri string
	for _, f := range files {
		if f.ID != id && f.Registry != id {
			continue
		}
		for _, l := range f.Location {
			if l.URI == "" {
				continue
			}
			if uri == "" || l.Language == "en" {
				uri = l.URI
			}
		}
	}
	if uri == "" {
		return nil, nil
	}
	reg, err := rf.GetAttributeRegistry(s.client, uri)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", uri, err)
	}
	m := make(map[string]rf.Attribute, len(reg.RegistryEntries.Attributes))
	for _, a := range reg.RegistryEntries.Attributes {
		m[a.AttributeName] = a
	}
	return m, nil
}

// describe fills a setting's metadata from its registry entry: the
// bounds of Integer attributes, the lengths of String ones, the values of
// Enumerations (gofish reads absent numbers as 0, so a number is only
// reported for the type it applies to).
func describe(b *power.BIOSSetting, a rf.Attribute) {
	b.AttributeType = string(a.Type)
	ptr := func(v int64) *int {
		i := int(max(min(v, math.MaxInt32), math.MinInt32))
		return &i
	}
	switch a.Type {
	case rf.EnumerationAttributeType:
		b.AllowableValues = make([]string, 0, len(a.Value))
		for _, v := range a.Value {
			b.AllowableValues = append(b.AllowableValues, v.ValueName)
		}
	case rf.IntegerAttributeType:
		b.LowerBound = ptr(a.LowerBound)
		upper := int64(math.MaxInt32)
		if a.UpperBound.IsInt64() {
			upper = a.UpperBound.Int64()
		} else if a.UpperBound.Sign() < 0 {
			upper = math.MinInt32
		}
		b.UpperBound = ptr(upper)
	case rf.StringAttributeType:
		b.MinLength = ptr(a.MinLength)
		b.MaxLength = ptr(a.MaxLength)
	}
	b.ReadOnly = &a.ReadOnly
	b.ResetRequired = &a.ResetRequired
	b.Unique = &a.IsSystemUniqueProperty
}

// pythonString renders a JSON value as Ironic stores a BIOS setting's
// value (str() of the decoded value): integers without a decimal point,
// booleans True/False, null as "".
func pythonString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		if v {
			return "True"
		}
		return "False"
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// FirmwareComponents implements power.FirmwareReader as Ironic's redfish
// firmware interface reports: "bios" (the system's BiosVersion) and "bmc"
// (the FirmwareVersion of the manager that manages the system), each only
// when the BMC reports it.
func (d *Driver) FirmwareComponents(ctx context.Context, node power.Node) ([]power.FirmwareComponent, error) {
	const op = "read firmware components"
	s, err := d.connect(ctx, node, op)
	if err != nil {
		return nil, err
	}
	defer s.close()
	out := []power.FirmwareComponent{}
	if v := s.system.BIOSVersion; v != "" {
		out = append(out, power.FirmwareComponent{Component: "bios", CurrentVersion: v})
	}
	managers, err := s.system.ManagedBy()
	if err != nil {
		return nil, fmt.Errorf("redfish: node %s: %s: get managers: %w", node.UUID, op, err)
	}
	for _, m := range managers {
		if m.FirmwareVersion != "" {
			out = append(out, power.FirmwareComponent{Component: "bmc", CurrentVersion: m.FirmwareVersion})
			break
		}
	}
	return out, nil
}
