package imagewriter

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/imagewriter/qcow2"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/internal/writebench"
	"golang.org/x/sys/unix"
)

// The image-write benchmark (make bench) lives in internal/writebench; this
// file is its agent side. BenchmarkImageWrite drives it, and it runs every
// agent job (a write, or one of the agent's stages alone: download, hash,
// decode) in a child process of this test binary, TestWriteBenchChild, so
// the child's CPU time and peak RSS are its own and the stages use the
// package's own decoders and hashes. Nothing here asserts speed.

// BenchmarkImageWrite runs the benchmark once (it has its own rounds) and
// prints the report, which is also kept in build/bench/. Settings come
// from the environment: BENCH_SIZE (raw image size, e.g. 1G or 2560M; 2560
// MiB by default), BENCH_ROUNDS (5), BENCH_CASES (comma-separated case IDs:
// run only those cases and the jobs they need), BENCH_PROFILE (a directory: profile
// the cases of BENCH_PROFILE_CASES, comma-separated IDs; with
// BENCH_PROFILE_ONLY=1, skip the timed rounds).
func BenchmarkImageWrite(b *testing.B) {
	if os.Getenv("RIVET_BENCH") != "1" {
		b.Skip("set RIVET_BENCH=1 (make bench): builds an OS image and writes many GB to loop devices")
	}
	loopdev.SkipIfUnavailable(b)
	cfg := writebench.Config{ChildArgs: benchChildArgs(), ProfileDir: os.Getenv("BENCH_PROFILE")}
	var err error
	if cfg.Dir, err = filepath.Abs("../build/bench"); err != nil {
		b.Fatal(err)
	}
	if v := os.Getenv("BENCH_SIZE"); v != "" {
		if cfg.SizeMiB, err = writebench.ParseSizeMiB(v); err != nil {
			b.Fatal(err)
		}
	}
	if v := os.Getenv("BENCH_ROUNDS"); v != "" {
		if cfg.Rounds, err = strconv.Atoi(v); err != nil || cfg.Rounds < 1 {
			b.Fatalf("BENCH_ROUNDS=%q: want a positive count", v)
		}
	}
	if v := os.Getenv("BENCH_CASES"); v != "" {
		cfg.Cases = strings.Split(v, ",")
	}
	if v := os.Getenv("BENCH_PROFILE_CASES"); v != "" {
		cfg.ProfileCases = strings.Split(v, ",")
	}
	cfg.ProfileOnly = os.Getenv("BENCH_PROFILE_ONLY") == "1"
	// An interrupt must still detach the loop devices.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for range b.N {
		rep, err := writebench.Run(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		md := rep.Markdown()
		name := filepath.Join(cfg.Dir, "report-"+rep.Started.UTC().Format("20060102-150405")+".md")
		if err := os.WriteFile(name, []byte(md), 0o644); err != nil {
			b.Error(err)
		}
		// The samples' medians, to render again or compare later.
		if js, err := json.MarshalIndent(rep, "", "  "); err == nil {
			if err := os.WriteFile(strings.TrimSuffix(name, ".md")+".json", js, 0o644); err != nil {
				b.Error(err)
			}
		}
		fmt.Println("\n" + md + "\n(kept in " + name + ")")
	}
}

// TestWriteBenchSmoke runs one round of the benchmark on a tiny image so
// its code keeps working; it asserts that every row was measured, nothing
// about speed.
func TestWriteBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the benchmark smoke test builds an image and writes loop devices")
	}
	loopdev.SkipIfUnavailable(t)
	for _, tool := range []string{"mkfs.ext4", "qemu-img", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
				t.Fatalf("RIVET_REQUIRE_E2E=1 but %s is not installed", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := directIODir(t)
	rep, err := writebench.Run(context.Background(), writebench.Config{Dir: dir, SizeMiB: 64, Rounds: 1,
		ChildArgs: benchChildArgs(), ProfileDir: t.TempDir(), ProfileCases: []string{"zst"}, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cases) != len(writebench.Cases) {
		t.Fatalf("%d case rows, want %d", len(rep.Cases), len(writebench.Cases))
	}
	for _, c := range rep.Cases {
		if c.Runs != 1 || c.Seconds <= 0 || c.Limit.Seconds <= 0 || c.Child == nil || c.Child.Bytes != rep.RawBytes {
			t.Errorf("%s: %+v", c.Case.Name, c)
		}
		if c.Child == nil {
			continue
		}
		// The image's zero tail is skipped unless zeros are written.
		if skipped := c.Child.Skipped > 0; skipped == c.Case.NoZeroSkip {
			t.Errorf("%s skipped %d bytes", c.Case.Name, c.Child.Skipped)
		}
		// A decode stage reports its figures: the thread's CPU where it
		// has a thread of its own (the decompressors, not qcow2, whose
		// compressed clusters decode on the runtime's threads), summed
		// over xz's workers, for which no rest is worked out.
		switch d := c.Decode; {
		case c.Case.Variant == writebench.Raw && d != nil:
			t.Errorf("%s: decode figures %+v for a raw image", c.Case.Name, d)
		case c.Case.Variant != writebench.Raw && (d == nil || d.InputWait < 0 || d.OutputWait < 0 || d.InputWait+d.OutputWait > c.Seconds):
			t.Errorf("%s: decode figures %+v over %.3f s", c.Case.Name, d, c.Seconds)
		case c.Case.Variant != writebench.Raw && (d.CPU > 0) != (c.Case.Variant != writebench.Qcow2 && c.Case.Variant != writebench.Qcow2Zlib):
			t.Errorf("%s: decode stage CPU %.3f s", c.Case.Name, d.CPU)
		case (d != nil && d.Threads > 1) != (c.Case.Variant == writebench.Xz || c.Case.Variant == writebench.Qcow2Zlib):
			t.Errorf("%s: the decode stage ran on %d threads; want several for xz (its workers and their dispatcher) and the compressed qcow2 (its conversion and the workers decoding its clusters) only", c.Case.Name, d.Threads)
		case c.Case.Variant != writebench.Raw && (c.DecodeRest != nil) != (d.CPU > 0 && d.Threads <= 1):
			t.Errorf("%s: time neither running nor waiting %v, with the stage's CPU %.3f s on %d threads", c.Case.Name, c.DecodeRest, d.CPU, d.Threads)
		}
	}
	for _, l := range rep.Limits {
		if l.Runs != 1 || l.Seconds <= 0 || l.InBytes <= 0 {
			t.Errorf("limit %s: %+v", l.Key, l)
		}
		if strings.HasPrefix(l.Key, "decode ") && (l.Decode == nil || (l.Decode.CPU > 0) != !strings.Contains(l.Key, "qcow2")) {
			t.Errorf("limit %s: decode figures %+v", l.Key, l.Decode)
		}
	}
	// Every peer that ran was measured; the decompressing pipelines ran
	// wherever their tools are installed.
	peers := map[string]bool{}
	for _, p := range rep.Peers {
		peers[p.Key] = true
		if p.Runs != 1 || p.Seconds <= 0 {
			t.Errorf("peer %s: %+v", p.Key, p.Summary)
		}
	}
	for _, tool := range []string{"gzip", "zstd", "xz", "xz -T0"} {
		_, curlErr := exec.LookPath("curl")
		_, toolErr := exec.LookPath(strings.Fields(tool)[0])
		if key := writebench.DecompressPeerKey(tool); (curlErr == nil && toolErr == nil) != peers[key] {
			t.Errorf("peer %q ran: %v; curl: %v, %s: %v", key, peers[key], curlErr, tool, toolErr)
		}
	}
	if rep.Device.Runs != 1 || len(rep.Memory) != 1 || rep.Memory[0].Child.Memory == nil {
		t.Fatalf("device limit %+v, memory rows %+v", rep.Device, rep.Memory)
	}
	for _, p := range []string{rep.Memory[0].CPUProfile, rep.Memory[0].HeapProfile} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", p, err)
		}
	}
	md := rep.Markdown()
	t.Log("\n" + md)
	for _, want := range []string{"| raw.xz |", "| qcow2 |", "raw → 3 disks", rep.Device.Key, "The decode stage inside the write"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}

	// A subset of the cases, two rounds, on the images already built:
	// only the jobs gz needs run, and each round's ratio is reported.
	rep, err = writebench.Run(context.Background(), writebench.Config{Dir: dir, SizeMiB: 64, Rounds: 2, Cases: []string{"gz"},
		ChildArgs: benchChildArgs(), Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// Its one peer, the gzip pipeline, runs where curl is installed (gzip
	// always is, on Debian).
	wantPeers := 0
	if _, err := exec.LookPath("curl"); err == nil {
		wantPeers = 1
	}
	if len(rep.Cases) != 1 || rep.Cases[0].Case.ID != "gz" || rep.Cases[0].Runs != 2 || len(rep.Cases[0].RoundRatios) != 2 || len(rep.Peers) != wantPeers {
		t.Fatalf("gz alone: case rows %+v, peers %+v", rep.Cases, rep.Peers)
	}
	for _, p := range rep.Peers {
		if p.Key != writebench.DecompressPeerKey("gzip") || p.Runs != 2 || p.Seconds <= 0 || p.Against.Case.ID != "gz" {
			t.Errorf("gz alone: peer %+v", p)
		}
	}
	for _, r := range rep.Cases[0].RoundRatios {
		if r <= 0 {
			t.Errorf("gz round ratios %v", rep.Cases[0].RoundRatios)
		}
	}
	var keys []string
	for _, l := range rep.Limits {
		keys = append(keys, l.Key)
		if strings.Contains(l.Key, "raw.zst") || strings.Contains(l.Key, "3 ×") || strings.Contains(l.Key, "openssl") {
			t.Errorf("gz alone ran %q", l.Key)
		}
	}
	if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, "decode raw.gz") }) {
		t.Errorf("gz alone did not measure its decoder: %q", keys)
	}
	if _, err := writebench.Run(context.Background(), writebench.Config{Dir: dir, SizeMiB: 64, Cases: []string{"bz2"}, ChildArgs: benchChildArgs(), Log: discardLogger()}); err == nil {
		t.Error("an unknown case ran")
	}
}

// directIODir is a temporary directory whose filesystem takes O_DIRECT (the
// loop devices' backing files need it): the test's temp dir, or one under
// the repository's build/ when that is tmpfs.
func directIODir(t *testing.T) string {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return dir
	}
	build, err := filepath.Abs("../build")
	if err == nil {
		err = os.MkdirAll(build, 0o755)
	}
	if err == nil {
		dir, err = os.MkdirTemp(build, "bench-smoke-")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// benchChildArgs starts this test binary as the benchmark's child.
func benchChildArgs() []string {
	return []string{os.Args[0], "-test.run=^TestWriteBenchChild$", "-test.count=1", "-test.v=false"}
}

// TestWriteBenchChild is the benchmark's agent-side child; it does nothing
// unless started by the benchmark.
func TestWriteBenchChild(t *testing.T) {
	spec, ok, err := writebench.ChildSpecFromEnv()
	if !ok {
		t.Skip("only run by the image-write benchmark as its child")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := writebench.PrintChildResult(os.Stdout, runBenchChild(context.Background(), spec)); err != nil {
		t.Fatal(err)
	}
}

func runBenchChild(ctx context.Context, spec writebench.ChildSpec) (res writebench.ChildResult) {
	fail := func(err error) writebench.ChildResult {
		res.Err = err.Error()
		return res
	}
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
	}
	if spec.Trace != "" {
		f, err := os.Create(spec.Trace)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return fail(err)
		}
	}
	stopMem := func() *writebench.MemoryPeaks { return nil }
	if spec.SampleMemory {
		stop := writebench.SampleMemory(ctx, 5*time.Millisecond)
		stopMem = func() *writebench.MemoryPeaks { m := stop(); return &m }
	}
	start := time.Now()
	var err error
	switch spec.Mode {
	case writebench.ModeWrite:
		var r *Result
		r, err = Write(ctx, Request{Source: Source{URLs: []string{spec.URL}}, Checksum: Checksum{Algo: spec.Algo, Value: spec.Sum},
			Targets: spec.Targets, NoZeroSkip: spec.NoZeroSkip, Buffers: spec.Buffers, BufferSize: spec.BufferSize, Logger: discardLogger()})
		if err == nil {
			res.Bytes, res.Written, res.Skipped = r.ImageSize, r.Disks[0].Written, r.Disks[0].Skipped
			if d := r.Decode; d != nil {
				res.Decode = &writebench.DecodeFigures{CPU: d.CPU.Seconds(), InputWait: d.InputWait.Seconds(), OutputWait: d.OutputWait.Seconds(), Threads: d.Threads}
			}
		}
	case writebench.ModeDownload:
		res.Bytes, err = benchDownload(ctx, spec.URL)
	case writebench.ModeHash:
		res.Bytes, err = benchHash(spec.File, spec.Algo, spec.Sum)
	case writebench.ModeDecode:
		res.Bytes, res.Decode, err = benchDecode(ctx, spec.File, Format(spec.Format))
	default:
		err = fmt.Errorf("unknown mode %q", spec.Mode)
	}
	res.Seconds = time.Since(start).Seconds()
	res.Memory = stopMem()
	if spec.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if spec.Trace != "" {
		trace.Stop()
	}
	res.Status, _ = writebench.ReadProcStatus()
	if spec.HeapProfile != "" {
		if herr := writeHeapProfile(spec.HeapProfile); herr != nil && err == nil {
			err = herr
		}
	}
	if err != nil {
		return fail(err)
	}
	return res
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	// Allocations over the whole run (alloc_space), not only what is
	// live at the end.
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// benchDownload reads url to nowhere the way the write's fetch stage
// does: the package's HTTP source, into buffers of the default size.
func benchDownload(ctx context.Context, url string) (int64, error) {
	st, err := (&Source{URLs: []string{url}, Logger: discardLogger()}).Open(ctx)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	buf := alignedBuffer(DefaultBufferSize)
	var total int64
	for {
		n, eof, err := fill(st, buf)
		total += int64(n)
		if err != nil {
			return total, err
		}
		if eof {
			break
		}
	}
	if st.Size() >= 0 && total != st.Size() {
		return total, fmt.Errorf("downloaded %d of %d bytes", total, st.Size())
	}
	return total, nil
}

// benchHash hashes a file in buffers of the default size with the
// package's hash for algo, and checks the digest.
func benchHash(path, algo, want string) (int64, error) {
	h, err := Checksum{Algo: algo}.newHash()
	if err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, alignedBuffer(DefaultBufferSize))
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return n, fmt.Errorf("%s of %s is %s, want %s", algo, path, got, want)
	}
	return n, nil
}

// feedChunks reads a file into the decode stage's input buffers (count
// of size bytes, as in the write) and hands them on, as the write's fetch
// stage does; the returned chunkReader is the decoder's input, as in the
// write. stop ends the feeder and waits for it.
func feedChunks(ctx context.Context, file io.Reader, count, size int) (*chunkReader, func() error) {
	ctx, cancel := context.WithCancel(ctx)
	pool := newBufferPool(count, size)
	ch := make(chan *chunk, count)
	done := make(chan error, 1)
	go func() {
		defer close(ch)
		for {
			c, err := pool.get(ctx)
			if err != nil {
				done <- nil
				return
			}
			n, eof, err := fill(file, c.buf)
			c.n = n
			c.refs.Store(1)
			if err != nil || n == 0 {
				c.release()
				done <- err
				return
			}
			select {
			case ch <- c:
			case <-ctx.Done():
				c.release()
				done <- nil
				return
			}
			if eof {
				done <- nil
				return
			}
		}
	}()
	cr := &chunkReader{ctx: ctx, ch: ch}
	return cr, func() error {
		cancel()
		for range ch {
		}
		cr.close()
		return <-done
	}
}

// copyOut copies output bytes into buf, round and round, as a stage
// copies them into the write's buffers.
type copyOut struct {
	buf  []byte
	used int
}

func (c *copyOut) copy(p []byte) {
	for len(p) > 0 {
		if c.used == len(c.buf) {
			c.used = 0
		}
		k := copy(c.buf[c.used:], p)
		c.used += k
		p = p[k:]
	}
}

// Write is what the write's zeroSkipper does with a block a decoder
// hands over: copied out, unless it is all zeros (the sinks zero those).
func (c *copyOut) Write(p []byte) (int, error) {
	if !isZero(p) {
		c.copy(p)
	}
	return len(p), nil
}

// benchDecode decodes a file to nowhere with the decoder the write uses,
// fed through the write's input buffers and drained into buffers of the
// default size, as the decode stage is: what the write does not copy
// (lent qcow2 runs, whole zero blocks of a decoder that hands over its
// blocks) is not copied here either. It returns the raw bytes produced
// (the virtual size for qcow2).
func benchDecode(ctx context.Context, path string, f Format) (n int64, figures *writebench.DecodeFigures, err error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer file.Close()
	out := &copyOut{buf: alignedBuffer(DefaultBufferSize)}
	var m *qcow2.Map
	if f == FormatQcow2 {
		fi, err := file.Stat()
		if err != nil {
			return 0, nil, err
		}
		if m, err = qcow2.ReadMap(ctx, file, fi.Size(), qcow2.Limits{Parallel: 8}); err != nil {
			return 0, nil, err
		}
	}
	count, size := decodedInput, inputChunk
	if f == FormatXz {
		count = xzInput
	}
	var plan *qcowPlan
	if m != nil {
		plan = &qcowPlan{mode: qcowTables, m: m, clusterSize: m.Header.ClusterSize()}
		count, size = plan.inputPool(DefaultBuffers, DefaultBufferSize)
	}
	in, stop := feedChunks(ctx, file, count, size)
	defer func() {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if m != nil {
		// The emitter copies compressed clusters and short runs into
		// output buffers; long runs of data clusters go to the disks in
		// the input buffers.
		emit := func(p []byte, off int64, buf qcow2.Buffer) error {
			if buf != nil && len(p) >= minLend && aligned(p, off) {
				return nil
			}
			out.copy(p)
			return nil
		}
		if _, err := m.ConvertRef(ctx, in, emit); err != nil {
			return 0, nil, err
		}
		d := &writebench.DecodeFigures{InputWait: in.waited.Seconds()}
		if m.CompressedBytes > 0 {
			d.Threads = 1 + qcow2.InflateWorkers()
		}
		return int64(m.Header.Size), d, nil
	}
	// As in the write: the decoder on a thread of its own, at its
	// priority, its CPU measured there.
	restore, err := prioritizeStage()
	defer restore()
	used := stageCPU(err == nil)
	n, workers, threads, err := decodeTo(ctx, f, in, out)
	cpu := used()
	if cpu > 0 {
		cpu += workers
	}
	return n, &writebench.DecodeFigures{CPU: cpu.Seconds(), InputWait: in.waited.Seconds(), Threads: 1 + threads}, err
}

// decodeTo decodes in to out with the write's decoder of f; an xz image
// on the write's workers, each decoding into a buffer of its own of the
// write's output chunk size, whose threads' CPU time and number it
// returns.
func decodeTo(ctx context.Context, f Format, in io.Reader, out *copyOut) (n int64, workers time.Duration, threads int, err error) {
	if f == FormatXz {
		outs := make([]blockOutput, xzWorkers(DefaultMaxDecoderMemory))
		for i := range outs {
			outs[i] = &discardBlocks{buf: alignedBuffer(xzOutputChunk)}
		}
		n, workers, err = decodeXzBlocks(ctx, in, DefaultMaxDecoderMemory, math.MaxInt64, outs)
		return n, workers, len(outs), err
	}
	n, err = decodeStream(f, in, out)
	return n, 0, 0, err
}

// discardBlocks is an xz worker's output in the bench: the worker decodes
// into a buffer of its own, as it fills the write's output chunks.
type discardBlocks struct{ buf []byte }

func (d *discardBlocks) put(_ context.Context, r io.Reader, _ int64) (int64, error) {
	var n int64
	for {
		k, eof, err := fill(r, d.buf)
		n += int64(k)
		if err != nil || eof {
			return n, err
		}
	}
}

// decodeStream decodes a gzip or zstd stream in to out.
func decodeStream(f Format, in io.Reader, out *copyOut) (n int64, err error) {
	dec, closeDec, err := newDecompressor(f, in, DefaultMaxDecoderMemory)
	if err != nil {
		return 0, err
	}
	defer closeDec()
	if wt, ok := dec.(io.WriterTo); ok {
		return wt.WriteTo(out)
	}
	for {
		k, eof, err := fill(dec, out.buf)
		n += int64(k)
		if err != nil {
			return n, err
		}
		if eof {
			return n, nil
		}
	}
}
