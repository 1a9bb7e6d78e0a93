package store

import (
	"math"
	"testing"
)

// TestSameJSONMap checks that maps are the same only when they hold the
// same decoded-JSON values, so that they encode alike.
func TestSameJSONMap(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"s": "x", "n": 1.5, "z": 0.0, "b": true, "null": nil,
			"list": []any{"a", 2.0, map[string]any{"k": []any{}}}, "obj": map[string]any{"deep": map[string]any{}}}
	}
	if !SameJSONMap(base(), base()) {
		t.Fatal("equal maps are not the same")
	}
	if !SameJSONMap(map[string]any{}, map[string]any{}) {
		t.Fatal("empty maps are not the same")
	}
	changes := map[string]func(m map[string]any){
		"string":         func(m map[string]any) { m["s"] = "y" },
		"number":         func(m map[string]any) { m["n"] = 2.5 },
		"negative zero":  func(m map[string]any) { m["z"] = math.Copysign(0, -1) },
		"int":            func(m map[string]any) { m["n"] = 1 },
		"bool":           func(m map[string]any) { m["b"] = false },
		"null to string": func(m map[string]any) { m["null"] = "" },
		"missing key":    func(m map[string]any) { delete(m, "s") },
		"extra key":      func(m map[string]any) { m["new"] = nil },
		"nested":         func(m map[string]any) { m["list"].([]any)[2].(map[string]any)["k"] = []any{1.0} },
		"array length":   func(m map[string]any) { m["list"] = []any{"a"} },
		"nil array":      func(m map[string]any) { m["obj"].(map[string]any)["deep"] = map[string]any{"a": []any(nil)} },
		"other kind":     func(m map[string]any) { m["list"] = []string{"a"} },
	}
	for name, change := range changes {
		m := base()
		change(m)
		if SameJSONMap(m, base()) || SameJSONMap(base(), m) {
			t.Errorf("%s: changed map is the same", name)
		}
	}
	if SameJSONMap(nil, map[string]any{}) || SameJSONMap(map[string]any{}, nil) {
		t.Error("a nil map is the same as an empty one")
	}
}
