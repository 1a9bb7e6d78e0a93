package sqlite

import (
	"database/sql"
	"fmt"
	"sync"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/internal/jsoncol"
)

// RowCacheBytes bounds the memory the committed-row cache takes, as
// estimated by rowSize: at a few KiB of column text per node, the rows of
// several thousand nodes, those a boot storm has in flight at once.
const RowCacheBytes = 128 << 20

// decodedFactor is how much more memory a JSON column takes decoded
// (maps, boxed values) than as text, roughly, for the columns a deploy
// writes; the row's text is kept as well.
const decodedFactor = 4

// rowSize estimates the memory a cached row takes: its text, and the
// node decoded from it.
func rowSize(vals []any) int {
	size := 256
	for _, v := range vals {
		if s, ok := v.(string); ok {
			size += (1 + decodedFactor) * len(s)
		}
	}
	return size
}

// rowCache holds node rows as this store last committed them (or read
// them), by row ID, each with the node decoded from it, so that
// single-node reads and node transactions skip the SQL read and the
// decoding of the JSON columns: a read copies the decoded node. The store
// is the file's only writer and every write of a node row goes through
// it: a row is put after its write committed, under the node's lock, and
// dropped when the node is deleted or a write of it fails (one refused
// because the row changed behind the store's back among them). A reader
// therefore gets the last committed row, as a read from the file would.
//
// The cache is bounded by the memory its rows take (rowSize): when full,
// rows are dropped in map order (that is, at random) until the new one
// fits.
type rowCache struct {
	max int

	mu   sync.Mutex
	size int
	rows map[int64]cachedRow
}

// cachedRow is a node row: its ID, the values of the other columns, as
// scanNodeRaw returns and nodeValues makes them, and the node decoded
// from them, which is never handed out (readers get copies) nor changed.
type cachedRow struct {
	id   int64
	vals []any
	node *store.Node
	size int
}

func newRowCache(max int) *rowCache {
	return &rowCache{max: max, rows: map[int64]cachedRow{}}
}

// get returns row id, if held.
func (c *rowCache) get(id int64) (cachedRow, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.rows[id]
	return r, ok
}

// put holds row id with vals (nodeColumns order but id) and node, the
// node decoded from them; the caller changes neither afterwards.
func (c *rowCache) put(id int64, vals []any, node *store.Node) {
	size := rowSize(vals)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
	if size > c.max {
		return
	}
	for k := range c.rows {
		if c.size+size <= c.max {
			break
		}
		c.dropLocked(k)
	}
	c.rows[id] = cachedRow{id: id, vals: vals, node: node, size: size}
	c.size += size
}

// drop forgets row id.
func (c *rowCache) drop(id int64) {
	c.mu.Lock()
	c.dropLocked(id)
	c.mu.Unlock()
}

func (c *rowCache) dropLocked(id int64) {
	if r, ok := c.rows[id]; ok {
		c.size -= r.size
		delete(c.rows, id)
	}
}

// uuid is the row's node UUID.
func (r cachedRow) uuid() string { return r.vals[0].(string) }

// committedNode is the node a read of vals, the row a node transaction
// committed from n, decodes, made without parsing what it need not:
// a JSON column unchanged since prev (the cached row the transaction
// started from; nil when it read the database) is prev's decoded map,
// shared; a changed one is a copy of n's map, when that holds only what
// decoding its text yields (jsoncol.CopyDecoded), else the text decoded.
func committedNode(id int64, vals []any, n *store.Node, prev *cachedRow) (*store.Node, error) {
	c, _, err := scanNodeScalars(cachedRow{id: id, vals: vals})
	if err != nil {
		return nil, err
	}
	dst, from := jsoncol.NodeMaps(c), jsoncol.NodeMaps(n)
	var old []*map[string]any
	if prev != nil {
		old = jsoncol.NodeMaps(prev.node)
	}
	for i := range dst {
		col := firstMapColumn + i
		text := vals[col].(string)
		if prev != nil && prev.vals[col] == text {
			*dst[i] = *old[i]
			continue
		}
		if m, ok := jsoncol.CopyDecoded(*from[i]); ok {
			*dst[i] = m
			continue
		}
		if err := jsoncol.Decode(text, dst[i]); err != nil {
			return nil, fmt.Errorf("node %s: %w", c.UUID, err)
		}
	}
	if text := vals[attributesColumn].(string); prev != nil && prev.vals[attributesColumn] == text {
		c.NodeAttributes = prev.node.NodeAttributes
	} else if err := jsoncol.DecodeAttributes(text, &c.NodeAttributes); err != nil {
		return nil, fmt.Errorf("node %s: %w", c.UUID, err)
	}
	return c, nil
}

// Scan implements rowScanner, for scanNodeRaw: it assigns the row's ID
// and values to the destinations scanNodeRaw passes.
func (r cachedRow) Scan(dest ...any) error {
	if len(dest) != len(r.vals)+1 {
		return fmt.Errorf("cached node row: %d destinations for %d columns", len(dest), len(r.vals)+1)
	}
	id, ok := dest[0].(*int64)
	if !ok {
		return fmt.Errorf("cached node row: id into %T", dest[0])
	}
	*id = r.id
	for i, v := range r.vals {
		if err := assignColumn(dest[i+1], v); err != nil {
			return fmt.Errorf("cached node row: column %d: %w", i+1, err)
		}
	}
	return nil
}

// assignColumn stores a column value as nodeValues makes it (string, int
// or nil) into a destination of scanNodeRaw's.
func assignColumn(dest, v any) error {
	switch d := dest.(type) {
	case *string:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%T into a string", v)
		}
		*d = s
	case *sql.NullString:
		switch s := v.(type) {
		case nil:
			*d = sql.NullString{}
		case string:
			*d = sql.NullString{String: s, Valid: true}
		default:
			return fmt.Errorf("%T into a nullable string", v)
		}
	case *int:
		n, ok := v.(int)
		if !ok {
			return fmt.Errorf("%T into an int", v)
		}
		*d = n
	default:
		return fmt.Errorf("unsupported destination %T", dest)
	}
	return nil
}
