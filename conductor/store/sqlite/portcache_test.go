package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
)

// TestPortCacheFollowsWrites checks that the port reads the cache answers
// (a node's ports, the node of a MAC) follow every kind of port write and
// a node's deletion, negative answers included.
func TestPortCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	a, b := &store.Node{Name: "a", Driver: "fake-hardware"}, &store.Node{Name: "b", Driver: "fake-hardware"}
	for _, n := range []*store.Node{a, b} {
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	const mac, other = "52:54:00:00:00:01", "52:54:00:00:00:02"
	lookup := func(m string) string {
		t.Helper()
		n, err := s.NodeByMACs(ctx, []string{m, "00:00:00:00:00:99"})
		if errors.Is(err, errdefs.ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return n.Name
	}
	addresses := func(n *store.Node) string {
		t.Helper()
		ports, err := s.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, p := range ports {
			out += p.Address + " "
		}
		return out
	}
	// Read twice each: the second answer comes from the cache.
	for range 2 {
		if got := lookup(mac); got != "" {
			t.Fatalf("MAC of no port found node %q", got)
		}
		if got := addresses(a); got != "" {
			t.Fatalf("node without ports lists %q", got)
		}
	}
	p := &store.Port{NodeID: a.ID, Address: mac, Extra: map[string]any{"k": "v"}}
	if err := s.CreatePort(ctx, p); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := lookup(mac); got != "a" {
			t.Fatalf("after the port was created, its MAC finds %q", got)
		}
		if got := addresses(a); got != mac+" " {
			t.Fatalf("after the port was created, node a lists %q", got)
		}
	}
	if _, ok := s.ports.nodePorts(a.ID); !ok {
		t.Fatal("node a's ports were read twice and are not cached")
	}
	// A reader's change stays its own.
	ports, _ := s.ListPorts(ctx, store.PortFilter{NodeID: a.ID})
	ports[0].Extra["k"] = "changed"
	ports[0].Address = "changed"
	if again, _ := s.ListPorts(ctx, store.PortFilter{NodeID: a.ID}); again[0].Extra["k"] != "v" || again[0].Address != mac {
		t.Fatalf("a reader's change leaked into the cache: %+v", again[0])
	}
	// Moved to node b under another address.
	p.NodeID, p.Address = b.ID, other
	if err := s.UpdatePort(ctx, p); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := lookup(mac); got != "" {
			t.Fatalf("after the port moved, its old MAC finds %q", got)
		}
		if got := lookup(other); got != "b" {
			t.Fatalf("after the port moved, its new MAC finds %q", got)
		}
		if got := addresses(a) + "|" + addresses(b); got != "|"+other+" " {
			t.Fatalf("after the port moved, nodes a|b list %q", got)
		}
	}
	if err := s.DeletePort(ctx, p.UUID); err != nil {
		t.Fatal(err)
	}
	if got := lookup(other) + addresses(b); got != "" {
		t.Fatalf("after the port was deleted: %q", got)
	}
	// Ports go with their node.
	q := &store.Port{NodeID: b.ID, Address: mac}
	if err := s.CreatePort(ctx, q); err != nil {
		t.Fatal(err)
	}
	if got := lookup(mac) + addresses(b); got != "b"+mac+" " {
		t.Fatalf("after a new port of b: %q", got)
	}
	if err := s.WithNodeLock(ctx, b.UUID, func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	if got := lookup(mac) + addresses(b); got != "" {
		t.Fatalf("after node b was deleted: %q", got)
	}
}

// TestPortCacheKeepsNoStaleAnswer checks that an answer read before a
// write emptied the cache is not kept, and that the cache stays within
// its bound.
func TestPortCacheKeepsNoStaleAnswer(t *testing.T) {
	c := newPortCache()
	gen := c.generation()
	c.invalidate() // a write committed while the answers were read
	c.putNodePorts(gen, 1, []*store.Port{{ID: 1, Address: "52:54:00:00:00:01"}})
	c.putMACNodes(gen, "52:54:00:00:00:01", []int64{1})
	if _, ok := c.nodePorts(1); ok {
		t.Fatal("a port list read before a write was kept")
	}
	if _, ok := c.macNodes("52:54:00:00:00:01"); ok {
		t.Fatal("a MAC answer read before a write was kept")
	}
	gen = c.generation()
	for i := range portCacheEntries + 10 {
		c.putMACNodes(gen, fmt.Sprintf("mac-%d", i), nil)
		if n := len(c.byMAC) + len(c.byNode); n > portCacheEntries {
			t.Fatalf("the cache holds %d answers, bound %d", n, portCacheEntries)
		}
	}
	if _, ok := c.macNodes(fmt.Sprintf("mac-%d", portCacheEntries+9)); !ok {
		t.Fatal("the last answer put is not held")
	}
}
