package jsoncol

import (
	"sync"
	"unicode/utf8"

	"github.com/rivetmetal/rivet/conductor/store"
)

// Memo remembers the maps decoded from JSON column texts, by text, so
// that a column read again unchanged — a node read at every step of a
// deploy, most of whose columns do not change between two reads — is
// copied instead of parsed. Entries are keyed by content, never by row,
// so they cannot go stale. The texts it holds are bounded by a byte
// budget; past it, arbitrary entries are dropped. A Memo is safe for
// concurrent use.
type Memo struct {
	budget int

	mu    sync.Mutex
	bytes int
	m     map[string]map[string]any
}

// NewMemo returns a Memo that holds at most budget bytes of column text.
func NewMemo(budget int) *Memo {
	return &Memo{budget: budget, m: map[string]map[string]any{}}
}

// Decode is the package's Decode of one column's text, from the memo
// when it holds that text: the map returned is the caller's own either
// way.
func (c *Memo) Decode(raw string, dst *map[string]any) error {
	if c == nil || len(raw) < minMemo {
		return Decode(raw, dst)
	}
	c.mu.Lock()
	m, ok := c.m[raw]
	c.mu.Unlock()
	if ok {
		*dst = store.CloneJSONMap(m)
		return nil
	}
	if err := Decode(raw, dst); err != nil {
		return err
	}
	c.put(raw, store.CloneJSONMap(*dst))
	return nil
}

// DecodeAll is DecodeAll through the memo.
func (c *Memo) DecodeAll(raws []string, maps []*map[string]any) error {
	if c == nil || len(raws) != len(maps) {
		return DecodeAll(raws, maps)
	}
	for i, raw := range raws {
		if err := c.Decode(raw, maps[i]); err != nil {
			return err
		}
	}
	return nil
}

// Len is the number of column texts the memo holds.
func (c *Memo) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// minMemo is the shortest text worth remembering: shorter ones ("{}", a
// key or two) parse about as fast as they copy.
const minMemo = 64

func (c *Memo) put(raw string, m map[string]any) {
	if len(raw) > c.budget/16 {
		return // one huge column would push out everything else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[raw]; ok {
		return
	}
	for k := range c.m {
		if c.bytes+len(raw) <= c.budget {
			break
		}
		c.bytes -= len(k)
		delete(c.m, k)
	}
	c.m[raw] = m
	c.bytes += len(raw)
}

// CopyDecoded returns a deep copy of m, a JSON column's map, provided it
// holds only what decoding its encoding yields (maps, slices, strings that
// are valid UTF-8, float64, bools and nulls; no nil map or slice): the
// copy then equals the decoding of Encode(m). A map holding an int, a
// struct or anything else decodes to other values than it holds: ok is
// false. One walk both checks and copies.
func CopyDecoded(m map[string]any) (_ map[string]any, ok bool) { return copyDecodedMap(m) }

func copyDecodedMap(m map[string]any) (map[string]any, bool) {
	if m == nil {
		return nil, false
	}
	c := make(map[string]any, len(m))
	for k, e := range m {
		if !utf8.ValidString(k) {
			return nil, false
		}
		v, ok := copyDecoded(e)
		if !ok {
			return nil, false
		}
		c[k] = v
	}
	return c, true
}

func copyDecoded(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return copyDecodedMap(x)
	case []any:
		if x == nil {
			return nil, false
		}
		c := make([]any, len(x))
		for i, e := range x {
			v, ok := copyDecoded(e)
			if !ok {
				return nil, false
			}
			c[i] = v
		}
		return c, true
	case string:
		return x, utf8.ValidString(x)
	case float64, bool, nil:
		return x, true
	default:
		return nil, false
	}
}
