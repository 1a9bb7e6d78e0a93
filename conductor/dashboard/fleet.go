package dashboard

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/store"
)

// fleet is the dashboard's in-memory copy of every node's Summary, kept
// from the change feed. A change that leaves a node's summary as it was
// (a heartbeat, a step's bookkeeping) goes no further; one that changes
// it is encoded once and published to the browsers' subscriptions, which
// coalesce per node like the feed's.
type fleet struct {
	hub *changefeed.Hub[*fleetItem]

	mu    sync.RWMutex
	nodes map[string]*fleetItem
}

// fleetItem is one node's summary and its JSON.
type fleetItem struct {
	Summary Summary
	JSON    json.RawMessage
}

func newFleet(clientMaxPending int) *fleet {
	return &fleet{hub: changefeed.NewHub[*fleetItem](clientMaxPending), nodes: map[string]*fleetItem{}}
}

// reset replaces the fleet with nodes, publishing the differences.
func (f *fleet) reset(nodes []*store.Node) {
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		seen[n.UUID] = true
		f.set(summarize(n))
	}
	f.mu.RLock()
	var gone []string
	for id := range f.nodes {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	f.mu.RUnlock()
	for _, id := range gone {
		f.remove(id)
	}
}

// apply applies the feed's changes.
func (f *fleet) apply(items []changefeed.Item[changefeed.Change]) {
	for _, it := range items {
		c := it.Value
		switch c.Kind {
		case changefeed.NodeChanged:
			if c.Node != nil {
				f.set(summarize(c.Node))
			}
		case changefeed.NodeDeleted:
			f.remove(c.NodeUUID)
		}
	}
}

// set stores s and publishes it if it differs from the node's summary.
func (f *fleet) set(s Summary) {
	f.mu.RLock()
	old := f.nodes[s.UUID]
	f.mu.RUnlock()
	if old != nil && equalSummary(old.Summary, s) {
		return
	}
	b, err := json.Marshal(s)
	if err != nil {
		return // a Summary always encodes
	}
	it := &fleetItem{Summary: s, JSON: b}
	f.mu.Lock()
	f.nodes[s.UUID] = it
	f.mu.Unlock()
	f.hub.Publish(s.UUID, it)
}

func (f *fleet) remove(id string) {
	f.mu.Lock()
	_, ok := f.nodes[id]
	delete(f.nodes, id)
	f.mu.Unlock()
	if !ok {
		return
	}
	s := Summary{UUID: id, Deleted: true}
	b, _ := json.Marshal(s)
	f.hub.Publish(id, &fleetItem{Summary: s, JSON: b})
}

// snapshot returns the summaries (of the one node named by uuid when it
// is not empty), ordered by name then UUID.
func (f *fleet) snapshot(uuid string) []*fleetItem {
	f.mu.RLock()
	var out []*fleetItem
	if uuid != "" {
		if it, ok := f.nodes[uuid]; ok {
			out = append(out, it)
		}
	} else {
		out = make([]*fleetItem, 0, len(f.nodes))
		for _, it := range f.nodes {
			out = append(out, it)
		}
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Summary, out[j].Summary
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.UUID < b.UUID
	})
	return out
}

func equalSummary(a, b Summary) bool {
	pa, pb := a.Progress, b.Progress
	a.Progress, b.Progress = nil, nil
	if !a.ProvisionUpdatedAt.Equal(b.ProvisionUpdatedAt) {
		return false
	}
	a.ProvisionUpdatedAt, b.ProvisionUpdatedAt = time.Time{}, time.Time{}
	if a != b {
		return false
	}
	switch {
	case pa == nil || pb == nil:
		return pa == pb
	default:
		return *pa == *pb
	}
}
