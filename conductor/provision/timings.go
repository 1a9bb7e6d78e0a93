package provision

import (
	"math"
	"time"

	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
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
// setTiming is the one place a duration is recorded.

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
