package sqlite

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/rivetmetal/rivet/conductor/errdefs"
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
// its budget and refuses a row larger than the budget; that the rows it
// drops to make room keep their values in the text tier, within its own
// budget; and that putting or dropping a row takes it out of that tier.
func TestRowCacheBudget(t *testing.T) {
	c := newRowCache(5000, 2500)
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
	textTotal := 0
	for id, packed := range c.texts {
		textTotal += len(packed)
		if _, ok := c.rows[id]; ok {
			t.Fatalf("row %d held in both tiers", id)
		}
		vals, ok := c.text(id)
		if !ok || !reflect.DeepEqual(vals, row(id, 200)) {
			t.Fatalf("row %d from the text tier: %q, want %q", id, vals, row(id, 200))
		}
	}
	if len(c.texts) == 0 || textTotal != c.textSize || c.textSize > c.maxText {
		t.Fatalf("text tier: %d rows, %d bytes counted, %d held, budget %d", len(c.texts), c.textSize, textTotal, c.maxText)
	}
	var kept int64 = -1
	for id := range c.texts {
		kept = id
		break
	}
	c.put(kept, row(kept, 200), &store.Node{})
	if _, ok := c.texts[kept]; ok {
		t.Fatalf("row %d put again is still in the text tier", kept)
	}
	for id := range c.texts {
		c.drop(id)
		if _, ok := c.text(id); ok {
			t.Fatalf("row %d dropped is still held", id)
		}
	}
	if len(c.texts) != 0 || c.textSize != 0 {
		t.Fatalf("after dropping every row: %d in the text tier, %d bytes", len(c.texts), c.textSize)
	}
}

// TestPackRow: a row's values come back from their packed form as they
// went in (nil, ints of every size, strings empty, long and not UTF-8),
// as copies that do not keep the packed row in memory; a value of another
// type is refused, and a damaged packed row, cut at a value's end among
// others, is an error, not a wrong row.
func TestPackRow(t *testing.T) {
	vals := []any{"uuid", nil, "", 0, -1, 63, -64, 64, 1 << 40, -(1 << 62), math.MaxInt64, math.MinInt64, strings.Repeat("é", 300), "\xff\x00", 7}
	packed, ok := packRow(vals)
	if !ok {
		t.Fatal("not packed")
	}
	got, err := unpackRow(packed)
	if err != nil || !reflect.DeepEqual(got, vals) {
		t.Fatalf("unpacked %q, %v; want %q", got, err, vals)
	}
	start := uintptr(unsafe.Pointer(unsafe.StringData(packed)))
	for _, v := range got {
		if s, ok := v.(string); ok && s != "" {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p >= start && p < start+uintptr(len(packed)) {
				t.Fatalf("unpacked string %.10q shares the packed row's memory", s)
			}
		}
	}
	if _, ok := packRow([]any{"x", 1.5}); ok {
		t.Fatal("a float was packed")
	}
	for _, bad := range []string{
		"", // no count
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",                                   // a count past the text
		packed[:len(packed)-1],                                                       // cut inside the last value
		packed[:len(packed)-2],                                                       // cut after the last value but one
		"\x02n",                                                                      // fewer values than counted
		"\x01nn",                                                                     // more
		"\x01s\x05abc", "\x01s", "\x01s\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", // bad string lengths
		"\x01i", "\x01i\xff", "\x01i\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", // bad ints, the last past 64 bits
		"\x01x", // unknown tag
	} {
		if got, err := unpackRow(bad); err == nil {
			t.Errorf("%q unpacked to %q, want an error", bad, got)
		}
	}
}

// TestRowCacheTextTier: with a decoded tier of one row, the nodes it
// dropped are read from their kept text, without a read of the file (an
// outside change of the file is not seen, as for the decoded tier), and
// equal what the file held; a transaction starts from that text; a write
// refused as a conflict forgets the row, and the outside change is seen.
func TestRowCacheTextTier(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "rivet.db"))
	defer s.Close()
	var nodes []*store.Node
	for i := range 3 {
		n := &store.Node{Driver: "fake-hardware", Description: strings.Repeat("d", i),
			DriverInternalInfo: map[string]any{"deploy_steps": []any{map[string]any{"step": "write_image", "priority": 80.0}}}}
		if err := s.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := s.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error { tx.Node().Extra = map[string]any{"i": float64(i)}; return nil }); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Room for one such row in the decoded tier.
			s.rows.max = s.rows.size * 3 / 2
		}
		nodes = append(nodes, n)
	}
	if len(s.rows.rows) != 1 || len(s.rows.texts) != 2 {
		t.Fatalf("tiers hold %d decoded and %d text rows, want 1 and 2", len(s.rows.rows), len(s.rows.texts))
	}
	var inText *store.Node
	for _, n := range nodes {
		if _, ok := s.rows.texts[n.ID]; ok {
			inText = n
			break
		}
	}
	read, err := getNode(ctx, s.reader(), inText.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE nodes SET description = 'outside', updated_at = 'x' WHERE id = ?`, inText.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetNode(ctx, inText.UUID)
	if err != nil || !reflect.DeepEqual(got, read) {
		t.Fatalf("node from the text tier: %+v, %v\nwant %+v", got, err, read)
	}
	got.Extra["i"] = "changed by a reader"
	err = s.ViewNode(ctx, inText.UUID, func(n *store.Node) error {
		if !reflect.DeepEqual(n, read) {
			t.Errorf("viewed node from the text tier: %+v\nwant %+v", n, read)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.WithNodeLock(ctx, inText.UUID, func(tx store.Tx) error {
		if !reflect.DeepEqual(tx.Node(), read) {
			t.Errorf("transaction started from %+v\nwant %+v", tx.Node(), read)
		}
		tx.Node().Description = "mine"
		return nil
	})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("save over an outside write = %v, want a conflict", err)
	}
	if _, ok := s.rows.text(inText.ID); ok {
		t.Fatal("a row refused as a conflict is still held")
	}
	if got, _ := s.GetNode(ctx, inText.UUID); got.Description != "outside" {
		t.Fatalf("after the conflict: description %q, want the outside one", got.Description)
	}

	// A node deleted while its row is text leaves the cache.
	var other *store.Node
	for _, n := range nodes {
		if _, ok := s.rows.texts[n.ID]; ok {
			other = n
		}
	}
	if other == nil {
		t.Fatal("no other node held as text")
	}
	if err := s.WithNodeLock(ctx, other.UUID, func(tx store.Tx) error { return tx.DeleteNode(ctx) }); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.rows.text(other.ID); ok {
		t.Fatal("a deleted node's row is still held as text")
	}
	if _, err := s.GetNode(ctx, other.UUID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a deleted node read as %v", err)
	}

	// A packed row that does not unpack is dropped, and the node read
	// from the file.
	if _, ok := s.rows.rows[inText.ID]; ok {
		t.Fatal("a read put the node back in the decoded tier")
	}
	s.rows.texts[inText.ID] = "\x01x"
	s.rows.textSize += 2
	if got, err := s.GetNode(ctx, inText.UUID); err != nil || got.Description != "outside" {
		t.Fatalf("node under a damaged packed row: %+v, %v", got, err)
	}
	if _, ok := s.rows.texts[inText.ID]; ok || s.rows.textSize < 0 {
		t.Fatalf("a packed row that does not unpack is still held (text tier %d bytes)", s.rows.textSize)
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
