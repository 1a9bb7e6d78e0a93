package writebench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ChildEnv is the environment variable that carries a ChildSpec, as JSON,
// to the agent-side child program.
const ChildEnv = "RIVET_WRITEBENCH_CHILD"

// resultPrefix starts the line on which the child prints its ChildResult.
const resultPrefix = "WRITEBENCH-RESULT "

// Child modes: what a ChildSpec asks the child to do.
const (
	// ModeWrite writes the image at URL to Targets as the agent does.
	ModeWrite = "write"
	// ModeDownload reads URL to nowhere with the agent's HTTP source.
	ModeDownload = "download"
	// ModeHash hashes File with Algo as the agent hashes, and checks Sum.
	ModeHash = "hash"
	// ModeDecode decodes File (Format: gzip, zstd, xz or qcow2) to nowhere
	// with the agent's decoder.
	ModeDecode = "decode"
)

// ChildSpec is one job for the agent-side child program. The child runs in
// its own process so its CPU time and peak RSS are its own.
type ChildSpec struct {
	Mode string `json:"mode"`
	// URL is the image's URL (write, download).
	URL string `json:"url,omitempty"`
	// File is the image file (hash, decode).
	File string `json:"file,omitempty"`
	// Format is the container or disk format to decode.
	Format string `json:"format,omitempty"`
	// Algo and Sum are the checksum the image must have.
	Algo string `json:"algo,omitempty"`
	Sum  string `json:"sum,omitempty"`
	// Targets are the devices to write.
	Targets []string `json:"targets,omitempty"`
	// NoZeroSkip writes zero runs as data.
	NoZeroSkip bool `json:"no_zero_skip,omitempty"`
	// Buffers and BufferSize size the write's buffer pool; zero means
	// the writer's defaults (for trying other sizes by hand).
	Buffers    int `json:"buffers,omitempty"`
	BufferSize int `json:"buffer_size,omitempty"`
	// CPUProfile, when set, is where the child writes a CPU profile of
	// the job.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// HeapProfile, when set, is where the child writes a heap profile at
	// the job's end.
	HeapProfile string `json:"heap_profile,omitempty"`
	// Trace, when set, is where the child writes an execution trace of
	// the job (runtime/trace: where each goroutine ran, waited for a
	// channel, sat in a syscall or waited for a CPU).
	Trace string `json:"trace,omitempty"`
	// SampleMemory makes the child sample its memory while it works.
	SampleMemory bool `json:"sample_memory,omitempty"`
}

// ChildResult is what the child reports.
type ChildResult struct {
	// Seconds is the job's own time, start-up left out.
	Seconds float64 `json:"seconds"`
	// Bytes is what the job produced: raw image bytes written or
	// decoded, bytes downloaded or hashed.
	Bytes int64 `json:"bytes"`
	// Written and Skipped are the first disk's data bytes written and
	// zero bytes the device zeroed (write).
	Written int64 `json:"written,omitempty"`
	Skipped int64 `json:"skipped,omitempty"`
	// Status is the child's /proc/self/status memory lines at the end.
	Status ProcStatus `json:"status"`
	// Memory holds peaks sampled while working, when asked.
	Memory *MemoryPeaks `json:"memory,omitempty"`
	// Decode is the decode stage's own figures (write, decode), where
	// the job had one.
	Decode *DecodeFigures `json:"decode,omitempty"`
	// Err is the job's failure, "" on success.
	Err string `json:"err,omitempty"`
}

// DecodeFigures is how a decode stage spent its time, in seconds: its
// threads' CPU (0 where unmeasured), and its waits for input and for room
// for its output. Threads is how many threads ran it (xz: its workers and
// the thread handing them blocks); 0 or 1 is one.
type DecodeFigures struct {
	CPU        float64 `json:"cpu"`
	InputWait  float64 `json:"input_wait"`
	OutputWait float64 `json:"output_wait"`
	Threads    int     `json:"threads,omitempty"`
}

// ChildSpecFromEnv returns the spec the child was started with, and false
// when it was not started as a child.
func ChildSpecFromEnv() (ChildSpec, bool, error) {
	v := os.Getenv(ChildEnv)
	if v == "" {
		return ChildSpec{}, false, nil
	}
	var s ChildSpec
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return s, true, fmt.Errorf("%s: %w", ChildEnv, err)
	}
	return s, true, nil
}

// PrintChildResult writes the result line the parent looks for.
func PrintChildResult(w io.Writer, r ChildResult) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "\n%s%s\n", resultPrefix, b)
	return err
}

// ParseChildResult finds the result line in a child's output.
func ParseChildResult(out []byte) (ChildResult, error) {
	var r ChildResult
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, resultPrefix); ok {
			if err := json.Unmarshal([]byte(v), &r); err != nil {
				return r, fmt.Errorf("child result %q: %w", v, err)
			}
			return r, nil
		}
	}
	return r, fmt.Errorf("the child printed no result")
}

// ProcStatus holds the memory lines of /proc/<pid>/status, in KiB.
type ProcStatus struct {
	// HWM is the peak RSS (VmHWM).
	HWM int64 `json:"vm_hwm_kib"`
	// RSS is the resident set now (VmRSS), and its anonymous and
	// file-backed parts.
	RSS     int64 `json:"vm_rss_kib"`
	RSSAnon int64 `json:"rss_anon_kib"`
	RSSFile int64 `json:"rss_file_kib"`
}

// ParseProcStatus reads the memory lines of a /proc/<pid>/status.
func ParseProcStatus(r io.Reader) (ProcStatus, error) {
	var st ProcStatus
	fields := map[string]*int64{"VmHWM:": &st.HWM, "VmRSS:": &st.RSS, "RssAnon:": &st.RSSAnon, "RssFile:": &st.RSSFile}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		if p, ok := fields[f[0]]; ok {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return st, fmt.Errorf("status %s: %w", f[0], err)
			}
			*p = v
		}
	}
	return st, sc.Err()
}

// ReadProcStatus reads this process's /proc/self/status.
func ReadProcStatus() (ProcStatus, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return ProcStatus{}, err
	}
	defer f.Close()
	return ParseProcStatus(f)
}

// MemoryPeaks are the largest values sampled while the child worked, in
// bytes, from runtime/metrics and /proc/self/status.
type MemoryPeaks struct {
	// HeapObjects is live and not-yet-swept heap objects.
	HeapObjects uint64 `json:"heap_objects"`
	// HeapGoal is the GC's heap goal.
	HeapGoal uint64 `json:"heap_goal"`
	// GoTotal is all memory the Go runtime has mapped (minus released).
	GoTotal uint64 `json:"go_total"`
	// Stacks is goroutine stack memory.
	Stacks uint64 `json:"stacks"`
	// RSSAnon and RSSFile split the sampled RSS.
	RSSAnon uint64 `json:"rss_anon"`
	RSSFile uint64 `json:"rss_file"`
	// GCCycles is the number of garbage collections during the job.
	GCCycles uint64 `json:"gc_cycles"`
	// Samples is how many samples were taken.
	Samples int `json:"samples"`
}

var memoryMetrics = []string{
	"/memory/classes/heap/objects:bytes",
	"/gc/heap/goal:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/gc/cycles/total:gc-cycles",
}

// SampleMemory samples the process's memory every interval until ctx ends,
// then returns the peaks through the returned function, which waits for
// the sampler to stop.
func SampleMemory(ctx context.Context, interval time.Duration) func() MemoryPeaks {
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg    sync.WaitGroup
		peaks MemoryPeaks
	)
	samples := make([]metrics.Sample, len(memoryMetrics))
	for i, name := range memoryMetrics {
		samples[i].Name = name
	}
	read := func() (vals [6]uint64) {
		metrics.Read(samples)
		for i, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				vals[i] = s.Value.Uint64()
			}
		}
		return vals
	}
	gc0 := read()[5]
	take := func() {
		v := read()
		peaks.HeapObjects = max(peaks.HeapObjects, v[0])
		peaks.HeapGoal = max(peaks.HeapGoal, v[1])
		peaks.GoTotal = max(peaks.GoTotal, v[2]-v[3])
		peaks.Stacks = max(peaks.Stacks, v[4])
		peaks.GCCycles = v[5] - gc0
		if st, err := ReadProcStatus(); err == nil {
			peaks.RSSAnon = max(peaks.RSSAnon, uint64(st.RSSAnon)<<10)
			peaks.RSSFile = max(peaks.RSSFile, uint64(st.RSSFile)<<10)
		}
		peaks.Samples++
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			take()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() MemoryPeaks {
		cancel()
		wg.Wait()
		take()
		return peaks
	}
}
