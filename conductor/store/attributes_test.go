package store

import (
	"encoding/json"
	"math"
	"reflect"
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

// TestNodeAndPortClone checks that a clone shares nothing a change can
// reach: nested maps and slices of every JSON field and the attributes.
func TestNodeAndPortClone(t *testing.T) {
	auto := true
	n := &Node{UUID: "u", DriverInternalInfo: map[string]any{"steps": []any{map[string]any{"step": "a"}}},
		InstanceInfo: map[string]any{"k": "v"}, DeployStep: map[string]any{"step": "x"},
		NodeAttributes: NodeAttributes{AutomatedClean: &auto, Traits: []string{"CUSTOM_A"},
			Interfaces: map[string]string{"deploy": "direct"}}}
	c := n.Clone()
	c.DriverInternalInfo["steps"].([]any)[0].(map[string]any)["step"] = "changed"
	c.InstanceInfo["k"], c.DeployStep["step"] = "changed", "changed"
	*c.AutomatedClean, c.Traits[0], c.Interfaces["deploy"] = false, "changed", "changed"
	if n.DriverInternalInfo["steps"].([]any)[0].(map[string]any)["step"] != "a" || n.InstanceInfo["k"] != "v" ||
		n.DeployStep["step"] != "x" || !*n.AutomatedClean || n.Traits[0] != "CUSTOM_A" || n.Interfaces["deploy"] != "direct" {
		t.Fatalf("a change to the clone reached the node: %+v", n)
	}
	p := &Port{Address: "52:54:00:00:00:01", Extra: map[string]any{"a": []any{"b"}},
		LocalLinkConnection: map[string]any{"port_id": "p1"}, InternalInfo: map[string]any{"i": 1.0}}
	q := p.Clone()
	q.Extra["a"].([]any)[0], q.LocalLinkConnection["port_id"], q.InternalInfo["i"] = "changed", "changed", 2.0
	if p.Extra["a"].([]any)[0] != "b" || p.LocalLinkConnection["port_id"] != "p1" || p.InternalInfo["i"] != 1.0 {
		t.Fatalf("a change to the clone reached the port: %+v", p)
	}
	if (*Node)(nil).Clone() != nil || (*Port)(nil).Clone() != nil {
		t.Fatal("a nil clone is not nil")
	}
}

// attributeSample sets field f to a non-zero value, one of two (alt),
// by its type; ok is false for a type it does not know.
func attributeSample(f reflect.Value, alt bool) bool {
	word := "x"
	if alt {
		word = "y"
	}
	switch v := f.Addr().Interface().(type) {
	case **bool:
		b := !alt
		*v = &b
	case *bool:
		*v = !alt
	case *string:
		*v = word
	case *[]string:
		*v = []string{word}
	case *map[string]string:
		*v = map[string]string{"k": word}
	case *map[string]any:
		*v = map[string]any{"k": []any{word, 1.0}}
	default:
		return false
	}
	return true
}

// TestNodeAttributesSameSeesEveryField sets every field of NodeAttributes
// (by reflection, so that a field added later is covered or the test
// fails) and checks that Same sees a change of each, and agrees with the
// encoded text.
func TestNodeAttributesSameSeesEveryField(t *testing.T) {
	var full NodeAttributes
	fv := reflect.ValueOf(&full).Elem()
	for i := range fv.NumField() {
		if !attributeSample(fv.Field(i), false) {
			t.Fatalf("field %s (%s): no sample; teach attributeSample and Same", fv.Type().Field(i).Name, fv.Field(i).Type())
		}
	}
	text := func(a NodeAttributes) string {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if !full.Same(full.Clone()) || !(NodeAttributes{}).Same(NodeAttributes{}) {
		t.Fatal("attributes differ from their copy")
	}
	if !(NodeAttributes{NetworkData: map[string]any{}, Traits: []string{}}).Same(NodeAttributes{}) {
		t.Fatal("empty and nil fields, both omitted, differ")
	}
	for i := range fv.NumField() {
		name := fv.Type().Field(i).Name
		for _, zero := range []bool{true, false} {
			changed := full.Clone()
			cv := reflect.ValueOf(&changed).Elem().Field(i)
			if zero {
				cv.SetZero()
			} else {
				attributeSample(cv, true)
			}
			if full.Same(changed) || changed.Same(full) {
				t.Errorf("field %s changed, Same still true", name)
			}
			if text(full) == text(changed) {
				t.Errorf("field %s changed, the text did not", name)
			}
		}
	}
}
