package writebench

import (
	"slices"
	"time"
)

// Sample is one measured run of a job.
type Sample struct {
	// Seconds is the time the work took: the child's own figure when it
	// reports one (process start-up left out), else the wall time from
	// start to exit.
	Seconds float64
	// CPU is user + system CPU seconds of the job's processes and of the
	// children they waited for (getrusage), never of kernel threads such
	// as the loop driver's workers.
	CPU float64
	// ServerCPU is what this process (the HTTP server) used meanwhile.
	ServerCPU float64
	// Others is the machine's CPU use meanwhile that is neither the job's
	// nor the server's, in cores (other users' work and kernel threads,
	// among them the loop workers serving the job's writes).
	Others float64
	// PeakRSSKiB is the peak RSS (VmHWM) of the job's processes, summed
	// over them when there are several (a pipeline, three dd).
	PeakRSSKiB int64
	// Child is the agent-side child's report, for jobs run by it.
	Child *ChildResult
}

// Summary is the median of a job's samples, field by field, with the
// range of its times.
type Summary struct {
	Sample
	// Runs is the number of samples.
	Runs int
	// MinSeconds and MaxSeconds bound the samples' times.
	MinSeconds, MaxSeconds float64
	// Decode is the median of the decode stage's figures, field by
	// field, when every sample's child reported them.
	Decode *DecodeFigures
	// DecodeRest is the median over the samples of the time each one's
	// decode stage was neither running on its own thread's CPU nor
	// waiting (kept from its core, and the write's start and end): taken
	// run by run, not from the medians of its parts, which can be of
	// different runs. Nil unless every sample measured the stage's CPU on
	// one thread.
	DecodeRest *float64
}

// Median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none. xs is not changed.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Summarize takes the median of every field of the samples.
func Summarize(samples []Sample) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	field := func(f func(Sample) float64) float64 {
		xs := make([]float64, len(samples))
		for i, s := range samples {
			xs[i] = f(s)
		}
		return Median(xs)
	}
	secs := make([]float64, len(samples))
	for i, s := range samples {
		secs[i] = s.Seconds
	}
	sum := Summary{Runs: len(samples), MinSeconds: slices.Min(secs), MaxSeconds: slices.Max(secs)}
	sum.Seconds = Median(secs)
	sum.CPU = field(func(s Sample) float64 { return s.CPU })
	sum.ServerCPU = field(func(s Sample) float64 { return s.ServerCPU })
	sum.Others = field(func(s Sample) float64 { return s.Others })
	sum.PeakRSSKiB = int64(field(func(s Sample) float64 { return float64(s.PeakRSSKiB) }))
	// The child's report of the median run by time, for its byte counts.
	best := samples[0]
	for _, s := range samples {
		if abs(s.Seconds-sum.Seconds) < abs(best.Seconds-sum.Seconds) {
			best = s
		}
	}
	sum.Child = best.Child
	if !slices.ContainsFunc(samples, func(s Sample) bool { return s.Child == nil || s.Child.Decode == nil }) {
		sum.Decode = &DecodeFigures{
			CPU:        field(func(s Sample) float64 { return s.Child.Decode.CPU }),
			InputWait:  field(func(s Sample) float64 { return s.Child.Decode.InputWait }),
			OutputWait: field(func(s Sample) float64 { return s.Child.Decode.OutputWait }),
			Threads:    samples[0].Child.Decode.Threads,
		}
		// The rest is a single thread's: on several, CPU and waits
		// overlap in time.
		if !slices.ContainsFunc(samples, func(s Sample) bool { return s.Child.Decode.CPU <= 0 || s.Child.Decode.Threads > 1 }) {
			rest := field(func(s Sample) float64 {
				d := s.Child.Decode
				return s.Seconds - d.CPU - d.InputWait - d.OutputWait
			})
			sum.DecodeRest = &rest
		}
	}
	return sum
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// Rotate returns the jobs of round r (from 0) of rounds: the list rotated
// so that each round starts a different share of the way into it, and
// every job meets different neighbours and a different part of the load.
func Rotate[T any](jobs []T, r, rounds int) []T {
	if len(jobs) == 0 || rounds <= 0 {
		return slices.Clone(jobs)
	}
	k := (r % rounds) * len(jobs) / rounds
	return append(slices.Clone(jobs[k:]), jobs[:k]...)
}

func seconds(d time.Duration) float64 { return d.Seconds() }
