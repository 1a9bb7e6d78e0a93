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
	c.InstanceInfo = store.CloneJSONMap(n.InstanceInfo)
	c.DriverInfo = store.CloneJSONMap(n.DriverInfo)
	c.DriverInternalInfo = store.CloneJSONMap(n.DriverInternalInfo)
	c.Properties = store.CloneJSONMap(n.Properties)
	c.Extra = store.CloneJSONMap(n.Extra)
	c.DeployStep = store.CloneJSONMap(n.DeployStep)
	c.NodeAttributes = n.NodeAttributes.Clone()
	return &c
}

func clonePort(p *store.Port) *store.Port {
	if p == nil {
		return nil
	}
	c := *p
	c.Extra = store.CloneJSONMap(p.Extra)
	c.LocalLinkConnection = store.CloneJSONMap(p.LocalLinkConnection)
	c.InternalInfo = store.CloneJSONMap(p.InternalInfo)
	return &c
}
