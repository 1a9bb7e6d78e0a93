package provision

import (
	"math"
	"time"

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
const (
	keyTimings    = "deploy_timings"
	keyTimestamps = "deploy_timestamps"
)

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
	markBootloader  = "bootloader_started"
	markPowerPhases = "power_started"
)

// markTime records an instant of the running deploy.
func markTime(n *store.Node, mark string, t time.Time) {
	ts, _ := n.DriverInternalInfo[keyTimestamps].(map[string]any)
	if ts == nil {
		ts = map[string]any{}
	}
	ts[mark] = t.UTC().Format(time.RFC3339Nano)
	n.SetInternal(keyTimestamps, ts)
}

// markedTime reads an instant recorded by markTime.
func markedTime(n *store.Node, mark string) (time.Time, bool) {
	ts, _ := n.DriverInternalInfo[keyTimestamps].(map[string]any)
	s, _ := ts[mark].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// setTiming records the duration of a phase, in seconds (millisecond
// precision).
func setTiming(n *store.Node, phase string, seconds float64) {
	if seconds < 0 || math.IsNaN(seconds) || math.IsInf(seconds, 0) {
		return
	}
	tm, _ := n.DriverInternalInfo[keyTimings].(map[string]any)
	if tm == nil {
		tm = map[string]any{}
	}
	tm[phase] = math.Round(seconds*1000) / 1000
	n.SetInternal(keyTimings, tm)
}

// timePhase records the time from mark to now as phase, if mark was set.
func timePhase(n *store.Node, phase, mark string, now time.Time) {
	if t, ok := markedTime(n, mark); ok {
		setTiming(n, phase, now.Sub(t).Seconds())
	}
}

// recordWriteTimings records download_write from the agent's final
// progress (its own start and end), else from the conductor's mark, and
// the agent's per-phase timings.
func recordWriteTimings(n *store.Node, p *wire.Progress, now time.Time) {
	if p != nil && p.StartedAt > 0 && p.UpdatedAt >= p.StartedAt {
		setTiming(n, PhaseDownloadWrite, p.UpdatedAt-p.StartedAt)
	} else {
		timePhase(n, PhaseDownloadWrite, markWrite, now)
	}
	if p != nil {
		for phase, s := range p.Timings {
			setTiming(n, "agent_"+phase, s)
		}
	}
}
