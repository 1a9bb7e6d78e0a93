package provision

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/metrics"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Deploy timings are kept on the node in driver_internal_info.deploy_timings,
// a map from phase to seconds, filled in as each phase ends:
//
//	boot_to_lookup   deploy ramdisk boot started -> the agent's lookup
//	download_write   the image download and write (the agent's own
//	                 measurement when it reports one)
//	bootloader       prepare_instance_boot: partition UUIDs, boot loader
//	power            tear_down_agent + boot_instance: power off, boot disk
//	total            deploy requested -> active
//
// plus "agent_<phase>" for every per-phase timing the agent reports in its
// final write progress. The instants the phases are measured from are kept
// in driver_internal_info.deploy_timestamps while the deploy runs.
// setTiming is the one place a duration is recorded; once its transaction
// committed, phaseMetrics reports it to the metrics (as it does the
// phases of cleanings).

// Timing phases.
const (
	PhaseBootToLookup  = "boot_to_lookup"
	PhaseDownloadWrite = "download_write"
	PhaseBootloader    = "bootloader"
	PhasePower         = "power"
	PhaseTotal         = "total"
)

// Timestamp marks.
const (
	markStarted     = "deploy_started"
	markRamdiskOn   = "ramdisk_boot_started"
	markWrite       = "write_started"
	markPowerPhases = "power_started"
)

// markTime records an instant of the running deploy.
func markTime(info *internalinfo.Info, mark string, t time.Time) {
	if info.Image.Timestamps == nil {
		info.Image.Timestamps = map[string]time.Time{}
	}
	info.Image.Timestamps[mark] = t.UTC()
}

// setTiming records the duration of a phase, in seconds (millisecond
// precision).
func setTiming(info *internalinfo.Info, phase string, seconds float64) {
	if seconds < 0 || math.IsNaN(seconds) || math.IsInf(seconds, 0) {
		return
	}
	if info.Image.Timings == nil {
		info.Image.Timings = map[string]float64{}
	}
	info.Image.Timings[phase] = math.Round(seconds*1000) / 1000
}

// timePhase records the time from mark to now as phase, if mark was set.
func timePhase(info *internalinfo.Info, phase, mark string, now time.Time) {
	if t, ok := info.Image.Timestamps[mark]; ok {
		setTiming(info, phase, now.Sub(t).Seconds())
	}
}

// recordWriteTimings records download_write from the agent's final
// progress (its own start and end), else from the conductor's mark, and
// the agent's per-phase timings.
func recordWriteTimings(info *internalinfo.Info, p *wire.Progress, now time.Time) {
	if p != nil && p.StartedAt > 0 && p.UpdatedAt >= p.StartedAt {
		setTiming(info, PhaseDownloadWrite, p.UpdatedAt-p.StartedAt)
	} else {
		timePhase(info, PhaseDownloadWrite, markWrite, now)
	}
	if p != nil {
		for phase, s := range p.Timings {
			setTiming(info, "agent_"+phase, s)
		}
	}
}

// cleanSteps are the clean steps of IPA's generic hardware manager, the
// clean-step names that become metric phases; any other step is
// "other_step".
var cleanSteps = map[string]bool{"erase_devices": true, "erase_devices_metadata": true,
	"erase_devices_express": true, "erase_pstore": true, "clean_uefi_nvram": true,
	"delete_configuration": true, "create_configuration": true, "burnin_cpu": true,
	"burnin_disk": true, "burnin_memory": true, "burnin_network": true, "burnin_gpu": true}

// Phases of cleanings in the metrics, besides the steps.
const cleanPhaseTotal = "total"

// phaseMarks is what a node transaction started from, for phaseMetrics.
type phaseMarks struct {
	state      statemachine.State
	timings    map[string]float64
	cleanIndex int
	finishing  bool
}

func markPhases(n *store.Node, info *internalinfo.Info) phaseMarks {
	m := phaseMarks{state: n.ProvisionState, timings: maps.Clone(info.Image.Timings), cleanIndex: -1,
		finishing: info.CleaningFinishing}
	if info.Clean.Index != nil {
		m.cleanIndex = *info.Clean.Index
	}
	return m
}

// phaseMetrics reports the phases of deploys and cleanings to the
// Recorder as they end, once the transaction that ended them committed:
// every deploy timing recorded (setTiming) and, for cleanings, each step
// and the whole (from the move into cleaning to available or
// manageable). The start of a cleaning and of its current step are kept
// in memory: a cleaning this conductor did not see start (a restart, a
// takeover) reports the steps it saw start, and no total.
type phaseMetrics struct {
	rec metrics.Recorder

	mu     sync.Mutex
	cleans map[string]*cleanClock
}

type cleanClock struct {
	started     time.Time
	step        string
	index       int
	stepStarted time.Time
}

func newPhaseMetrics(rec metrics.Recorder) *phaseMetrics {
	return &phaseMetrics{rec: rec, cleans: map[string]*cleanClock{}}
}

func isCleaning(s statemachine.State) bool {
	return s == statemachine.Cleaning || s == statemachine.CleanWait
}

// committed reports what a committed transaction of node n ended (b is
// what it started from).
func (p *phaseMetrics) committed(b phaseMarks, n *store.Node, info *internalinfo.Info, now time.Time) {
	for phase, s := range info.Image.Timings {
		if old, ok := b.timings[phase]; ok && old == s {
			continue
		}
		agent, isAgent := strings.CutPrefix(phase, "agent_")
		if _, known := metricDeployPhases[phase]; known || isAgent && slices.Contains(wire.AgentTimings, agent) {
			p.rec.PhaseDone(metrics.KindDeploy, phase, time.Duration(s*float64(time.Second)))
		}
	}
	if !isCleaning(b.state) && !isCleaning(n.ProvisionState) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.cleans[n.UUID]
	if !isCleaning(b.state) {
		c = &cleanClock{started: now, index: -1}
		p.cleans[n.UUID] = c
	}
	if c == nil {
		c = &cleanClock{index: -1}
		p.cleans[n.UUID] = c
	}
	index := -1
	if info.Clean.Index != nil {
		index = *info.Clean.Index
	}
	ended := !isCleaning(n.ProvisionState)
	if c.index >= 0 && (index != c.index || info.CleaningFinishing && !b.finishing || ended) {
		p.rec.PhaseDone(metrics.KindClean, c.step, now.Sub(c.stepStarted))
		c.index = -1
	}
	if step, ok := info.Clean.Current(); ok && !info.CleaningFinishing && !ended && index != b.cleanIndex {
		c.index, c.stepStarted, c.step = index, now, "other_step"
		if cleanSteps[step.Step] {
			c.step = step.Step
		}
	}
	if ended {
		if !c.started.IsZero() && (n.ProvisionState == statemachine.Available || n.ProvisionState == statemachine.Manageable) {
			p.rec.PhaseDone(metrics.KindClean, cleanPhaseTotal, now.Sub(c.started))
		}
		delete(p.cleans, n.UUID)
	}
}

// metricDeployPhases are the conductor's deploy phases.
var metricDeployPhases = map[string]struct{}{PhaseBootToLookup: {}, PhaseDownloadWrite: {}, PhaseBootloader: {},
	PhasePower: {}, PhaseTotal: {}}
