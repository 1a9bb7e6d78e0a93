package writebench

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report is a run's results.
type Report struct {
	Started  time.Time
	Duration time.Duration
	// GoVersion is the toolchain of the benchmark (and of its child).
	GoVersion string
	// Cores is what the stages' CPU is spread over.
	Cores int
	// Rounds is how many times every job ran.
	Rounds int
	// SizeMiB and RawBytes are the raw image's size; Image its file name.
	SizeMiB  int64
	RawBytes int64
	Image    string
	// Sizes are the variants' file sizes.
	Sizes map[Variant]int64
	// Subset lists the IDs of the cases run when they were not all
	// (Config.Cases); only the jobs they need ran.
	Subset []string
	// Missing lists optional tools not installed (their rows are absent).
	Missing []string
	// Loads is the machine's load, round by round.
	Loads []RoundLoad
	// Limits are the device limits and the stages alone.
	Limits []LimitRow
	// Device is the single-disk device limit (the fastest device job).
	Device LimitRow
	// Cases are the agent's rows.
	Cases []CaseRow
	// Peers are other tools doing a case's job.
	Peers []PeerRow
	// Memory holds the profiled runs' memory, when profiling was asked.
	Memory []MemoryRow
}

// RoundLoad is the machine's load during one round.
type RoundLoad struct {
	Round int
	// Before and After are /proc/loadavg at the round's ends.
	Before, After LoadAvg
	// Seconds is the round's length.
	Seconds float64
	// MachineBusy is the whole machine's mean CPU use over the round, in
	// cores (this benchmark's processes included).
	MachineBusy float64
	// Steal is the part of MachineBusy the hypervisor gave to other
	// guests while this machine's cores wanted to run, in cores.
	Steal float64
	// Others is the median over the round's jobs of the CPU use that was
	// neither the job's nor the server's, in cores.
	Others float64
}

// LimitRow is a device limit or a stage alone.
type LimitRow struct {
	Key   string
	Group string
	// InBytes is the bytes the job takes in (the served file for
	// download and hash stages and decoders, the raw image for devices).
	InBytes int64
	Summary
}

// CaseRow is an agent case against its bound.
type CaseRow struct {
	Case Case
	Summary
	// Stages are the stages the bound is made of.
	Stages []Stage
	Limit  Limit
	// Free is the same bound on the cores the other load left free
	// during the agent's runs (cores − the median "others"): what the
	// agent could do at that moment. Kernel threads serving the agent's
	// own writes count as others, so it is generous to the agent.
	Free Limit
	// RoundRatios is the case's × bound round by round: each round's
	// bound, from that round's runs of the stages (and of the device job
	// that is the device limit), over that round's run of the case. The
	// machine's speed drifts over a run; a round sets the case against
	// stages measured minutes, not the whole run, apart.
	RoundRatios []float64
}

// PeerRow is another tool doing the job of a case.
type PeerRow struct {
	Key string
	// Against is the agent case doing the same job.
	Against CaseRow
	Summary
}

// MemoryRow is a profiled run's memory.
type MemoryRow struct {
	Case Case
	Sample
	CPUProfile, HeapProfile string
}

// fill turns the samples into the report's rows.
func (b *bench) fill(rep *Report, jobs []job, samples map[string][]Sample) {
	byKey := map[string]LimitRow{}
	for _, j := range jobs {
		if j.group != groupDevice && j.group != groupStage {
			continue
		}
		row := LimitRow{Key: j.key, Group: j.group, InBytes: j.in, Summary: Summarize(samples[j.key])}
		if row.InBytes == 0 {
			row.InBytes = b.rawSize
		}
		rep.Limits = append(rep.Limits, row)
		byKey[j.key] = row
		if j.group == groupDevice && j.key != keyDD3 && (rep.Device.Runs == 0 || row.Seconds < rep.Device.Seconds) {
			rep.Device = row
		}
	}
	// stages are a case's stages; sample picks the figures of a job: its
	// median, or one round's run.
	stages := func(c Case, sample func(key string) Sample) []Stage {
		stage := func(name, key string) Stage {
			s := sample(key)
			return Stage{Name: name, Seconds: s.Seconds, CPU: s.CPU + s.ServerCPU}
		}
		st := []Stage{stage("download (Go, with the server's CPU)", downloadKey("Go", c.Variant)), stage(c.Algo+" (Go)", hashKey("Go", c.Algo, c.Variant))}
		if c.Variant != Raw {
			st = append(st, stage("decode "+string(c.Variant), decodeKey(c.Variant)))
		}
		if c.Disks == 1 {
			st = append(st, stage("device: "+rep.Device.Key, rep.Device.Key))
		} else {
			st = append(st, stage("devices: "+keyDD3, keyDD3))
		}
		return st
	}
	rows := map[string]CaseRow{}
	for _, c := range b.cases {
		st := stages(c, func(key string) Sample { return byKey[key].Sample })
		row := CaseRow{Case: c, Summary: Summarize(samples[agentKey(c)]), Stages: st, Limit: Bound(st, float64(rep.Cores))}
		row.Free = Bound(st, float64(rep.Cores)-row.Others)
		row.RoundRatios = roundRatios(c, rep.Cores, samples[agentKey(c)], stages, samples)
		rep.Cases = append(rep.Cases, row)
		rows[c.ID] = row
	}
	for key, against := range peerAgainst {
		if _, ok := rows[against]; !ok || len(samples[key]) == 0 {
			continue
		}
		rep.Peers = append(rep.Peers, PeerRow{Key: key, Against: rows[against], Summary: Summarize(samples[key])})
	}
	// A stable order: the jobs' order.
	order := map[string]int{}
	for i, j := range jobs {
		order[j.key] = i
	}
	for i := range rep.Peers {
		for k := i + 1; k < len(rep.Peers); k++ {
			if order[rep.Peers[k].Key] < order[rep.Peers[i].Key] {
				rep.Peers[i], rep.Peers[k] = rep.Peers[k], rep.Peers[i]
			}
		}
	}
}

// roundRatios sets each round's run of a case against the bound made of
// that round's runs of its stages. It is nil unless every stage has a run
// in every round the case has one (each job runs once per round).
func roundRatios(c Case, cores int, runs []Sample, stages func(Case, func(string) Sample) []Stage, samples map[string][]Sample) []float64 {
	var out []float64
	for r, s := range runs {
		complete := true
		st := stages(c, func(key string) Sample {
			if r >= len(samples[key]) {
				complete = false
				return Sample{}
			}
			return samples[key][r]
		})
		if !complete {
			return nil
		}
		out = append(out, ratio(Bound(st, float64(cores)).Seconds, s.Seconds))
	}
	return out
}

// mbps is megabytes (10^6) per second.
func mbps(bytes int64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(bytes) / 1e6 / secs
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// Markdown renders the report as the tables docs/benchmarks.md keeps.
func (r *Report) Markdown() string {
	var sb strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&sb, format+"\n", a...) }
	p("### Run of %s: %s, %d rounds, medians", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Image, r.Rounds)
	p("")
	var sizes []string
	for _, v := range Variants {
		sizes = append(sizes, fmt.Sprintf("%s %.0f MB", v, float64(r.Sizes[v])/1e6))
	}
	p("Image: %.2f GiB raw (%s). %d cores; %s; loop devices with direct I/O over files on the root filesystem; served over HTTP from 127.0.0.1 by the benchmark process. MB/s is raw image bytes (10^6) per second unless said. The run took %s.",
		float64(r.RawBytes)/(1<<30), strings.Join(sizes, ", "), r.Cores, r.GoVersion, r.Duration.Round(time.Second))
	if len(r.Subset) > 0 {
		p("Only some cases ran: %s; and only the jobs they need (the device jobs, their stages, their peers).", strings.Join(r.Subset, ", "))
	}
	if len(r.Missing) > 0 {
		p("Not installed, rows left out: %s.", strings.Join(r.Missing, ", "))
	}
	p("")
	p("Machine load (%d cores, shared with other users; \"others\" is CPU not used by the measured job or the image server, in cores, median over the round's jobs; it includes kernel threads such as the loop workers serving our writes):", r.Cores)
	p("")
	p("| round | loadavg before | loadavg after | machine busy (cores) | of which stolen by the hypervisor (cores) | others during jobs (cores) | seconds |")
	p("|---|---|---|---|---|---|---|")
	for _, l := range r.Loads {
		p("| %d | %s | %s | %.2f | %.3f | %.2f | %.0f |", l.Round, l.Before, l.After, l.MachineBusy, l.Steal, l.Others, l.Seconds)
	}
	if r.Rounds == 0 {
		r.memoryTable(p)
		return sb.String()
	}
	p("")
	p("Limits, each alone on the same bytes (device jobs write the raw image's size to the same loop device; stages read the served bytes; the device limit is the fastest device job: **%s**):", r.Device.Key)
	p("")
	p("| limit | s | MB/s of its input | MB/s of the raw image | CPU s | CPU s per GB of input | server CPU s | peak RSS MiB | others (cores) | s min–max |")
	p("|---|---|---|---|---|---|---|---|---|---|")
	for _, l := range r.Limits {
		perGB := 0.0
		if l.InBytes > 0 {
			perGB = l.CPU / (float64(l.InBytes) / 1e9)
		}
		p("| %s | %.2f | %.0f | %.0f | %.2f | %.2f | %.2f | %.0f | %.2f | %.2f–%.2f |", cell(l.Key), l.Seconds, mbps(l.InBytes, l.Seconds), mbps(r.RawBytes, l.Seconds),
			l.CPU, perGB, l.ServerCPU, mib(l.PeakRSSKiB), l.Others, l.MinSeconds, l.MaxSeconds)
	}
	p("")
	p("The agent against its bound (bound = the longer of its slowest stage alone and the CPU all its stages need, server included, spread over %d cores; × bound = agent MB/s ÷ bound MB/s; a zero-skipping case can beat a bound whose device stage writes every byte):", r.Cores)
	p("")
	p("| case | agent MB/s | bound MB/s | bound is | × bound | × bound round by round: median (min–max) | s | CPU s | peak RSS MiB | others (cores) | MB/s min–max | bound at the free cores | × that |")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range r.Cases {
		p("| %s | %.0f | %.0f | %s | %.2f | %s | %.2f | %.2f | %.0f | %.2f | %.0f–%.0f | %.0f MB/s: %s | %.2f |", cell(c.Case.Name), mbps(r.RawBytes, c.Seconds), mbps(r.RawBytes, c.Limit.Seconds), cell(c.Limit.String()),
			ratio(c.Limit.Seconds, c.Seconds), spread(c.RoundRatios), c.Seconds, c.CPU, mib(c.PeakRSSKiB), c.Others, mbps(r.RawBytes, c.MaxSeconds), mbps(r.RawBytes, c.MinSeconds),
			mbps(r.RawBytes, c.Free.Seconds), cell(c.Free.String()), ratio(c.Free.Seconds, c.Seconds))
	}
	p("")
	p("Stages of each bound (seconds alone, CPU seconds):")
	p("")
	for _, c := range r.Cases {
		p("- %s: %s", c.Case.Name, Detail(c.Limit.stagesOf(c.Stages)))
	}
	r.decoderTable(p)
	r.fanOutTable(p)
	if len(r.Peers) > 0 {
		p("")
		p("Peers doing a case's job (× bound against that case's bound; a peer that does not hash has less work than the agent; dd writes the zero runs the agent skips, except against raw with zero runs written):")
		p("")
		p("| peer | MB/s | against | × bound | agent ÷ peer (speed) | s | CPU s | peak RSS MiB | others (cores) |")
		p("|---|---|---|---|---|---|---|---|---|")
		for _, pr := range r.Peers {
			p("| %s | %.0f | %s | %.2f | %.2f | %.2f | %.2f | %.0f | %.2f |", cell(pr.Key), mbps(r.RawBytes, pr.Seconds), cell(pr.Against.Case.Name),
				pr.Against.Limit.Seconds/pr.Seconds, ratio(pr.Seconds, pr.Against.Seconds), pr.Seconds, pr.CPU, mib(pr.PeakRSSKiB), pr.Others)
		}
	}
	r.memoryTable(p)
	return sb.String()
}

// decoderTable sets each decoding case's decode stage inside the write
// against the same decoder alone: its thread's CPU in both, and what the
// write's stage waited for. What is left of the write's time (neither
// running by that CPU nor waiting, run by run: Summary.DecodeRest) is the
// stage kept from its core, and the write's start and end. Left out when
// no case reported the figures.
func (r *Report) decoderTable(p func(string, ...any)) {
	alone := map[string]*DecodeFigures{}
	for _, l := range r.Limits {
		alone[l.Key] = l.Decode
	}
	header := false
	for _, c := range r.Cases {
		d, a := c.Decode, alone[decodeKey(c.Case.Variant)]
		if d == nil || c.Case.Disks != 1 {
			continue
		}
		if !header {
			header = true
			p("")
			p("The decode stage inside the write (medians, seconds; CPU is the stage's own threads, user + system, \"–\" where the stage has no thread of its own; threads: how many ran it, where more than one (xz: a worker per core and the thread handing them blocks), whose waits and CPU overlap, so nothing is left to call neither; the alone figure is the decode limit's run):")
			p("")
			p("| case | write s | stage CPU in the write | stage CPU alone | in the write ÷ alone | waited for input | waited for the disks | neither running nor waiting |")
			p("|---|---|---|---|---|---|---|---|")
		}
		cpu, cpuAlone, grew, rest := "–", "–", "–", "–"
		if c.DecodeRest != nil {
			rest = fmt.Sprintf("%.2f", *c.DecodeRest)
		}
		if d.CPU > 0 {
			cpu = fmt.Sprintf("%.2f", d.CPU)
			if a != nil && a.CPU > 0 {
				cpuAlone, grew = fmt.Sprintf("%.2f", a.CPU), fmt.Sprintf("%.2f", d.CPU/a.CPU)
			}
		}
		name := cell(c.Case.Name)
		if d.Threads > 1 {
			name += fmt.Sprintf(" (%d threads)", d.Threads)
		}
		p("| %s | %.2f | %s | %s | %s | %.3f | %.3f | %s |", name, c.Seconds, cpu, cpuAlone, grew, d.InputWait, d.OutputWait, rest)
	}
}

// fanOutTable sets the fan-out cases against their single-disk cases, and
// three dd at once against one; it is left out when no fan-out case ran.
func (r *Report) fanOutTable(p func(string, ...any)) {
	var dd1, dd3 LimitRow
	for _, l := range r.Limits {
		switch l.Key {
		case keyDD:
			dd1 = l
		case keyDD3:
			dd3 = l
		}
	}
	if dd3.Runs == 0 {
		return
	}
	p("")
	p("Fan-out: three disks at once against one (time ratio; the goal is ≤ 1.2 × wherever three dd take ≤ 1.2 × one):")
	p("")
	p("| job | 1 disk s | 3 disks s | 3 ÷ 1 |")
	p("|---|---|---|---|")
	p("| %s | %.2f | %.2f | %.2f |", keyDD, dd1.Seconds, dd3.Seconds, ratio(dd3.Seconds, dd1.Seconds))
	for _, c := range r.Cases {
		if one, ok := c.Case.oneDisk(); ok {
			for _, o := range r.Cases {
				if o.Case.ID == one.ID {
					p("| agent: %s | %.2f | %.2f | %.2f |", one.Name, o.Seconds, c.Seconds, ratio(c.Seconds, o.Seconds))
				}
			}
		}
	}
}

// spread renders ratios as "0.98 (0.91–1.04)", or "–" for none.
func spread(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", Median(xs), slices.Min(xs), slices.Max(xs))
}

// memoryTable renders the profiled runs' memory.
func (r *Report) memoryTable(p func(string, ...any)) {
	if len(r.Memory) > 0 {
		p("")
		p("Memory of one extra, profiled run per case (MiB; peaks sampled every 5 ms; VmHWM from /proc/self/status at the end):")
		p("")
		p("| case | VmHWM | RssAnon peak | RssFile peak | Go mapped peak | heap objects peak | heap goal peak | stacks peak | GCs | s (profiled) |")
		p("|---|---|---|---|---|---|---|---|---|---|")
		for _, m := range r.Memory {
			if m.Child == nil || m.Child.Memory == nil {
				continue
			}
			mm := m.Child.Memory
			p("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %d | %.2f |", m.Case.Name, mib(m.Child.Status.HWM), mb(mm.RSSAnon), mb(mm.RSSFile),
				mb(mm.GoTotal), mb(mm.HeapObjects), mb(mm.HeapGoal), mb(mm.Stacks), mm.GCCycles, m.Seconds)
		}
	}
}

// cell escapes the pipes of a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// stagesOf returns the stages with the bounding one marked.
func (l Limit) stagesOf(stages []Stage) []Stage {
	out := make([]Stage, len(stages))
	for i, s := range stages {
		if !l.ByCPU && s.Name == l.Stage.Name {
			s.Name = "**" + s.Name + "**"
		}
		out[i] = s
	}
	return out
}
