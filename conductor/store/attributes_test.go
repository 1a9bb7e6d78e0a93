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
