package cluster

import (
	"fmt"
	"testing"
)

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	}
	return out
}

func TestChooseIsDeterministicAndOrderFree(t *testing.T) {
	a := []string{"c1", "c2", "c3"}
	b := []string{"c3", "c1", "c2"}
	for _, n := range nodeNames(200) {
		if Choose(a, n) != Choose(b, n) {
			t.Fatalf("node %s: choice depends on the order of the conductors", n)
		}
	}
	if got := Choose(nil, "n"); got != "" {
		t.Fatalf("Choose(nil) = %q, want \"\"", got)
	}
	if got := Choose([]string{"only"}, "n"); got != "only" {
		t.Fatalf("Choose(one) = %q", got)
	}
}

func TestChooseSpreadsNodes(t *testing.T) {
	conductors := []string{"conductor-a", "conductor-b", "conductor-c"}
	nodes := nodeNames(3000)
	count := map[string]int{}
	for _, n := range nodes {
		count[Choose(conductors, n)]++
	}
	for _, c := range conductors {
		// A fair split is 1000 each; 850 is more than 5 standard
		// deviations away.
		if count[c] < 850 || count[c] > 1150 {
			t.Fatalf("unbalanced split over 3000 nodes: %v", count)
		}
	}
}

// TestChooseMovesOnlyWhatItMust checks rendezvous hashing's point: when a
// conductor leaves, only its nodes move; when one joins, nodes move only
// to it.
func TestChooseMovesOnlyWhatItMust(t *testing.T) {
	three := []string{"a", "b", "c"}
	two := []string{"a", "c"}
	four := []string{"a", "b", "c", "d"}
	moved := 0
	for _, n := range nodeNames(2000) {
		before := Choose(three, n)
		if after := Choose(two, n); before != "b" && after != before {
			t.Fatalf("node %s moved from %s to %s when b left", n, before, after)
		}
		after := Choose(four, n)
		if after != before {
			if after != "d" {
				t.Fatalf("node %s moved from %s to %s when d joined", n, before, after)
			}
			moved++
		}
	}
	if moved < 350 || moved > 650 {
		t.Fatalf("%d of 2000 nodes moved to the fourth conductor, want about 500", moved)
	}
}
