package statemachine

import (
	"sort"
	"testing"
)

func TestEveryStateIsStableOrHasStableTarget(t *testing.T) {
	for _, s := range States() {
		tgt, transient := targets[s]
		switch {
		case IsStable(s) && transient:
			t.Errorf("state %q is stable but has target %q", s, tgt)
		case !IsStable(s) && !transient:
			t.Errorf("transient state %q has no target", s)
		case transient && !IsStable(tgt):
			t.Errorf("target %q of %q is not stable", tgt, s)
		}
	}
}

func TestEveryStateReachableFromEnroll(t *testing.T) {
	reached := map[State]bool{Enroll: true}
	queue := []State{Enroll}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, tr := range transitions {
			if tr.From == s && !reached[tr.To] {
				reached[tr.To] = true
				queue = append(queue, tr.To)
			}
		}
	}
	for _, s := range States() {
		if !reached[s] {
			t.Errorf("state %q is not reachable from enroll", s)
		}
	}
}

func TestNoDuplicateEvent(t *testing.T) {
	seen := map[[2]string]bool{}
	for _, tr := range transitions {
		k := [2]string{string(tr.From), string(tr.Event)}
		if seen[k] {
			t.Errorf("duplicate event %q from %q", tr.Event, tr.From)
		}
		seen[k] = true
	}
}

func TestStateNamesFitIronicColumn(t *testing.T) {
	for _, s := range append(States(), Inspecting, InspectWait, InspectFail, Rescuing,
		RescueWait, Rescue, RescueFailed, Unrescuing, UnrescueFail, Servicing,
		ServiceWait, ServiceFail, ServiceHold, DeployHold, CleanHold, Adopting, AdoptFailed) {
		if len(s) > 15 {
			t.Errorf("state %q is longer than 15 characters", s)
		}
	}
}

func TestLookupAllowedMatchesContract(t *testing.T) {
	// contract.md §3.3, restrict_lookup = True, no fast-track.
	want := []string{"clean wait", "cleaning", "deploying", "inspect wait",
		"inspecting", "rescue wait", "rescuing", "wait call-back"}
	var got []string
	for s := range LookupAllowed {
		got = append(got, string(s))
	}
	sort.Strings(got)
	if len(got) != len(want) {
		t.Fatalf("LookupAllowed = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("LookupAllowed = %v, want %v", got, want)
		}
	}
}

func TestVerbsMapToTableEvents(t *testing.T) {
	events := map[Event]bool{}
	for _, tr := range transitions {
		events[tr.Event] = true
	}
	for verb, ev := range Verbs {
		if !events[ev] {
			t.Errorf("verb %q maps to event %q which no transition uses", verb, ev)
		}
	}
}

func TestDeployFlow(t *testing.T) {
	steps := []struct {
		ev         Event
		to, target State
	}{
		{EvManage, Verifying, Manageable},
		{EvDone, Manageable, NoState},
		{EvProvide, Cleaning, Available},
		{EvDone, Available, NoState},
		{EvDeploy, Deploying, Active},
		{EvWait, DeployWait, Active},
		{EvResume, Deploying, Active},
		{EvDone, Active, NoState},
		{EvDelete, Deleting, Available},
		{EvClean, Cleaning, Available},
		{EvDone, Available, NoState},
	}
	s := Enroll
	for _, st := range steps {
		m, err := Next(s, st.ev)
		if err != nil {
			t.Fatalf("%s -%s->: %v", s, st.ev, err)
		}
		if m.To != st.to || m.Target != st.target {
			t.Fatalf("%s -%s-> = %q (target %q), want %q (target %q)", s, st.ev, m.To, m.Target, st.to, st.target)
		}
		s = m.To
	}
	if _, err := Next(Active, EvDeploy); err == nil {
		t.Fatal("deploy from active must be refused")
	}
}
