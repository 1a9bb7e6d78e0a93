package writebench

import (
	"bytes"
	"context"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := slices.Clone(tc.in)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("Median changed its input: %v", in)
		}
	}
}

func TestSummarize(t *testing.T) {
	a, b, c := &ChildResult{Bytes: 1}, &ChildResult{Bytes: 2}, &ChildResult{Bytes: 3}
	s := Summarize([]Sample{
		{Seconds: 3, CPU: 1, PeakRSSKiB: 10, Others: 0.5, Child: c},
		{Seconds: 1, CPU: 3, PeakRSSKiB: 30, Others: 0.1, Child: a},
		{Seconds: 2, CPU: 2, PeakRSSKiB: 20, Others: 1.5, Child: b},
	})
	if s.Runs != 3 || s.Seconds != 2 || s.CPU != 2 || s.PeakRSSKiB != 20 || s.Others != 0.5 || s.MinSeconds != 1 || s.MaxSeconds != 3 {
		t.Errorf("Summarize = %+v", s)
	}
	if s.Child != b {
		t.Errorf("the child report should be the median run's, got %+v", s.Child)
	}
	if z := Summarize(nil); z.Runs != 0 || z.Seconds != 0 {
		t.Errorf("Summarize(nil) = %+v", z)
	}
	if s.Decode != nil {
		t.Errorf("decode figures %+v from children that reported none", s.Decode)
	}
	// Decode figures: the median of each field, and only when every run
	// has them.
	a.Decode, b.Decode = &DecodeFigures{CPU: 1, InputWait: 0.3, OutputWait: 0.2}, &DecodeFigures{CPU: 3, InputWait: 0.1, OutputWait: 0.4}
	c.Decode = &DecodeFigures{CPU: 2, InputWait: 0.2, OutputWait: 0.6}
	three := []Sample{{Seconds: 3, Child: c}, {Seconds: 1, Child: a}, {Seconds: 2, Child: b}}
	if d := Summarize(three).Decode; d == nil || *d != (DecodeFigures{CPU: 2, InputWait: 0.2, OutputWait: 0.4}) {
		t.Errorf("decode medians %+v", d)
	}
	// The rest, run by run: 3−2−0.2−0.6 = 0.2, 1−1−0.3−0.2 = −0.5,
	// 2−3−0.1−0.4 = −1.5; the medians of the parts would give −0.6.
	if r := Summarize(three).DecodeRest; r == nil || math.Abs(*r+0.5) > 1e-9 {
		t.Errorf("decode rest %v, want the median of each run's, -0.5", r)
	}
	// A stage on several threads (xz's workers) has no rest: its
	// threads' CPU and waits overlap.
	for _, x := range []*ChildResult{a, b, c} {
		x.Decode.Threads = 3
	}
	if s := Summarize(three); s.DecodeRest != nil || s.Decode.Threads != 3 {
		t.Errorf("decode rest %v, threads %d, from a stage on three threads", s.DecodeRest, s.Decode.Threads)
	}
	for _, x := range []*ChildResult{a, b, c} {
		x.Decode.Threads = 1
	}
	a.Decode.CPU = 0 // a run with no thread of its own to measure
	if r := Summarize(three).DecodeRest; r != nil {
		t.Errorf("decode rest %v with a run whose CPU was not measured", *r)
	}
	if d := Summarize(append(three, Sample{Seconds: 4})).Decode; d != nil {
		t.Errorf("decode medians %+v with a run that reported none", d)
	}
}

func TestRotate(t *testing.T) {
	jobs := []string{"a", "b", "c", "d", "e", "f"}
	firsts := map[string]bool{}
	for r := range 3 {
		got := Rotate(jobs, r, 3)
		if len(got) != len(jobs) {
			t.Fatalf("round %d: %v", r, got)
		}
		s := slices.Clone(got)
		slices.Sort(s)
		if !slices.Equal(s, jobs) {
			t.Errorf("round %d is not a permutation: %v", r, got)
		}
		firsts[got[0]] = true
	}
	if len(firsts) != 3 {
		t.Errorf("three rounds should start at three places, started at %v", firsts)
	}
	if got := Rotate(jobs, 0, 3); !slices.Equal(got, jobs) {
		t.Errorf("round 0 = %v, want the list as it is", got)
	}
}

func TestBound(t *testing.T) {
	dl := Stage{Name: "download", Seconds: 0.6, CPU: 0.7}
	hash := Stage{Name: "sha256", Seconds: 1.0, CPU: 0.9}
	dev := Stage{Name: "device", Seconds: 0.5, CPU: 0.3}
	l := Bound([]Stage{dl, hash, dev}, 2)
	if l.ByCPU || l.Seconds != 1.0 || l.Stage.Name != "sha256" || l.String() != "sha256" {
		t.Errorf("slowest stage should bound: %+v %q", l, l)
	}
	if math.Abs(l.CPU-1.9) > 1e-9 {
		t.Errorf("CPU = %v, want 1.9", l.CPU)
	}
	// Half a core free: CPU 1.9 s / 0.5 = 3.8 s is longer than any stage.
	if l := Bound([]Stage{dl, hash, dev}, 0.5); !l.ByCPU || math.Abs(l.Seconds-3.8) > 1e-9 || l.String() != "CPU 1.90 s / 0.5 cores" {
		t.Errorf("CPU on half a core should bound: %+v %q", l, l)
	}
	// One core: the summed CPU (1.9 s) is longer than any stage.
	l = Bound([]Stage{dl, hash, dev}, 1)
	if !l.ByCPU || math.Abs(l.Seconds-1.9) > 1e-9 || l.String() != "CPU 1.90 s / 1 cores" {
		t.Errorf("CPU should bound: %+v %q", l, l)
	}
	if l := Bound(nil, 0); l.Seconds != 0 || l.Cores != 0.1 {
		t.Errorf("Bound(nil) = %+v", l)
	}
	d := Detail([]Stage{dl, hash})
	if d != "download 0.60 s (0.70 CPU) · sha256 1.00 s (0.90 CPU)" {
		t.Errorf("Detail = %q", d)
	}
}

func TestParseProcStat(t *testing.T) {
	in := "cpu  1000 50 300 8000 200 10 20 5 0 0\ncpu0 500 25 150 4000 100 5 10 2 0 0\nintr 1\n"
	got, err := ParseProcStat(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	// busy = user+nice+system+irq+softirq+steal; total adds idle+iowait.
	if math.Abs(got.Busy-13.85) > 1e-9 || math.Abs(got.Total-95.85) > 1e-9 || math.Abs(got.Steal-0.05) > 1e-9 {
		t.Errorf("ParseProcStat = %+v", got)
	}
	if _, err := ParseProcStat(strings.NewReader("intr 1\n")); err == nil {
		t.Error("no cpu line: want an error")
	}
	if _, err := ParseProcStat(strings.NewReader("cpu 1 x 3 4 5\n")); err == nil {
		t.Error("bad number: want an error")
	}
	if _, err := ReadCPUTimes(); err != nil {
		t.Errorf("this machine's /proc/stat: %v", err)
	}
}

func TestParseLoadAvg(t *testing.T) {
	l, err := ParseLoadAvg("6.96 7.01 6.06 13/175 21117\n")
	if err != nil || l != (LoadAvg{6.96, 7.01, 6.06}) || l.String() != "6.96 7.01 6.06" {
		t.Errorf("ParseLoadAvg = %v, %v", l, err)
	}
	if _, err := ParseLoadAvg("1.0"); err == nil {
		t.Error("short line: want an error")
	}
}

func TestParseProcStatus(t *testing.T) {
	in := "Name:\tx\nVmPeak:\t 9 kB\nVmHWM:\t   45400 kB\nVmRSS:\t   40000 kB\nRssAnon:\t   30000 kB\nRssFile:\t   10000 kB\n"
	st, err := ParseProcStatus(strings.NewReader(in))
	if err != nil || st != (ProcStatus{HWM: 45400, RSS: 40000, RSSAnon: 30000, RSSFile: 10000}) {
		t.Errorf("ParseProcStatus = %+v, %v", st, err)
	}
	if st, err := ReadProcStatus(); err != nil || st.HWM <= 0 {
		t.Errorf("this process: %+v, %v", st, err)
	}
}

func TestChildResultRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("=== RUN TestX\nnoise\n")
	want := ChildResult{Seconds: 1.5, Bytes: 42, Skipped: 7, Status: ProcStatus{HWM: 9}}
	if err := PrintChildResult(&buf, want); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("PASS\n")
	got, err := ParseChildResult(buf.Bytes())
	if err != nil || got.Seconds != want.Seconds || got.Bytes != want.Bytes || got.Skipped != want.Skipped || got.Status != want.Status {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	if _, err := ParseChildResult([]byte("PASS\n")); err == nil {
		t.Error("no result line: want an error")
	}
	t.Setenv(ChildEnv, `{"mode":"hash","file":"/x","algo":"sha512"}`)
	spec, ok, err := ChildSpecFromEnv()
	if !ok || err != nil || spec.Mode != ModeHash || spec.Algo != "sha512" {
		t.Errorf("ChildSpecFromEnv = %+v %v %v", spec, ok, err)
	}
	t.Setenv(ChildEnv, `{`)
	if _, ok, err := ChildSpecFromEnv(); !ok || err == nil {
		t.Error("bad spec: want an error")
	}
}

func TestParseSizeMiB(t *testing.T) {
	for in, want := range map[string]int64{"1G": 1024, "2.5G": 2560, "1024M": 1024, "1GiB": 1024, "512": 512, " 2g ": 2048} {
		if got, err := ParseSizeMiB(in); err != nil || got != want {
			t.Errorf("ParseSizeMiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1G", "10M", "0"} {
		if _, err := ParseSizeMiB(in); err == nil {
			t.Errorf("ParseSizeMiB(%q): want an error", in)
		}
	}
}

func TestSampleMemory(t *testing.T) {
	stop := SampleMemory(context.Background(), time.Millisecond)
	keep := make([]byte, 8<<20)
	for i := range keep {
		keep[i] = byte(i)
	}
	time.Sleep(20 * time.Millisecond)
	m := stop()
	if m.Samples < 2 || m.HeapObjects < 8<<20 || m.GoTotal < m.HeapObjects || m.RSSAnon == 0 {
		t.Errorf("peaks %+v with 8 MiB live", m)
	}
	_ = keep[len(keep)-1]
}

func TestMeasure(t *testing.T) {
	// A shell that burns a little CPU and runs a child holding a 16 MiB
	// buffer.
	cmd := exec.Command("sh", "-c", `i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/dev/null bs=16M count=200 status=none; true`)
	s, runs, err := measure(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if s.Seconds <= 0 || s.CPU <= 0 || len(runs) != 1 {
		t.Errorf("sample %+v", s)
	}
	if s.PeakRSSKiB < 16<<10 {
		t.Errorf("peak RSS %d KiB, want the descendants' 16 MiB or more", s.PeakRSSKiB)
	}
	if _, _, err := measure(context.Background(), exec.Command("sh", "-c", "echo oops >&2; exit 3")); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("a failing command: %v", err)
	}
}

// TestReport fills a report from made-up samples and checks the bound
// chosen and the tables' rows.
func TestReport(t *testing.T) {
	const raw = int64(1e9)
	b := &bench{rawSize: raw, sizes: map[Variant]int64{Raw: raw, Gzip: 3e8, Zstd: 3e8, Xz: 2e8, Qcow2: 6e8, Qcow2Zlib: 4e8}, have: map[string]bool{"fio": true, "curl": true}, cases: Cases}
	var jobs []job
	samples := map[string][]Sample{}
	add := func(key, group string, secs, cpu float64) {
		jobs = append(jobs, job{key: key, group: group, in: raw})
		samples[key] = []Sample{{Seconds: secs, CPU: cpu, PeakRSSKiB: 4096}}
	}
	gz, _ := caseByID("gz")
	qcow, _ := caseByID("qcow2")
	qcowc, _ := caseByID("qcow2c")
	xz, _ := caseByID("xz")
	decodes := map[string]*DecodeFigures{
		decodeKey(Gzip):      {CPU: 1.8, InputWait: 0.01},
		decodeKey(Qcow2):     {InputWait: 0.01},
		agentKey(gz):         {CPU: 0.9, InputWait: 0.05, OutputWait: 0.02},
		agentKey(qcow):       {InputWait: 0.1, OutputWait: 0.2},
		decodeKey(Qcow2Zlib): {InputWait: 0.02},
		agentKey(qcowc):      {InputWait: 0.3, OutputWait: 0.1},
		decodeKey(Xz):        {CPU: 3.6, InputWait: 0.01, Threads: 3},
		agentKey(xz):         {CPU: 3.7, InputWait: 0.02, OutputWait: 0.01, Threads: 3},
	}
	add(keyDD, groupDevice, 0.5, 0.1)
	add(fioKey("4M", 8), groupDevice, 0.4, 0.1)
	add(keyDD3, groupDevice, 0.6, 0.3)
	for _, v := range Variants {
		add(downloadKey("Go", v), groupStage, 0.3, 0.3)
		add(hashKey("Go", "sha256", v), groupStage, 0.6, 0.6)
		if v != Raw {
			add(decodeKey(v), groupStage, 2, 2)
		}
	}
	add(hashKey("Go", "sha512", Raw), groupStage, 1.2, 1.2)
	add(hashKey("Go", "md5", Raw), groupStage, 1.5, 1.5)
	for _, c := range Cases {
		jobs = append(jobs, job{key: agentKey(c), group: groupAgent})
		samples[agentKey(c)] = []Sample{{Seconds: 1, CPU: 1, PeakRSSKiB: 40 << 10}}
	}
	jobs = append(jobs, job{key: peerCurlDD, group: groupPeer})
	samples[peerCurlDD] = []Sample{{Seconds: 0.8, CPU: 0.5}}
	jobs = append(jobs, job{key: peerQemuImgZlib, group: groupPeer})
	samples[peerQemuImgZlib] = []Sample{{Seconds: 4, CPU: 4}}
	for key, d := range decodes {
		samples[key][0].Child = &ChildResult{Decode: d}
	}
	rep := &Report{Cores: 2, Rounds: 1, RawBytes: raw, Sizes: b.sizes, Image: "x.raw"}
	b.fill(rep, jobs, samples)

	if rep.Device.Key != fioKey("4M", 8) {
		t.Errorf("device limit %q, want the fastest device job", rep.Device.Key)
	}
	byID := map[string]CaseRow{}
	for _, c := range rep.Cases {
		byID[c.Case.ID] = c
	}
	// raw: download 0.3 (0.3 CPU) + sha256 0.6 + device 0.4 (0.1): the
	// hash alone (0.6 s) beats CPU 1.0/2 = 0.5 s.
	if l := byID["raw"].Limit; l.ByCPU || l.Seconds != 0.6 {
		t.Errorf("raw bound %+v", l)
	}
	// gz: CPU 0.3+0.6+2+0.1 = 3.0 / 2 = 1.5 s < the decoder's 2 s.
	if l := byID["gz"].Limit; l.ByCPU || l.Seconds != 2 || !strings.Contains(l.Stage.Name, "decode") {
		t.Errorf("gz bound %+v", l)
	}
	// md5: 0.3 + 1.5 + 0.1 = 1.9 CPU → 0.95 s < 1.5 s alone.
	if l := byID["raw-md5"].Limit; l.Seconds != 1.5 {
		t.Errorf("md5 bound %+v", l)
	}
	// Fan-out uses the three parallel dd.
	if l := byID["fanout"].Limit; !strings.Contains(Detail(l.stagesOf(byID["fanout"].Stages)), keyDD3) {
		t.Errorf("fan-out stages %+v", byID["fanout"].Stages)
	}
	md := rep.Markdown()
	for _, want := range []string{
		"| raw | 1000 | 1667 | sha256 (Go) | 0.60 |",
		"| 1667 MB/s: sha256 (Go) | 0.60 |",
		"| agent: raw | 1.00 | 1.00 | 1.00 |",
		`| curl \| dd oflag=direct | 1250 | raw, zero runs written |`,
		"**" + fioKey("4M", 8) + "**",
		// The decoder inside the write: rest = 1 − 0.9 − 0.05 − 0.02.
		"| raw.gz | 1.00 | 0.90 | 1.80 | 0.50 | 0.050 | 0.020 | 0.03 |",
		"| qcow2 | 1.00 | – | – | – | 0.100 | 0.200 | – |",
		"| qcow2, zlib-compressed clusters | 1.00 | – | – | – | 0.300 | 0.100 | – |",
		// The zlib-compressed qcow2: its own row against its own bound
		// (its decoder alone, 2 s), and its own qemu-img peer.
		"| qcow2, zlib-compressed clusters | 1000 | 500 | decode zlib.qcow2 | 2.00 |",
		"- qcow2, zlib-compressed clusters: download (Go, with the server's CPU) 0.30 s (0.30 CPU) · sha256 (Go) 0.60 s (0.60 CPU) · **decode zlib.qcow2** 2.00 s (2.00 CPU) ·",
		"| " + peerQemuImgZlib + " | 250 | qcow2, zlib-compressed clusters | 0.50 | 4.00 |",
		"zlib.qcow2 400 MB",
		// On several threads: no rest.
		"| raw.xz (3 threads) | 1.00 | 3.70 | 3.60 | 1.03 | 0.020 | 0.010 | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// Only the cases that reported figures have a row there.
	_, table, _ := strings.Cut(md, "The decode stage inside the write")
	_, table, _ = strings.Cut(table, "\n\n")
	table, _, _ = strings.Cut(table, "\n\n")
	if rows := strings.Count("\n"+table, "\n| ") - 1; rows != 4 {
		t.Errorf("%d rows in the decoder table, want 4:%s", rows, table)
	}
}

func TestSelectCases(t *testing.T) {
	all, err := SelectCases(nil)
	if err != nil || len(all) != len(Cases) {
		t.Fatalf("SelectCases(nil) = %d cases, %v", len(all), err)
	}
	ids := func(cs []Case) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	// Table order, duplicates once, and a fan-out brings its one-disk case.
	got, err := SelectCases([]string{"fanout", "zst", "gz", "zst"})
	if want := []string{"raw", "gz", "zst", "fanout"}; err != nil || !slices.Equal(ids(got), want) {
		t.Errorf("SelectCases = %v, %v; want %v", ids(got), err, want)
	}
	if got, err := SelectCases([]string{"fanout", "qcow2c", "qcow2"}); err != nil || !slices.Equal(ids(got), []string{"raw", "qcow2", "qcow2c", "fanout"}) {
		t.Errorf("qcow2c: %v, %v; want it right after qcow2", ids(got), err)
	}
	if got, err := SelectCases([]string{" zst", "gz ", ""}); err != nil || !slices.Equal(ids(got), []string{"gz", "zst"}) {
		t.Errorf("IDs with spaces and an empty one: %v, %v", ids(got), err)
	}
	if got, err := SelectCases([]string{""}); err != nil || len(got) != len(Cases) {
		t.Errorf("only an empty ID: %d cases, %v; want them all", len(got), err)
	}
	if got, err := CheckIDs([]string{"fanout", " zst"}); err != nil || !slices.Equal(got, []string{"fanout", "zst"}) {
		t.Errorf("CheckIDs = %v, %v; want the IDs as given, no one-disk case added", got, err)
	}
	if _, err := SelectCases([]string{"gz", "bz2"}); err == nil || !strings.Contains(err.Error(), `"bz2"`) || !strings.Contains(err.Error(), "raw-zeros") {
		t.Errorf("an unknown case: %v, want an error naming it and the known ones", err)
	}
}

// TestNeeded checks which jobs a subset of the cases keeps.
func TestNeeded(t *testing.T) {
	b := &bench{rawSize: 1e9, sizes: map[Variant]int64{}, files: map[Variant]string{}, sums: map[Variant]map[string]string{},
		devs: []*loopdev.Device{{Path: "/dev/loop90"}, {Path: "/dev/loop91"}, {Path: "/dev/loop92"}},
		have: map[string]bool{"fio": true, "curl": true, "openssl": true, "sha256sum": true, "gzip": true, "zstd": true}}
	keys := func() []string {
		var out []string
		for _, j := range b.jobs() {
			out = append(out, j.key)
		}
		return out
	}
	var err error
	if b.cases, err = SelectCases(nil); err != nil {
		t.Fatal(err)
	}
	all := keys()
	for _, tool := range []string{"gzip", "zstd", "xz", "xz -T0"} {
		if !slices.Contains(all, DecompressPeerKey(tool)) {
			t.Errorf("every case: no %q peer in %q", tool, all)
		}
	}
	b.have["zstd"] = false
	if slices.Contains(keys(), DecompressPeerKey("zstd")) {
		t.Error("the zstd peer runs without zstd installed")
	}
	b.have["zstd"] = true
	b.cases, _ = SelectCases([]string{"gz"})
	got := keys()
	want := []string{keyDD, fioKey("1M", 1), fioKey("4M", 1), fioKey("1M", 8), fioKey("4M", 8),
		downloadKey("Go", Gzip), hashKey("Go", "sha256", Gzip), decodeKey(Gzip), agentKey(mustCase(t, "gz")), DecompressPeerKey("gzip")}
	if !slices.Equal(got, want) {
		t.Errorf("gz alone runs %q, want %q", got, want)
	}
	b.cases, _ = SelectCases([]string{"raw-sha512", "qcow2", "fanout-zeros"})
	got = keys()
	for _, k := range []string{keyDD3, hashKey("Go", "sha512", Raw), decodeKey(Qcow2), peerQemuImg, peerCurlDD, peerCurlHashDD, agentKey(mustCase(t, "raw-zeros")), agentKey(mustCase(t, "fanout-zeros"))} {
		if !slices.Contains(got, k) {
			t.Errorf("%q is missing from %q", k, got)
		}
	}
	for _, k := range []string{decodeKey(Gzip), hashKey("openssl", "sha512", Raw), downloadKey("curl", Raw), hashKey("Go", "md5", Raw), agentKey(mustCase(t, "raw")), DecompressPeerKey("zstd"),
		decodeKey(Qcow2Zlib), peerQemuImgZlib, agentKey(mustCase(t, "qcow2c"))} {
		if slices.Contains(got, k) {
			t.Errorf("%q is not needed by %v", k, got)
		}
	}
	if len(got) >= len(all) {
		t.Errorf("a subset ran %d of %d jobs", len(got), len(all))
	}
	for _, k := range []string{downloadKey("Go", Qcow2Zlib), hashKey("Go", "sha256", Qcow2Zlib), decodeKey(Qcow2Zlib), peerQemuImgZlib, agentKey(mustCase(t, "qcow2c"))} {
		if !slices.Contains(all, k) {
			t.Errorf("every case: %q is missing from %q", k, all)
		}
	}
	// The compressed qcow2 alone: its own file's stages and its own peer,
	// none of the plain qcow2's.
	b.cases, _ = SelectCases([]string{"qcow2c"})
	got = keys()
	want = []string{keyDD, fioKey("1M", 1), fioKey("4M", 1), fioKey("1M", 8), fioKey("4M", 8),
		downloadKey("Go", Qcow2Zlib), hashKey("Go", "sha256", Qcow2Zlib), decodeKey(Qcow2Zlib), agentKey(mustCase(t, "qcow2c")), peerQemuImgZlib}
	if !slices.Equal(got, want) {
		t.Errorf("qcow2c alone runs %q, want %q", got, want)
	}
}

// mustCase is the case of an ID.
func mustCase(t *testing.T, id string) Case {
	t.Helper()
	c, ok := caseByID(id)
	if !ok {
		t.Fatalf("no case %q", id)
	}
	return c
}

// TestRoundRatios fills a report of two rounds of one case and checks
// that each round's case is set against that round's stages, the device
// among them.
func TestRoundRatios(t *testing.T) {
	const raw = int64(1e9)
	cases, err := SelectCases([]string{"gz"})
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{rawSize: raw, sizes: map[Variant]int64{Raw: raw, Gzip: 3e8}, cases: cases}
	var jobs []job
	samples := map[string][]Sample{}
	add := func(key, group string, secs ...float64) {
		jobs = append(jobs, job{key: key, group: group, in: raw, disks: 1})
		for _, s := range secs {
			samples[key] = append(samples[key], Sample{Seconds: s, CPU: 0.1})
		}
	}
	// The device bounds: dd is the device limit by its median (0.5 s
	// against fio's 0.6), although fio was faster in round 1.
	add(keyDD, groupDevice, 0.5, 0.5)
	add(fioKey("1M", 8), groupDevice, 0.3, 0.9)
	add(downloadKey("Go", Gzip), groupStage, 0.1, 0.1)
	add(hashKey("Go", "sha256", Gzip), groupStage, 0.2, 0.2)
	// The decoder alone: 2 s in round 1, 0.2 s in round 2; the write 1 s
	// then 2 s. Medians alone would say 1.1 ÷ 1.5.
	add(decodeKey(Gzip), groupStage, 2, 0.2)
	add(agentKey(cases[0]), groupAgent, 1, 2)
	// A peer of a case that did not run is left out.
	add(peerQemuImg, groupPeer, 1, 1)
	rep := &Report{Cores: 2, Rounds: 2, RawBytes: raw, Sizes: b.sizes, Image: "x.raw", Subset: []string{"gz"},
		Loads: []RoundLoad{{Round: 1, MachineBusy: 1.5, Steal: 0.125, Others: 0.01, Seconds: 9}}}
	b.fill(rep, jobs, samples)
	if rep.Device.Key != keyDD {
		t.Fatalf("device limit %q, want dd by its median", rep.Device.Key)
	}
	if len(rep.Cases) != 1 || len(rep.Peers) != 0 {
		t.Fatalf("%d case rows and peers %+v, want the one selected and no peer", len(rep.Cases), rep.Peers)
	}
	c := rep.Cases[0]
	// Round 1: the decoder's 2 s ÷ the write's 1 s; round 2: dd's 0.5 s
	// (not fio's 0.9 s of that round) ÷ 2 s.
	if !slices.Equal(c.RoundRatios, []float64{2, 0.25}) {
		t.Errorf("round ratios %v, want [2 0.25]", c.RoundRatios)
	}
	md := rep.Markdown()
	for _, want := range []string{"| 1.12 (0.25–2.00) |", "| 1.50 | 0.125 | 0.01 | 9 |", "Only some cases ran: gz;"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "Fan-out:") || strings.Contains(md, "| raw.zst |") || strings.Contains(md, "qemu-img") {
		t.Errorf("a gz-only run reports fan-out, other cases or peers:\n%s", md)
	}
	// Every table row has as many cells as its header.
	cells := 0
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			cells = 0
			continue
		}
		n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|")
		if cells == 0 {
			cells = n
		} else if n != cells {
			t.Errorf("%d cells, header has %d: %s", n-1, cells-1, line)
		}
	}

	// A stage missing a round leaves the round ratios out, rather than
	// counting the stage as free.
	samples[decodeKey(Gzip)] = samples[decodeKey(Gzip)][:1]
	rep = &Report{Cores: 2, Rounds: 2, RawBytes: raw, Sizes: b.sizes}
	b.fill(rep, jobs, samples)
	if rr := rep.Cases[0].RoundRatios; rr != nil {
		t.Errorf("round ratios %v with a stage measured once", rr)
	}
}

func TestMissing(t *testing.T) {
	b := &bench{have: map[string]bool{}, cases: Cases}
	if got := b.missing(); !slices.Equal(got, []string{"fio", "curl", "openssl", "sha256sum", "gzip", "zstd"}) {
		t.Errorf("every case, no tools: %v", got)
	}
	b.cases, _ = SelectCases([]string{"gz"})
	if got := b.missing(); !slices.Equal(got, []string{"fio", "curl", "gzip"}) {
		t.Errorf("gz alone, no tools: %v; want fio, the device jobs' tool, and its peer's", got)
	}
	b.cases, _ = SelectCases([]string{"xz"})
	if got := b.missing(); !slices.Equal(got, []string{"fio", "curl"}) {
		t.Errorf("xz alone, no tools: %v; want fio and curl (xz is required)", got)
	}
	b.cases, _ = SelectCases([]string{"qcow2c"})
	if got := b.missing(); !slices.Equal(got, []string{"fio"}) {
		t.Errorf("qcow2c alone, no tools: %v; want fio only (its peer is qemu-img, which is required)", got)
	}
	b.cases, _ = SelectCases([]string{"raw-zeros"})
	if got := b.missing(); !slices.Equal(got, []string{"fio", "curl", "sha256sum"}) {
		t.Errorf("raw with zeros written, no tools: %v; want its peers' tools too", got)
	}
	b.have = map[string]bool{"fio": true, "curl": true, "openssl": true, "sha256sum": true, "gzip": true, "zstd": true}
	if got := b.missing(); len(got) != 0 {
		t.Errorf("all installed: %v", got)
	}
}

// TestVariants checks the variants' names: each a distinct file suffix
// (the image files are named by it, and served by file name), every one
// but raw decoded, and the qcow2 ones as qcow2 whatever their suffix.
func TestVariants(t *testing.T) {
	names := map[string]bool{}
	for _, v := range Variants {
		name := "os-v2-64M." + string(v)
		if names[name] || strings.HasPrefix(string(v), ".") || strings.HasSuffix(string(v), ".") {
			t.Errorf("variant %q: file name %q repeated or malformed", v, name)
		}
		names[name] = true
		if (decodeFormat(v) == "") != (v == Raw) {
			t.Errorf("variant %q decodes as %q", v, decodeFormat(v))
		}
	}
	for _, v := range []Variant{Qcow2, Qcow2Zlib} {
		if name := "os-v2-64M." + string(v); decodeFormat(v) != "qcow2" || filepath.Ext(name) != ".qcow2" {
			t.Errorf("variant %q: file %s decodes as %q", v, name, decodeFormat(v))
		}
	}
	if !slices.Contains(DefaultProfileCases, "qcow2c") || mustCase(t, "qcow2c").Variant != Qcow2Zlib {
		t.Errorf("qcow2c: profiled by default %v, variant %q", DefaultProfileCases, mustCase(t, "qcow2c").Variant)
	}
	for _, c := range Cases {
		if !slices.Contains(Variants, c.Variant) {
			t.Errorf("case %s serves %q, not a variant", c.ID, c.Variant)
		}
	}
}
