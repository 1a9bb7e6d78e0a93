package imagewriter

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/internal/osimage"
)

// The benchmark (make bench) writes a realistic 2.5 GiB OS image (GPT, FAT
// ESP, ext4 root filled with the host's /usr files, zero tail; built once
// into build/bench/) from an HTTP server on 127.0.0.1 to loop devices, in
// every format, and compares with dd writing the raw image to the same kind
// of device in the same run. Each write runs in a child process so its peak
// RSS (VmHWM) is its own. It is a benchmark, not a test: nothing is
// asserted about speed.

const benchImageVersion = "os-v1"

type benchChild struct {
	URL        string   `json:"url"`
	Sum        Checksum `json:"sum"`
	Targets    []string `json:"targets"`
	NoZeroSkip bool     `json:"no_zero_skip"`
	Parallel   int      `json:"parallel"`
}

type benchOutcome struct {
	Seconds   float64 `json:"seconds"`
	HWMKiB    int64   `json:"hwm_kib"`
	ImageSize int64   `json:"image_size"`
	Written   int64   `json:"written"`
	Skipped   int64   `json:"skipped"`
	Err       string  `json:"err"`
}

// TestBenchWriterChild is the benchmark's writer process; it does nothing
// unless started by BenchmarkImageWrite.
func TestBenchWriterChild(t *testing.T) {
	spec := os.Getenv("RIVET_BENCH_CHILD")
	if spec == "" {
		t.Skip("only run as BenchmarkImageWrite's writer process")
	}
	var c benchChild
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := Write(context.Background(), Request{Source: Source{URLs: []string{c.URL}}, Checksum: c.Sum, Targets: c.Targets,
		NoZeroSkip: c.NoZeroSkip, ParallelStreams: c.Parallel, Logger: discardLogger()})
	out := benchOutcome{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM()}
	if err != nil {
		out.Err = err.Error()
	} else {
		out.ImageSize, out.Written, out.Skipped = res.ImageSize, res.Disks[0].Written, res.Disks[0].Skipped
	}
	b, _ := json.Marshal(out)
	fmt.Println("BENCH-RESULT " + string(b))
}

func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func BenchmarkImageWrite(b *testing.B) {
	if os.Getenv("RIVET_BENCH") != "1" {
		b.Skip("set RIVET_BENCH=1 (make bench): builds a 2.5 GiB image and writes several GB to loop devices")
	}
	loopdev.SkipIfUnavailable(b)
	for _, tool := range []string{"dd", "mkfs.ext4", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed", tool)
		}
	}
	ctx := context.Background()
	dir, err := filepath.Abs("../build/bench")
	if err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	raw := filepath.Join(dir, benchImageVersion+".raw")
	if _, err := os.Stat(raw); err != nil {
		b.Logf("building %s (once; cached)", raw)
		if err := osimage.Build(ctx, raw, osimage.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	files := map[string]string{"raw": raw}
	for _, v := range []osimage.Variant{osimage.Zstd, osimage.Gzip, osimage.Qcow2} {
		p := strings.TrimSuffix(raw, ".raw") + "." + string(v)
		if _, err := os.Stat(p); err != nil {
			b.Logf("deriving %s", p)
			if p, err = osimage.Derive(ctx, raw, v); err != nil {
				b.Fatal(err)
			}
		}
		files[string(v)] = p
	}
	sums := map[string]Checksum{}
	for name, p := range files {
		sums[name] = fileSHA256(b, p)
	}
	rawSize := fileSize(b, raw)
	devSize := rawSize + 64<<20

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/"

	loopDir := b.TempDir()
	attach := func(n int) []*loopdev.Device {
		var ds []*loopdev.Device
		for i := range n {
			d, err := loopdev.Attach(filepath.Join(loopDir, fmt.Sprintf("disk%d", i)), devSize)
			if err != nil {
				b.Fatal(err)
			}
			ds = append(ds, d)
		}
		return ds
	}
	detach := func(ds []*loopdev.Device) {
		for _, d := range ds {
			if err := d.Detach(); err != nil {
				b.Error(err)
			}
			os.Remove(d.File)
		}
	}

	// dd, the reference, on a fresh device.
	ds := attach(1)
	start := time.Now()
	if out, err := exec.Command("dd", "if="+raw, "of="+ds[0].Path, "bs=4M", "oflag=direct", "conv=fsync").CombinedOutput(); err != nil {
		b.Fatalf("dd: %v: %s", err, out)
	}
	ddSecs := time.Since(start).Seconds()
	detach(ds)
	ddRate := float64(rawSize) / 1e6 / ddSecs

	// dd to three devices at once: what the machine's storage gives three
	// disks written together (here every loop device sits on one disk).
	ds = attach(3)
	start = time.Now()
	var dds []*exec.Cmd
	for _, d := range ds {
		c := exec.Command("dd", "if="+raw, "of="+d.Path, "bs=4M", "oflag=direct", "conv=fsync")
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		dds = append(dds, c)
	}
	for _, c := range dds {
		if err := c.Wait(); err != nil {
			b.Fatalf("dd: %v", err)
		}
	}
	dd3Secs := time.Since(start).Seconds()
	detach(ds)

	decodeRate := map[string]float64{"zst": decodeMBps(b, files["raw.zst"], "zst"), "gz": decodeMBps(b, files["raw.gz"], "gz")}

	type row struct {
		name, file string
		disks      int
		noSkip     bool
		parallel   int
	}
	rows := []row{
		{"raw", "raw", 1, false, 0},
		{"raw, zero runs written", "raw", 1, true, 0},
		{"raw, 4 Range streams", "raw", 1, false, 4},
		{"raw.zst", "raw.zst", 1, false, 0},
		{"raw.gz", "raw.gz", 1, false, 0},
		{"qcow2", "qcow2", 1, false, 0},
		{"raw → 3 disks", "raw", 3, false, 0},
		{"raw.zst → 3 disks", "raw.zst", 3, false, 0},
	}
	var report []string
	report = append(report, fmt.Sprintf("image: %s, %.2f GiB raw; served from 127.0.0.1; loop devices over files on the root fs", filepath.Base(raw), float64(rawSize)/(1<<30)),
		fmt.Sprintf("dd if=%s of=<loop> bs=4M oflag=direct conv=fsync: %.1f s, %.0f MB/s; three such dd at once to three loop devices: %.1f s (%.2f × one)",
			filepath.Base(raw), ddSecs, ddRate, dd3Secs, dd3Secs/ddSecs),
		fmt.Sprintf("decoder alone, one core: zstd %.0f MB/s, gzip %.0f MB/s (of raw output)", decodeRate["zst"], decodeRate["gz"]),
		"| case | served MB | seconds | MB/s (raw image) | × dd | bound | skipped GiB | peak RSS MiB |",
		"|---|---|---|---|---|---|---|---|")
	secs1 := map[string]float64{}
	for _, r := range rows {
		b.Run(strings.NewReplacer(" ", "_", ",", "", "→", "to").Replace(r.name), func(b *testing.B) {
			ds := attach(r.disks)
			defer detach(ds)
			var targets []string
			for _, d := range ds {
				targets = append(targets, d.Path)
			}
			spec, _ := json.Marshal(benchChild{URL: base + filepath.Base(files[r.file]), Sum: sums[r.file], Targets: targets, NoZeroSkip: r.noSkip, Parallel: r.parallel})
			cmd := exec.Command(os.Args[0], "-test.run=^TestBenchWriterChild$", "-test.bench=^$", "-test.count=1")
			cmd.Env = append(os.Environ(), "RIVET_BENCH_CHILD="+string(spec))
			out, err := cmd.CombinedOutput()
			var o benchOutcome
			for _, line := range strings.Split(string(out), "\n") {
				if v, ok := strings.CutPrefix(line, "BENCH-RESULT "); ok {
					json.Unmarshal([]byte(v), &o)
				}
			}
			if err != nil || o.Err != "" || o.Seconds == 0 {
				b.Fatalf("writer: %v %s\n%s", err, o.Err, out)
			}
			rate := float64(rawSize) / 1e6 / o.Seconds
			bound, boundName := ddRate, "disk (dd)"
			if key := strings.TrimPrefix(r.file, "raw."); decodeRate[key] > 0 && decodeRate[key] < ddRate {
				bound, boundName = decodeRate[key], "decoder"
			}
			b.ReportMetric(rate, "MB/s")
			b.ReportMetric(rate/ddRate, "x-dd")
			b.ReportMetric(float64(o.HWMKiB)/1024, "rss-MiB")
			if r.disks == 1 {
				secs1[r.file] = o.Seconds
			}
			extra := ""
			if r.disks > 1 && secs1[r.file] > 0 {
				extra = fmt.Sprintf(" (%.2f × the time of 1 disk)", o.Seconds/secs1[r.file])
			}
			report = append(report, fmt.Sprintf("| %s%s | %.0f | %.1f | %.0f | %.2f | %s: %.2f of it | %.2f | %.0f |", r.name, extra,
				float64(fileSize(b, files[r.file]))/1e6, o.Seconds, rate, rate/ddRate, boundName, rate/bound,
				float64(o.Skipped)/(1<<30), float64(o.HWMKiB)/1024))
		})
	}
	fmt.Println("\n" + strings.Join(report, "\n"))
}

// decodeMBps measures the decoder alone on one core: MB of raw output per
// second.
func decodeMBps(b *testing.B, path, kind string) float64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var r io.Reader
	switch kind {
	case "zst":
		z, err := zstd.NewReader(bufio.NewReaderSize(f, 1<<20), zstd.WithDecoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		defer z.Close()
		r = z
	case "gz":
		z, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			b.Fatal(err)
		}
		r = z
	}
	start := time.Now()
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

func fileSize(b *testing.B, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func fileSHA256(b *testing.B, p string) Checksum {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	c := Checksum{Algo: "sha256"}
	h, _ := c.newHash()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	c.Value = fmt.Sprintf("%x", h.Sum(nil))
	return c
}
