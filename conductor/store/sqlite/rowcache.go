package sqlite

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/internal/jsoncol"
)

// RowCacheBytes bounds the memory of the cache's decoded tier, as
// estimated by rowSize: at 1.6–2.3 KiB of column text per deploying node,
// the rows of 1,400–2,000 nodes, more than a boot storm has in flight at
// once (20,000 agents in 30 s: about 700 a second, each node's writes
// within a second or so). It is kept that small because a decoded row is
// a hundred-odd objects that every garbage collection marks; the text
// tier holds the rest, a decode away. In a 20,000-agent storm beside a
// CPU-bound process, 16 MiB instead of 128 left each collection fewer
// objects to mark (at 128 MiB the tier's were about half of them), and
// the request tails about halved (docs/conductor-scaling.md).
const RowCacheBytes = 16 << 20

// decodedFactor is how much more memory a JSON column takes decoded
// (maps, boxed values) than as text, roughly, for the columns a deploy
// writes; the row's text is kept as well.
const decodedFactor = 4

// RowTextBytes bounds the memory of the cache's second tier: the column
// text of rows the decoded tier dropped, packed in one string each. A
// node not touched for a while (most of a fleet before a boot storm) is
// then read from memory and decoded, not read from the file. Packed
// text is one pointer-free allocation per row, which the garbage
// collector does not scan. 192 MiB holds the rows of about 100,000
// deploying nodes.
const RowTextBytes = 192 << 20

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
// The decoded tier is bounded by the memory its rows take (rowSize):
// when full, rows are dropped in map order (that is, at random) until the
// new one fits. A row dropped to make room keeps its column text, packed,
// in a second tier bounded by maxText (dropped at random too), from which
// text returns it until the row is put again or dropped.
type rowCache struct {
	max, maxText int

	mu       sync.Mutex
	size     int
	rows     map[int64]cachedRow
	textSize int
	texts    map[int64]string // packed (packRow) values of rows not in rows
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

func newRowCache(max, maxText int) *rowCache {
	return &rowCache{max: max, maxText: maxText, rows: map[int64]cachedRow{}, texts: map[int64]string{}}
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
	for k, r := range c.rows {
		if c.size+size <= c.max {
			break
		}
		c.dropLocked(k)
		c.keepTextLocked(k, r.vals)
	}
	c.rows[id] = cachedRow{id: id, vals: vals, node: node, size: size}
	c.size += size
}

// text returns the values of row id (nodeColumns order but id) from the
// text tier, unpacked afresh, if held there. A packed row that does not
// unpack (which only a bug could make) is dropped and reported missing,
// so that the caller reads the file.
func (c *rowCache) text(id int64) ([]any, bool) {
	c.mu.Lock()
	packed, ok := c.texts[id]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	vals, err := unpackRow(packed)
	if err != nil {
		c.dropText(id, packed)
		return nil, false
	}
	return vals, true
}

// dropText forgets the text of row id if it is still packed.
func (c *rowCache) dropText(id int64, packed string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.texts[id]; ok && t == packed {
		c.textSize -= len(t)
		delete(c.texts, id)
	}
}

// keepTextLocked holds the text of row id, which the decoded tier just
// dropped, making room at random.
func (c *rowCache) keepTextLocked(id int64, vals []any) {
	packed, ok := packRow(vals)
	if !ok || len(packed) > c.maxText {
		return
	}
	for k, t := range c.texts {
		if c.textSize+len(packed) <= c.maxText {
			break
		}
		delete(c.texts, k)
		c.textSize -= len(t)
	}
	c.texts[id] = packed
	c.textSize += len(packed)
}

// drop forgets row id.
func (c *rowCache) drop(id int64) {
	c.mu.Lock()
	c.dropLocked(id)
	c.mu.Unlock()
}

// dropLocked forgets row id in both tiers.
func (c *rowCache) dropLocked(id int64) {
	if r, ok := c.rows[id]; ok {
		c.size -= r.size
		delete(c.rows, id)
	}
	if t, ok := c.texts[id]; ok {
		c.textSize -= len(t)
		delete(c.texts, id)
	}
}

// Tags of packRow's values.
const (
	packedNil    = 'n'
	packedString = 's'
	packedInt    = 'i'
)

// packRow packs a row's values (string, int or nil, as nodeValues and
// scanNodeScalars make them) into one string: their count, then per
// value a tag, and a string's length and bytes or an int's value
// (varints). It reports false for a value of another type.
func packRow(vals []any) (string, bool) {
	var num [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(num[:], uint64(len(vals)))
	for _, v := range vals {
		n++ // tag
		switch v := v.(type) {
		case string:
			n += binary.PutUvarint(num[:], uint64(len(v))) + len(v)
		case int:
			n += binary.PutVarint(num[:], int64(v))
		}
	}
	var b strings.Builder
	b.Grow(n) // exactly: the budget counts what is held
	b.Write(num[:binary.PutUvarint(num[:], uint64(len(vals)))])
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			b.WriteByte(packedNil)
		case string:
			b.WriteByte(packedString)
			b.Write(num[:binary.PutUvarint(num[:], uint64(len(v)))])
			b.WriteString(v)
		case int:
			b.WriteByte(packedInt)
			b.Write(num[:binary.PutVarint(num[:], int64(v))])
		default:
			return "", false
		}
	}
	return b.String(), true
}

// unpackRow is packRow's inverse: exactly as many values as were
// packed, or an error. Its strings are copies: one that outlives the
// row (a node's field, a memo's key) does not keep the packed row in
// memory.
func unpackRow(packed string) ([]any, error) {
	// Not a copy: b is only read and does not escape, so the compiler
	// converts without copying (go build -gcflags=-m says so).
	b := []byte(packed)
	count, k := binary.Uvarint(b)
	if k <= 0 || count > uint64(len(b)) {
		return nil, errors.New("packed row: bad value count")
	}
	vals := make([]any, 0, count)
	for i := k; i < len(b); {
		tag := b[i]
		i++
		switch tag {
		case packedNil:
			vals = append(vals, nil)
		case packedString:
			l, k := binary.Uvarint(b[i:])
			if k <= 0 || l > uint64(len(b)-i-k) {
				return nil, fmt.Errorf("packed row: bad string length at byte %d", i)
			}
			i += k
			vals = append(vals, string(b[i:i+int(l)]))
			i += int(l)
		case packedInt:
			v, k := binary.Varint(b[i:])
			if k <= 0 {
				return nil, fmt.Errorf("packed row: bad int at byte %d", i)
			}
			i += k
			vals = append(vals, int(v))
		default:
			return nil, fmt.Errorf("packed row: unknown tag %q at byte %d", tag, i-1)
		}
	}
	if uint64(len(vals)) != count {
		return nil, fmt.Errorf("packed row: %d values, %d packed", len(vals), count)
	}
	return vals, nil
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
