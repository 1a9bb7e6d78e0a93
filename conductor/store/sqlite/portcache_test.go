package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
)

// TestPortCacheFollowsWrites checks that the port reads the cache answers
// (a node's ports, the node of a MAC) follow every kind of port write and
// a node's deletion, negative answers included: with MACs answered one by
// one, and from the index of every MAC, loaded again at every look-up
// that misses.
func TestPortCacheFollowsWrites(t *testing.T) {
	for _, viaIndex := range []bool{false, true} {
		t.Run(fmt.Sprintf("index=%v", viaIndex), func(t *testing.T) { testPortCacheFollowsWrites(t, viaIndex) })
	}
}

func testPortCacheFollowsWrites(t *testing.T, viaIndex bool) {
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
		s.ports.mu.Lock()
		if viaIndex {
			s.ports.nextLoad = time.Time{} // a load at every miss
		} else {
			s.ports.nextLoad = time.Now().Add(time.Hour) // no load: each MAC asked alone
		}
		s.ports.mu.Unlock()
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

// TestMACIndexAnswersEveryMAC checks that the first MAC look-up loads the
// index of every port and that it answers the others, unknown MACs
// included, until a port write drops it.
func TestMACIndexAnswersEveryMAC(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	const nodes = 20
	mac := func(i int) string { return fmt.Sprintf("52:54:00:00:01:%02x", i) }
	for i := range nodes {
		n := &store.Node{Name: fmt.Sprintf("n%d", i), Driver: "fake-hardware"}
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := s.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: mac(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range nodes {
		n, err := s.NodeByMACs(ctx, []string{"00:00:00:00:00:99", mac(i)})
		if err != nil || n.Name != fmt.Sprintf("n%d", i) {
			t.Fatalf("MAC %s: %v, %v", mac(i), n, err)
		}
		s.ports.mu.Lock()
		index, cached := s.ports.index, len(s.ports.byMAC)
		s.ports.mu.Unlock()
		if len(index) != nodes || cached != 0 {
			t.Fatalf("after look-up %d: index of %d MACs, %d answered alone; want the index of all %d", i, len(index), cached, nodes)
		}
	}
	if _, err := s.NodeByMACs(ctx, []string{"00:00:00:00:00:98"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("an unknown MAC: %v", err)
	}
	if err := s.CreatePort(ctx, &store.Port{NodeID: 1, Address: "52:54:00:00:02:00"}); err != nil {
		t.Fatal(err)
	}
	s.ports.mu.Lock()
	dropped := s.ports.index == nil
	s.ports.mu.Unlock()
	if !dropped {
		t.Fatal("a port write left the MAC index in place")
	}
	if n, err := s.NodeByMACs(ctx, []string{"52:54:00:00:02:00"}); err != nil || n.ID != 1 {
		t.Fatalf("the new port's MAC: %v, %v", n, err)
	}
}

// TestMACIndexKeepsNoStaleIndex checks that an index read while a port
// write committed is not kept, that loads are spaced, and that an index
// past the bound is neither kept nor tried again soon.
func TestMACIndexKeepsNoStaleIndex(t *testing.T) {
	c := newPortCache()
	now := time.Now()
	gen, ok := c.startIndexLoad(now)
	if !ok {
		t.Fatal("no index, yet no load")
	}
	if _, ok := c.startIndexLoad(now); ok {
		t.Fatal("two loads at once")
	}
	c.invalidate() // a port write committed during the load
	c.finishIndexLoad(gen, map[string][]int64{"52:54:00:00:00:01": {1}}, false, now)
	if _, ok := c.macNodes("52:54:00:00:00:01"); ok {
		t.Fatal("an index read before a write was kept")
	}
	if _, ok := c.startIndexLoad(now.Add(macIndexInterval / 2)); ok {
		t.Fatal("a load within the interval of the last")
	}
	gen, ok = c.startIndexLoad(now.Add(macIndexInterval))
	if !ok {
		t.Fatal("no load after the interval")
	}
	c.finishIndexLoad(gen, nil, true, now)
	if _, ok := c.startIndexLoad(now.Add(macIndexBackoff - time.Second)); ok {
		t.Fatal("a load soon after one found too many ports")
	}
}

// TestMACIndexBound checks that a store with more ports than the index
// may hold answers MAC look-ups one by one.
func TestMACIndexBound(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	n := &store.Node{Name: "many", Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	// The ports written straight into the file, in one statement.
	if _, err := s.db.ExecContext(ctx, `WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM c LIMIT ?)
		INSERT INTO ports (uuid, node_id, address, created_at) SELECT 'p' || x, ?, printf('02:00:00:%02x:%02x:%02x', x >> 16, (x >> 8) & 255, x & 255), '' FROM c`,
		portCacheEntries+1, n.ID); err != nil {
		t.Fatal(err)
	}
	index, tooBig, err := loadMACIndex(ctx, s.reader())
	if err != nil || !tooBig || index != nil {
		t.Fatalf("loadMACIndex over the bound: %d entries, too big %v, %v", len(index), tooBig, err)
	}
	got, err := s.NodeByMACs(ctx, []string{"02:00:00:01:00:00"})
	if err != nil || got.ID != n.ID {
		t.Fatalf("look-up past the bound: %v, %v", got, err)
	}
	s.ports.mu.Lock()
	defer s.ports.mu.Unlock()
	if s.ports.index != nil || len(s.ports.byMAC) != 1 {
		t.Fatalf("past the bound: index of %d, %d MACs answered alone; want no index, one MAC", len(s.ports.index), len(s.ports.byMAC))
	}
}
