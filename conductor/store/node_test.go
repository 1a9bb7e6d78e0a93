package store

import "testing"

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
