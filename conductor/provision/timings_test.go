package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// recorder is a metrics.Recorder that keeps what it was told.
type recorder struct {
	mu     sync.Mutex
	phases []string
	errors []string
}

func (r *recorder) PhaseDone(kind, phase string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phases = append(r.phases, fmt.Sprintf("%s/%s=%s", kind, phase, d))
}
func (r *recorder) AgentCallError(command string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, command)
}
func (r *recorder) ImageCacheLookup(bool) {}
func (r *recorder) ImageCacheSize(int64)  {}
func (r *recorder) LeaseTakeover()        {}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.phases
	r.phases = nil
	sort.Strings(out)
	return out
}

// TestPhaseMetrics feeds phaseMetrics the transactions of a deploy and of
// a cleaning and checks what reaches the Recorder: each timing once when
// it is recorded, only the agent phases known, each clean step and the
// cleaning's total, nothing for a failed cleaning's total.
func TestPhaseMetrics(t *testing.T) {
	rec := &recorder{}
	p := newPhaseMetrics(rec)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := &store.Node{UUID: "u1"}
	info := &internalinfo.Info{}
	tx := func(at time.Duration, f func()) {
		t.Helper()
		b := markPhases(n, info)
		f()
		p.committed(b, n, info, t0.Add(at))
	}
	check := func(want ...string) {
		t.Helper()
		sort.Strings(want)
		if got := rec.take(); !slices.Equal(got, want) {
			t.Fatalf("reported %q, want %q", got, want)
		}
	}

	n.ProvisionState = statemachine.Deploying
	tx(0, func() { setTiming(info, PhaseBootToLookup, 4.5) })
	check("deploy/boot_to_lookup=4.5s")
	tx(time.Second, func() {
		recordWriteTimings(info, &wire.Progress{StartedAt: 100, UpdatedAt: 112, Timings: map[string]float64{"download": 11, "verify": 1, "made_up": 3,
			wire.TimingDecodeInputWait: 0.5, wire.TimingDecodeOutputWait: 0.25, wire.TimingDecodeCPU: 9}}, t0)
	})
	check("deploy/download_write=12s", "deploy/agent_download=11s", "deploy/agent_verify=1s",
		"deploy/agent_decode_input_wait=500ms", "deploy/agent_decode_output_wait=250ms", "deploy/agent_decode_cpu=9s")
	if tm := info.Image.Timings; tm["agent_decode_cpu"] != 9 || tm["agent_decode_input_wait"] != 0.5 || tm["agent_made_up"] != 3 {
		t.Fatalf("deploy timings = %v", tm)
	}
	tx(2*time.Second, func() { info.Image.Progress = nil }) // nothing new
	check()
	tx(3*time.Second, func() {
		setTiming(info, PhaseTotal, 23.4)
		n.ProvisionState = statemachine.Active
	})
	check("deploy/total=23.4s")

	// A cleaning: two steps, the second not one of IPA's.
	plan := []wire.PlannedStep{{Step: "erase_devices_metadata", Interface: "deploy"}, {Step: "vendor_magic", Interface: "deploy"}}
	index := func(i int) { info.Clean.Plan, info.Clean.Index = plan, &i }
	tx(10*time.Second, func() { n.ProvisionState = statemachine.Cleaning })
	tx(12*time.Second, func() { n.ProvisionState = statemachine.CleanWait; index(0) })
	tx(15*time.Second, func() { n.ProvisionState = statemachine.Cleaning })
	tx(16*time.Second, func() { n.ProvisionState = statemachine.CleanWait; index(1) })
	check("clean/erase_devices_metadata=4s")
	tx(20*time.Second, func() { n.ProvisionState = statemachine.Cleaning; info.CleaningFinishing = true })
	check("clean/other_step=4s")
	tx(21*time.Second, func() {
		n.ProvisionState, info.CleaningFinishing, info.Clean = statemachine.Available, false, internalinfo.Steps{}
	})
	check("clean/total=11s")

	// A failed cleaning reports its step, not a total.
	tx(30*time.Second, func() { n.ProvisionState = statemachine.Cleaning })
	tx(31*time.Second, func() { n.ProvisionState = statemachine.CleanWait; index(0) })
	tx(33*time.Second, func() { n.ProvisionState = statemachine.CleanFailed })
	check("clean/erase_devices_metadata=2s")
	if len(p.cleans) != 0 {
		t.Fatalf("clocks left behind: %v", p.cleans)
	}
}

// failingAgent fails every call.
type failingAgent struct{ err error }

func (f failingAgent) Execute(context.Context, agentclient.Endpoint, string, any, bool) (*wire.CommandResult, error) {
	return nil, f.err
}
func (f failingAgent) Commands(context.Context, agentclient.Endpoint) (*wire.CommandList, error) {
	return nil, f.err
}
func (f failingAgent) Wait(context.Context, agentclient.Endpoint, string, time.Duration, int) (*wire.CommandResult, error) {
	return nil, f.err
}

// TestAgentCallErrorsCounted: a failed call counts under its command;
// "agent is busy" and a cancelled caller do not.
func TestAgentCallErrorsCounted(t *testing.T) {
	rec := &recorder{}
	n := &store.Node{UUID: "u1"}
	info := &internalinfo.Info{}
	info.Agent.URL = "https://127.0.0.1:9999"
	ctx := context.Background()
	for _, err := range []error{agentclient.ErrUnreachable, fmt.Errorf("wrapped: %w", agentclient.ErrAgentBusy)} {
		a := &agents{client: failingAgent{err}, cfg: &Config{Metrics: rec}}
		a.execute(ctx, n, info, "standby.get_partition_uuids", nil, true)
		a.commands(ctx, n, info)
		a.wait(ctx, n, info, "install_bootloader")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	(&agents{client: failingAgent{errors.New("boom")}, cfg: &Config{Metrics: rec}}).execute(cancelled, n, info, "log.collect_system_logs", nil, true)
	if want := []string{"standby.get_partition_uuids", "list_commands", "install_bootloader"}; !slices.Equal(rec.errors, want) {
		t.Fatalf("counted %q, want %q", rec.errors, want)
	}
}
