package store

import (
	"reflect"
	"testing"
)

func TestNodeCleanStep(t *testing.T) {
	steps := []any{
		map[string]any{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99},
		map[string]any{"interface": "deploy", "step": "erase_devices", "priority": 10},
	}
	for _, tc := range []struct {
		index any
		want  string
	}{{nil, ""}, {0, "erase_devices_metadata"}, {float64(1), "erase_devices"}, {int64(1), "erase_devices"},
		{2, ""}, {-1, ""}, {1.5, ""}, {"1", ""}} {
		n := &Node{DriverInternalInfo: map[string]any{"clean_steps": steps}}
		n.SetInternal("clean_step_index", tc.index)
		if got, _ := n.CleanStep()["step"].(string); got != tc.want {
			t.Errorf("clean_step_index %v: step %q, want %q", tc.index, got, tc.want)
		}
	}
	if got := (&Node{}).CleanStep(); got == nil || len(got) != 0 {
		t.Errorf("a node that is not cleaning: %v, want {}", got)
	}
}

// TestCloneJSONMap: every map and slice shape the stores hold is copied,
// so that changing the copy at any depth leaves the original alone.
func TestCloneJSONMap(t *testing.T) {
	sample := func() map[string]any {
		return map[string]any{
			"obj":   map[string]any{"a": []any{1.0, map[string]any{"b": "c"}}},
			"strs":  []string{"x"},
			"objs":  []map[string]any{{"d": true}},
			"smap":  map[string]string{"e": "f"},
			"null":  nil,
			"num":   2.5,
			"plain": "s",
		}
	}
	orig := sample()
	c := CloneJSONMap(orig)
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("clone %v differs from %v", c, orig)
	}
	c["obj"].(map[string]any)["a"].([]any)[1].(map[string]any)["b"] = "changed"
	c["obj"].(map[string]any)["a"].([]any)[0] = 9.0
	c["strs"].([]string)[0] = "changed"
	c["objs"].([]map[string]any)[0]["d"] = false
	c["smap"].(map[string]string)["e"] = "changed"
	c["plain"] = "changed"
	if !reflect.DeepEqual(orig, sample()) {
		t.Fatalf("changing the clone changed the original: %v", orig)
	}
	if CloneJSONMap(nil) != nil {
		t.Fatal("nil map cloned to non-nil")
	}
}
