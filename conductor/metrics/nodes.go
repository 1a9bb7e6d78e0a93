package metrics

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/store"
)

// NodeLister lists nodes (store.NodeReader).
type NodeLister interface {
	ListNodes(ctx context.Context, f store.NodeFilter) ([]*store.Node, error)
}

// NodeStates counts nodes by provision and power state, kept up to date
// from the change feed (changefeed.View) so that a scrape reads counts
// from memory and never the store. It is the collector of
// rivet_conductor_nodes.
type NodeStates struct {
	list NodeLister
	desc *prometheus.Desc

	mu     sync.Mutex
	loaded bool
	nodes  map[string]stateKey
	counts map[stateKey]int
}

type stateKey struct{ provision, power string }

// NewNodeStates returns the view; feed it with changefeed.Feed.Follow
// and register it with Registry().MustRegister.
func NewNodeStates(list NodeLister) *NodeStates {
	return &NodeStates{list: list,
		desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "nodes"),
			"Nodes by provision state and power state.", []string{"provision_state", "power_state"}, nil),
		nodes: map[string]stateKey{}, counts: map[stateKey]int{}}
}

var (
	_ changefeed.View      = (*NodeStates)(nil)
	_ prometheus.Collector = (*NodeStates)(nil)
)

// Load implements changefeed.View.
func (s *NodeStates) Load(ctx context.Context) error {
	nodes, err := s.list.ListNodes(ctx, store.NodeFilter{})
	if err != nil {
		return fmt.Errorf("node state metrics: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.nodes)
	clear(s.counts)
	for _, n := range nodes {
		s.setLocked(n.UUID, keyOf(n))
	}
	s.loaded = true
	return nil
}

// Apply implements changefeed.View.
func (s *NodeStates) Apply(items []changefeed.Item[changefeed.Change]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		c := it.Value
		switch c.Kind {
		case changefeed.NodeChanged:
			s.setLocked(c.NodeUUID, keyOf(c.Node))
		case changefeed.NodeDeleted:
			if old, ok := s.nodes[c.NodeUUID]; ok {
				s.dec(old)
				delete(s.nodes, c.NodeUUID)
			}
		}
	}
}

func (s *NodeStates) setLocked(uuid string, k stateKey) {
	if old, ok := s.nodes[uuid]; ok {
		if old == k {
			return
		}
		s.dec(old)
	}
	s.nodes[uuid] = k
	s.counts[k]++
}

func (s *NodeStates) dec(k stateKey) {
	if s.counts[k]--; s.counts[k] <= 0 {
		delete(s.counts, k)
	}
}

func keyOf(n *store.Node) stateKey {
	return stateKey{provision: string(n.ProvisionState), power: n.PowerState}
}

// Counts returns the number of nodes by (provision state, power state).
func (s *NodeStates) Counts() map[[2]string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[[2]string]int, len(s.counts))
	for k, v := range s.counts {
		out[[2]string{k.provision, k.power}] = v
	}
	return out
}

// Describe implements prometheus.Collector.
func (s *NodeStates) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

// Collect implements prometheus.Collector: nothing until the first Load.
func (s *NodeStates) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		return
	}
	for k, v := range s.counts {
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, float64(v), k.provision, k.power)
	}
}
