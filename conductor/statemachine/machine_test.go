package statemachine

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
)

func TestEveryStateIsStableOrHasStableTarget(t *testing.T) {
	for _, s := range States() {
		tgts, transient := targets[s]
		switch {
		case IsStable(s) && transient:
			t.Errorf("state %q is stable but has targets %v", s, tgts)
		case !IsStable(s) && (!transient || len(tgts) == 0):
			t.Errorf("transient state %q has no target", s)
		}
		for _, tgt := range tgts {
			if !IsStable(tgt) {
				t.Errorf("target %q of %q is not stable", tgt, s)
			}
		}
	}
	for _, tr := range transitions {
		if tr.Target != NoState && !slices.Contains(targets[tr.To], tr.Target) {
			t.Errorf("%s -%s-> %s sets target %q, which %q does not accept", tr.From, tr.Event, tr.To, tr.Target, tr.To)
		}
	}
	for s := range stable {
		if !slices.Contains(States(), s) {
			t.Errorf("stable state %q is not in the table", s)
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
	// contract.md §3.3, restrict_lookup = True, no fast-track; service
	// wait since Ironic 2023.2, and servicing, in which the ramdisk boots.
	want := []string{"clean wait", "cleaning", "deploying", "inspect wait",
		"inspecting", "rescue wait", "rescuing", "service wait", "servicing", "wait call-back"}
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
		{EvDeploy, Deploying, Active},
		{EvWait, DeployWait, Active},
		{EvAbort, DeployFailed, NoState},
		{EvRebuild, Deploying, Active},
		{EvDone, Active, NoState},
		{EvRebuild, Deploying, Active},
		{EvFail, DeployFailed, NoState},
		{EvDelete, Deleting, Available},
		{EvFail, Error, NoState},
		{EvDelete, Deleting, Available},
		{EvClean, Cleaning, Available},
		{EvWait, CleanWait, Available},
		{EvAbort, CleanFailed, NoState},
		{EvManage, Manageable, NoState},
		{EvInspect, Inspecting, Manageable},
		{EvWait, InspectWait, Manageable},
		{EvDone, Manageable, NoState},
		{EvAdopt, Adopting, Active},
		{EvDone, Active, NoState},
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

func TestManualCleanKeepsManageableTarget(t *testing.T) {
	steps := []struct {
		ev         Event
		to, target State
	}{
		{EvClean, Cleaning, Manageable},
		{EvWait, CleanWait, Manageable},
		{EvResume, Cleaning, Manageable},
		{EvWait, CleanWait, Manageable},
		{EvResume, Cleaning, Manageable},
		{EvManage, Manageable, NoState},
	}
	s, target := Manageable, NoState
	for _, st := range steps {
		m, err := Step(s, target, st.ev)
		if err != nil {
			t.Fatalf("%s -%s->: %v", s, st.ev, err)
		}
		if m.To != st.to || m.Target != st.target {
			t.Fatalf("%s -%s-> = %q (target %q), want %q (target %q)", s, st.ev, m.To, m.Target, st.to, st.target)
		}
		s, target = m.To, m.Target
	}
	// Automated cleaning heads for available.
	if m, _ := Step(Manageable, NoState, EvProvide); m.Target != Available {
		t.Fatalf("provide target = %q", m.Target)
	}
	if m, _ := Step(Cleaning, Available, EvWait); m.Target != Available {
		t.Fatalf("automated clean wait target = %q", m.Target)
	}
	// A target a state does not accept is replaced by its default.
	if m, _ := Step(Available, Manageable, EvDeploy); m.Target != Active {
		t.Fatalf("deploy target = %q", m.Target)
	}
}

func TestAbortOnlyFromWaitStates(t *testing.T) {
	var from []string
	for _, tr := range transitions {
		if tr.Event == EvAbort {
			from = append(from, string(tr.From))
			// Ironic's one exception: aborting a failed servicing
			// returns the node to active.
			if !Failure[tr.To] && (tr.From != ServiceFail || tr.To != Active) {
				t.Errorf("abort from %q leads to %q, not a failure state", tr.From, tr.To)
			}
		}
	}
	sort.Strings(from)
	if want := []string{"clean wait", "inspect wait", "service failed", "service wait", "wait call-back"}; !slices.Equal(from, want) {
		t.Errorf("abort allowed from %v, want %v", from, want)
	}
}

func TestFailureStatesAreStableAndReachable(t *testing.T) {
	for s := range Failure {
		if s == RescueFailed || s == UnrescueFail {
			continue // flows Rivet does not drive
		}
		if !IsStable(s) {
			t.Errorf("failure state %q is not stable", s)
		}
		if !slices.Contains(States(), s) {
			t.Errorf("failure state %q is not in the table", s)
		}
	}
}

func TestTransientStatesCanFinish(t *testing.T) {
	// Every transient state has a way out to a stable state.
	for _, s := range States() {
		if IsStable(s) {
			continue
		}
		seen := map[State]bool{s: true}
		queue := []State{s}
		ok := false
		for len(queue) > 0 && !ok {
			cur := queue[0]
			queue = queue[1:]
			for _, tr := range transitions {
				if tr.From != cur || seen[tr.To] {
					continue
				}
				if IsStable(tr.To) {
					ok = true
				}
				seen[tr.To] = true
				queue = append(queue, tr.To)
			}
		}
		if !ok {
			t.Errorf("transient state %q never reaches a stable state", s)
		}
	}
}

func TestDiagramInDocsMatchesTheTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "statemachine.dot"))
	if err != nil {
		t.Fatalf("docs/statemachine.dot: %v (run go generate ./conductor/statemachine)", err)
	}
	if string(b) != Dot() {
		t.Fatal("docs/statemachine.dot is out of date: run go generate ./conductor/statemachine")
	}
}

func TestFastTrackLookupMatchesContract(t *testing.T) {
	// contract §3.3: with fast-track, also enroll, manageable, available.
	var got []string
	for s := range FastTrackLookupAllowed {
		got = append(got, string(s))
	}
	sort.Strings(got)
	if want := []string{"available", "enroll", "manageable"}; !slices.Equal(got, want) {
		t.Fatalf("FastTrackLookupAllowed = %v, want %v", got, want)
	}
}
