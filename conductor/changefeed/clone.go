package changefeed

import (
	"github.com/rivetmetal/rivet/conductor/store"
)

// CloneNode is a deep copy of n: its JSON-valued fields are copied down to
// their leaves (maps and slices of the shapes JSON decoding produces;
// other values are copied as they are, which is a deep copy for the
// scalars stores hold).
func CloneNode(n *store.Node) *store.Node {
	if n == nil {
		return nil
	}
	c := *n
	c.InstanceInfo = cloneMap(n.InstanceInfo)
	c.DriverInfo = cloneMap(n.DriverInfo)
	c.DriverInternalInfo = cloneMap(n.DriverInternalInfo)
	c.Properties = cloneMap(n.Properties)
	c.Extra = cloneMap(n.Extra)
	c.DeployStep = cloneMap(n.DeployStep)
	c.NodeAttributes = n.NodeAttributes.Clone()
	return &c
}

func clonePort(p *store.Port) *store.Port {
	if p == nil {
		return nil
	}
	c := *p
	c.Extra = cloneMap(p.Extra)
	c.LocalLinkConnection = cloneMap(p.LocalLinkConnection)
	c.InternalInfo = cloneMap(p.InternalInfo)
	return &c
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = cloneValue(v)
	}
	return c
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneMap(x)
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = cloneValue(e)
		}
		return c
	case []string:
		return append([]string(nil), x...)
	case []map[string]any:
		c := make([]map[string]any, len(x))
		for i, e := range x {
			c[i] = cloneMap(e)
		}
		return c
	case map[string]string:
		c := make(map[string]string, len(x))
		for k, e := range x {
			c[k] = e
		}
		return c
	}
	return v
}
