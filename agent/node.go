package agent

import (
	"sync"

	"github.com/rivetmetal/rivet/wire"
)

// nodeCache keeps the node dict the agent last saw: from lookup at first,
// then from each step call, which carries a fresher one (contract §4.3).
type nodeCache struct {
	mu     sync.Mutex
	node   map[string]any
	config wire.LookupConfig
}

func (c *nodeCache) setNode(n map[string]any) {
	if n == nil {
		return
	}
	c.mu.Lock()
	c.node = n
	c.mu.Unlock()
}

func (c *nodeCache) setLookup(n wire.LookupNode, cfg wire.LookupConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.node = map[string]any{
		"uuid":                 n.UUID,
		"properties":           n.Properties,
		"instance_info":        n.InstanceInfo,
		"driver_internal_info": n.DriverInternalInfo,
	}
	c.config = cfg
}

func (c *nodeCache) lookupConfig() wire.LookupConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.config
}

// rootDeviceHints returns instance_info.root_device, else
// properties.root_device, else nil.
func (c *nodeCache) rootDeviceHints() (map[string]any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, key := range []string{"instance_info", "properties"} {
		sub, _ := c.node[key].(map[string]any)
		v, ok := sub["root_device"]
		if !ok || v == nil {
			continue
		}
		h, ok := v.(map[string]any)
		if !ok {
			return nil, ErrInvalidParams("%s.root_device must be an object, got %T", key, v)
		}
		if len(h) > 0 {
			return h, nil
		}
	}
	return nil, nil
}

// section returns a top-level object of the cached node (e.g.
// "driver_internal_info"), or nil.
func (c *nodeCache) section(key string) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, _ := c.node[key].(map[string]any)
	return m
}
