package jsoncol

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestCopyDecoded: a map is copied as decoded JSON only when decoding its
// text gives it back exactly, and the copy shares nothing that changes.
func TestCopyDecoded(t *testing.T) {
	for _, c := range []struct {
		name string
		m    map[string]any
		want bool
	}{
		{"decoded JSON", map[string]any{"a": []any{1.0, "x", true, nil, map[string]any{"b": "c"}}}, true},
		{"empty", map[string]any{}, true},
		{"nil", nil, false},
		{"an int", map[string]any{"a": 1}, false},
		{"a nested int", map[string]any{"a": []any{map[string]any{"b": int64(2)}}}, false},
		{"a struct", map[string]any{"a": struct{ X string }{"x"}}, false},
		{"a typed map", map[string]any{"a": map[string]string{"b": "c"}}, false},
		{"a nil map", map[string]any{"a": map[string]any(nil)}, false},
		{"invalid UTF-8", map[string]any{"a": "\xff"}, false},
		{"an invalid UTF-8 key", map[string]any{"\xff": "x"}, false},
	} {
		cp, got := CopyDecoded(c.m)
		if got != c.want {
			t.Errorf("%s: CopyDecoded ok = %v, want %v", c.name, got, c.want)
			continue
		}
		if !c.want {
			if cp != nil {
				t.Errorf("%s: a copy of a map that is not decoded JSON", c.name)
			}
			continue
		}
		if !reflect.DeepEqual(cp, c.m) {
			t.Errorf("%s: copy %#v, want %#v", c.name, cp, c.m)
		}
		if a, ok := cp["a"].([]any); ok {
			a[0] = "changed"
			if c.m["a"].([]any)[0] == "changed" {
				t.Errorf("%s: the copy shares its arrays", c.name)
			}
			a[4].(map[string]any)["b"] = "changed"
			if c.m["a"].([]any)[4].(map[string]any)["b"] == "changed" {
				t.Errorf("%s: the copy shares its objects", c.name)
			}
		}
		b, err := json.Marshal(c.m)
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]any
		if err := Decode(string(b), &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, c.m) {
			t.Errorf("%s: decoded %#v, want %#v", c.name, back, c.m)
		}
	}
}
