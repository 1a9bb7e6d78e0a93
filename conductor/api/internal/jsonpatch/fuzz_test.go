package jsonpatch

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzApply: a patch either fails or does what each operation says: after
// an add or replace the value is at its path (at the index, or last for
// "-"), after a remove from an object the key is gone; the result is
// still JSON.
func FuzzApply(f *testing.F) {
	f.Add([]byte(`{"extra":{"a":1},"l":[1,2]}`), []byte(`[{"op":"add","path":"/extra/b","value":{"c":[true]}}]`))
	f.Add([]byte(`{"l":[1,2,3]}`), []byte(`[{"op":"add","path":"/l/-","value":4},{"op":"remove","path":"/l/0"},{"op":"replace","path":"/l/1","value":null}]`))
	f.Add([]byte(`{"a~b":{"c/d":1}}`), []byte(`[{"op":"remove","path":"/a~0b/c~1d"}]`))
	f.Add([]byte(`{}`), []byte(`[{"op":"add","path":"/x/y","value":1}]`))
	f.Add([]byte(`{"l":[]}`), []byte(`[{"op":"add","path":"/l/+0","value":1},{"op":"add","path":"/l/00","value":2}]`))
	f.Fuzz(func(t *testing.T, docJSON, patchJSON []byte) {
		var doc map[string]any
		var ops []Op
		if json.Unmarshal(docJSON, &doc) != nil || doc == nil || json.Unmarshal(patchJSON, &ops) != nil || len(ops) > 32 {
			return
		}
		cur := doc
		for _, op := range ops {
			before := clone(t, cur)
			out, err := Apply(clone(t, cur), []Op{op})
			if err != nil {
				// A failing operation fails the whole patch.
				if _, err := Apply(clone(t, doc), ops); err == nil {
					t.Fatalf("patch %s succeeded although %+v fails", patchJSON, op)
				}
				return
			}
			if _, err := json.Marshal(out); err != nil {
				t.Fatalf("result not JSON: %v", err)
			}
			toks, _ := Pointer(op.Path)
			parent, ok := get(before, toks[:len(toks)-1])
			if !ok {
				t.Fatalf("%+v succeeded on a missing parent of %s", op, op.Path)
			}
			last := toks[len(toks)-1]
			switch op.Op {
			case "add", "replace":
				var v any
				json.Unmarshal(op.Value, &v)
				at := toks
				if _, isList := parent.([]any); isList && last == "-" {
					l, _ := get(out, toks[:len(toks)-1])
					at = append(append([]string{}, toks[:len(toks)-1]...), strconv.Itoa(len(l.([]any))-1))
				}
				if got, ok := get(out, at); !ok || !reflect.DeepEqual(got, v) {
					t.Fatalf("%+v on %v: %v at the path, want %v", op, before, got, v)
				}
			case "remove":
				if _, isMap := parent.(map[string]any); isMap {
					if _, ok := get(out, toks); ok {
						t.Fatalf("%+v on %v: still there", op, before)
					}
				}
			}
			cur = out
		}
		if _, err := Apply(clone(t, doc), ops); err != nil {
			t.Fatalf("patch %s fails as a whole but not op by op: %v", patchJSON, err)
		}
	})
}

// FuzzPointer: tokens survive escaping and splitting again.
func FuzzPointer(f *testing.F) {
	for _, s := range []string{"/a/b", "/a~1b/~0c", "/", "//", "/~01", "/~2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		toks, err := Pointer(p)
		if err != nil || len(toks) == 0 {
			return
		}
		esc := make([]string, len(toks))
		for i, tok := range toks {
			esc[i] = strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
		}
		again, err := Pointer("/" + strings.Join(esc, "/"))
		if err != nil || !reflect.DeepEqual(again, toks) {
			t.Fatalf("%q: %q, then %q (%v)", p, toks, again, err)
		}
	})
}

func clone(t *testing.T, m map[string]any) map[string]any {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

// get is a reference reader of a pointer's tokens.
func get(node any, toks []string) (any, bool) {
	for _, tok := range toks {
		switch n := node.(type) {
		case map[string]any:
			v, ok := n[tok]
			if !ok {
				return nil, false
			}
			node = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			node = n[i]
		default:
			return nil, false
		}
	}
	return node, true
}
