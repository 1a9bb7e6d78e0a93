package sqlite

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/internal/jsoncol"
)

// TestRowCacheReadsAsDatabase checks that a node served from the row
// cache equals the node read from the file after each of a series of
// transactions that set every kind of value: no name, maintenance on,
// nested JSON, values JSON does not decode to (an int, a []string, a nil
// map), nanosecond times, attributes, and columns left unchanged (whose
// decoded maps the cache shares between rows) next to changed ones.
func TestRowCacheReadsAsDatabase(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	changes := []func(n *store.Node){
		func(n *store.Node) {
			n.Maintenance, n.MaintenanceReason = true, "testing"
			n.DriverInternalInfo = map[string]any{"agent_url": "http://127.0.0.1:9999", "deploy_step_index": 2.0,
				"deploy_steps": []any{map[string]any{"step": "write_image", "priority": 80.0}}}
			n.Properties = map[string]any{"cpus": 4.0}
		},
		func(n *store.Node) {
			// Changed in place: the row before shares this map's
			// decoded original with the cache.
			n.DriverInternalInfo["deploy_step_index"] = 3.0
			n.DriverInternalInfo["deploy_steps"].([]any)[0].(map[string]any)["priority"] = 90.0
		},
		func(n *store.Node) {
			n.Extra = map[string]any{"count": 7, "list": []string{"a", "b"}}
			n.InstanceInfo = nil
			n.ProvisionUpdatedAt = time.Date(2026, 12, 6, 1, 2, 3, 456789123, time.FixedZone("x", 3600))
		},
		func(n *store.Node) {
			n.Traits = []string{}
			n.Interfaces = map[string]string{"deploy": "direct"}
			n.NetworkData = map[string]any{"links": []any{map[string]any{"id": "eth0", "mtu": 1500}}}
			n.Description = "attributes changed"
		},
		func(n *store.Node) { n.Maintenance = false }, // only scalars
	}
	for _, name := range []string{"", "named"} {
		n := &store.Node{Name: name, Driver: "fake-hardware",
			DriverInfo: map[string]any{"deploy_kernel": "k", "nested": map[string]any{"a": []any{1.5, "x", nil, true}}}}
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.rows.get(n.ID); ok {
			t.Fatal("a created node is cached before any transaction read it under its lock")
		}
		for i, change := range changes {
			var written []string
			err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
				change(tx.Node())
				written = columnTexts(t, tx.Node())
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := s.rows.get(n.ID); !ok {
				t.Fatalf("change %d: the committed row is not cached", i)
			}
			cached, err := s.GetNode(ctx, n.UUID)
			if err != nil {
				t.Fatal(err)
			}
			read, err := getNode(ctx, s.reader(), n.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cached, read) {
				t.Fatalf("change %d: cached node differs from the stored one:\n cached %+v\n stored %+v", i, cached, read)
			}
			if got := columnTexts(t, read); !reflect.DeepEqual(got, written) {
				t.Fatalf("change %d: stored JSON columns differ from those written:\n stored  %q\n written %q", i, got, written)
			}
			// A change to the node read reaches neither the cache nor
			// the next reader.
			cached.DriverInternalInfo["agent_url"] = "changed"
			cached.DriverInfo["nested"].(map[string]any)["a"].([]any)[0] = "changed"
			cached.Interfaces = map[string]string{"x": "y"}
			again, err := s.GetNode(ctx, n.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, read) {
				t.Fatalf("change %d: a reader's change leaked into the cache:\n %+v", i, again)
			}
		}
	}
}

// TestRowCacheFollowsWrites checks that transactions, one after the other,
// each see the last committed row, and that a deleted node leaves the
// cache.
func TestRowCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	n := &store.Node{Driver: "fake-hardware"}
	if err := s.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
			m := tx.Node()
			if got := m.Description; got != strings.Repeat("x", i) {
				t.Errorf("transaction %d read description %q", i, got)
			}
			m.Description += "x"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { return tx.DeleteNode(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.rows.get(n.ID); ok {
		t.Fatal("a deleted node is still cached")
	}
	if _, err := s.GetNode(ctx, n.UUID); err == nil {
		t.Fatal("a deleted node is still found")
	}
}

// TestRowCacheBudget checks that the cache keeps the text it holds within
// its budget and refuses a row larger than the budget.
func TestRowCacheBudget(t *testing.T) {
	c := newRowCache(5000)
	row := func(id int64, text int) []any {
		return []any{"uuid-" + string(rune('a'+id)), nil, strings.Repeat("j", text), 1}
	}
	for id := range int64(20) {
		c.put(id, row(id, 200), &store.Node{})
		if c.size > c.max {
			t.Fatalf("after %d rows the cache holds %d bytes, budget %d", id+1, c.size, c.max)
		}
		if _, ok := c.get(id); !ok {
			t.Fatalf("row %d, just put, is not held", id)
		}
	}
	if n := c.max / rowSize(row(0, 200)); len(c.rows) == 0 || len(c.rows) > n {
		t.Fatalf("the cache holds %d rows in a budget for %d", len(c.rows), n)
	}
	c.put(99, row(99, 1000), &store.Node{})
	if _, ok := c.get(99); ok {
		t.Fatal("a row larger than the budget was kept")
	}
	total := 0
	for _, r := range c.rows {
		total += r.size
	}
	if total != c.size {
		t.Fatalf("the cache counts %d bytes, its rows hold %d", c.size, total)
	}
}

// columnTexts are the encodings of the node's JSON columns.
func columnTexts(t *testing.T, n *store.Node) []string {
	t.Helper()
	var out []string
	for _, m := range jsoncol.NodeMaps(n) {
		text, err := jsoncol.Encode(*m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, text)
	}
	return out
}
