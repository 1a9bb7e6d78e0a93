package jsoncol

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const doc = `{"deploy_steps":[{"interface":"deploy","step":"write_image","priority":80,"args":{"image_info":{"id":"x","urls":["http://127.0.0.1/a"]}}}],"agent_url":"http://127.0.0.1:9999","n":1.5,"ok":true,"none":null}`

// TestMemoDecodeIsACopy: a memoized column decodes to what Decode gives,
// and the caller's map is its own: changing it changes no later decode.
func TestMemoDecodeIsACopy(t *testing.T) {
	c := NewMemo(1 << 20)
	var want map[string]any
	if err := Decode(doc, &want); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		var got map[string]any
		if err := c.Decode(doc, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decode %d = %v, want %v", i, got, want)
		}
		// Vandalise the copy at every depth.
		got["agent_url"] = "changed"
		step := got["deploy_steps"].([]any)[0].(map[string]any)
		step["priority"] = 1.0
		step["args"].(map[string]any)["image_info"].(map[string]any)["urls"].([]any)[0] = "changed"
		got["deploy_steps"] = append(got["deploy_steps"].([]any), "extra")
	}
	if len(c.m) != 1 || c.bytes != len(doc) {
		t.Fatalf("memo holds %d entries, %d bytes", len(c.m), c.bytes)
	}
	var bad map[string]any
	if err := c.Decode(`{"broken": `+strings.Repeat(" ", 80), &bad); err == nil {
		t.Fatal("broken JSON decoded")
	}
}

// TestMemoBudget: the texts held never exceed the budget, a text over a
// sixteenth of it is not held, and short texts are not held at all.
func TestMemoBudget(t *testing.T) {
	const budget = 16 << 10
	c := NewMemo(budget)
	for i := range 200 {
		raw := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", 400+i))
		var m map[string]any
		if err := c.Decode(raw, &m); err != nil {
			t.Fatal(err)
		}
		if c.bytes > budget {
			t.Fatalf("after %d texts the memo holds %d bytes, budget %d", i+1, c.bytes, budget)
		}
	}
	sum := 0
	for k := range c.m {
		sum += len(k)
	}
	if sum != c.bytes || len(c.m) < 10 {
		t.Fatalf("memo: %d entries, %d bytes counted, %d held", len(c.m), c.bytes, sum)
	}
	big := fmt.Sprintf(`{"pad":%q}`, strings.Repeat("y", budget/16))
	var m map[string]any
	if err := c.Decode(big, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.m[big]; ok {
		t.Fatal("a text over a sixteenth of the budget was held")
	}
	if err := c.Decode(`{"a":1}`, &m); err != nil || m["a"] != 1.0 {
		t.Fatal(m, err)
	}
	if _, ok := c.m[`{"a":1}`]; ok {
		t.Fatal("a short text was held")
	}
	var nilMemo *Memo
	if err := nilMemo.Decode(doc, &m); err != nil || m["ok"] != true {
		t.Fatal("a nil memo must decode", m, err)
	}
}

// TestMemoConcurrent: concurrent decodes of the same texts, whose
// callers change the maps they get (run with -race).
func TestMemoConcurrent(t *testing.T) {
	c := NewMemo(8 << 10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				raw := fmt.Sprintf(`{"g":%d,"i":%d,"pad":%q}`, g%2, i%20, strings.Repeat("z", 100))
				var m map[string]any
				if err := c.Decode(raw, &m); err != nil {
					t.Error(err)
					return
				}
				if m["mutated"] != nil {
					t.Error("a decode returned another caller's change")
					return
				}
				m["mutated"] = true
			}
		})
	}
	wg.Wait()
	if c.bytes > 8<<10 {
		t.Fatalf("memo over budget: %d", c.bytes)
	}
}
