package sqlite

import (
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
)

// portCacheEntries bounds the answers the port cache holds (node port
// lists and MAC look-ups together); past it, it starts again empty.
const portCacheEntries = 1 << 16

// portCache holds answers of port reads — the ports of a node, the nodes
// a MAC address belongs to — so that the reads a deploy makes at every
// boot (the lookup's MAC query, the port lists sent to the agent) do not
// queue for the read pool. Ports change seldom (enrolment, inspection),
// and only through this store: every port write, and every node deletion
// (which deletes its ports), empties the cache once it committed.
//
// A reader takes the cache's generation before it queries and keeps its
// answer only if no write emptied the cache meanwhile: an answer read
// before a write committed is thus never kept after it.
//
// Each booting agent asks for its own MACs, once: answers kept per MAC
// would serve none of the others. So the first MAC not held loads the
// whole index of addresses (one scan, a few milliseconds for thousands of
// ports) and every MAC is answered from it until a port write empties the
// cache; under a stream of port writes (enrolment, inspection) the index
// is loaded at most once per macIndexInterval and MACs are queried one by
// one in between.
type portCache struct {
	mu     sync.Mutex
	gen    uint64
	byNode map[int64][]*store.Port
	byMAC  map[string][]int64
	// index maps every port address to the IDs of its nodes, loaded at
	// generation gen; nil when not loaded since the last write.
	index map[string][]int64
	// loading says an index load is under way; nextLoad is the earliest
	// time the next may start.
	loading  bool
	nextLoad time.Time
}

// macIndexInterval is the least time between two loads of the MAC index.
const macIndexInterval = time.Second

// macIndexBackoff is the wait before trying again after an index that
// would have held more than portCacheEntries addresses.
const macIndexBackoff = time.Minute

func newPortCache() *portCache {
	return &portCache{byNode: map[int64][]*store.Port{}, byMAC: map[string][]int64{}}
}

// generation is the cache's generation, to pass to put*.
func (c *portCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// invalidate empties the cache, after a write of ports committed (or
// failed: what it did is unknown).
func (c *portCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.clearLocked()
	c.index = nil
}

func (c *portCache) clearLocked() {
	clear(c.byNode)
	clear(c.byMAC)
}

// makeRoomLocked makes room for one more answer.
func (c *portCache) makeRoomLocked() {
	if len(c.byNode)+len(c.byMAC) >= portCacheEntries {
		c.clearLocked()
	}
}

// nodePorts returns copies of node id's ports, if held.
func (c *portCache) nodePorts(id int64) ([]*store.Port, bool) {
	c.mu.Lock()
	ports, ok := c.byNode[id]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	out := make([]*store.Port, len(ports))
	for i, p := range ports {
		out[i] = p.Clone()
	}
	return out, true
}

// putNodePorts holds node id's ports, read at generation gen; the caller
// keeps ports, which the cache copies.
func (c *portCache) putNodePorts(gen uint64, id int64, ports []*store.Port) {
	held := make([]*store.Port, len(ports))
	for i, p := range ports {
		held[i] = p.Clone()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.makeRoomLocked()
	c.byNode[id] = held
}

// macNodes returns the IDs of the nodes with a port of MAC address mac
// (lower case), if held.
func (c *portCache) macNodes(mac string) ([]int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.index != nil {
		return c.index[mac], true
	}
	ids, ok := c.byMAC[mac]
	return ids, ok
}

// startIndexLoad reports whether the caller is to load the MAC index now
// (none is held, none is being loaded, and the last load is not too
// recent), and the generation to pass to finishIndexLoad.
func (c *portCache) startIndexLoad(now time.Time) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.index != nil || c.loading || now.Before(c.nextLoad) {
		return 0, false
	}
	c.loading = true
	c.nextLoad = now.Add(macIndexInterval)
	return c.gen, true
}

// finishIndexLoad ends a load started at generation gen: index, the
// whole index as read (nil if the read failed), is kept, read-only from
// then on, provided no write emptied the cache meanwhile. tooBig says the
// ports were more than portCacheEntries: no load is tried for
// macIndexBackoff.
func (c *portCache) finishIndexLoad(gen uint64, index map[string][]int64, tooBig bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loading = false
	if tooBig {
		c.nextLoad = now.Add(macIndexBackoff)
		return
	}
	if index != nil && gen == c.gen {
		c.index = index
	}
}

// putMACNodes holds the IDs of the nodes with a port of mac, read at
// generation gen; ids is the cache's afterwards.
func (c *portCache) putMACNodes(gen uint64, mac string, ids []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.makeRoomLocked()
	c.byMAC[mac] = ids
}
