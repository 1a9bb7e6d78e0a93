package jsoncol

import (
	"sync"

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
