// Package writebench is the image-write benchmark (make bench). It writes
// an OS-like disk image, served over loopback HTTP, to loop devices that
// use direct I/O, in every format the agent takes, and measures in the same
// run, on the same bytes, what the machine allows: the device limit (the
// fastest of dd oflag=direct and fio's sequential direct writes), and each
// stage of the write alone (download, hash, decode) with the CPU it needs.
// Each agent case is set against its bound (the slowest of its stages
// alone, or the CPU all its stages need spread over the cores, whichever
// is longer) and against peers (curl | dd; curl into gzip, zstd or xz into
// dd; qemu-img convert). Every job
// runs in its own process, interleaved with the others in an order rotated
// each round, and the tables give medians with the machine's load.
//
// The agent side (writing, and the Go stages) runs in a child program the
// caller names (the image writer's test binary), which reads a ChildSpec
// from the environment and prints a ChildResult.
package writebench

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/internal/osimage"
)

// Defaults of Config's zero-valued fields.
const (
	DefaultSizeMiB = 2560
	DefaultRounds  = 5
)

// imageVersion names the image recipe; a new recipe gets new cache files.
const imageVersion = "os-v2"

// Config sets up a run.
type Config struct {
	// Dir holds the images (built once, kept) and, during the run, the
	// loop devices' backing files. It must be on a filesystem that
	// supports O_DIRECT.
	Dir string
	// SizeMiB is the raw image's size; zero means DefaultSizeMiB.
	SizeMiB int64
	// Rounds is how many times every job runs; zero means DefaultRounds.
	Rounds int
	// Cases are the IDs of the agent cases to run; nil runs them all. A
	// subset runs only the jobs its bounds, its fan-out comparison and its
	// peers need, so one format can get many rounds in little time.
	Cases []string
	// ChildArgs is the argv of the agent-side child program (required).
	ChildArgs []string
	// ProfileDir, when set, gets a CPU and a heap profile of one extra,
	// untimed run of each of ProfileCases, and the memory of those runs
	// is sampled for the report.
	ProfileDir string
	// ProfileCases are case IDs; nil means DefaultProfileCases.
	ProfileCases []string
	// ProfileOnly skips the timed rounds: only the profiled runs are made
	// (ProfileDir must be set).
	ProfileOnly bool
	// Cores is what the stages' CPU is spread over; zero means
	// runtime.NumCPU().
	Cores int
	// Log receives progress; nil means slog.Default().
	Log *slog.Logger
}

// bench is one run's state.
type bench struct {
	cfg Config
	log *slog.Logger
	// cases are the agent cases run, in table order.
	cases   []Case
	files   map[Variant]string
	sizes   map[Variant]int64
	sums    map[Variant]map[string]string
	rawSize int64
	base    string
	devs    []*loopdev.Device
	have    map[string]bool
}

// job is one measured unit: a device limit, a stage alone, an agent case
// or a peer.
type job struct {
	key   string
	group string
	// disks is how many devices the job writes (prepared before it runs).
	disks int
	// in is the bytes the job takes in.
	in  int64
	run func(ctx context.Context) (Sample, error)
}

// Job groups.
const (
	groupDevice = "device"
	groupStage  = "stage"
	groupAgent  = "agent"
	groupPeer   = "peer"
)

// Run builds (or reuses) the images, attaches the devices, runs every job
// Rounds times and returns the report. Devices are detached and their
// backing files removed before it returns.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if len(cfg.ChildArgs) == 0 {
		return nil, errors.New("writebench: no child program")
	}
	if cfg.SizeMiB <= 0 {
		cfg.SizeMiB = DefaultSizeMiB
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = DefaultRounds
	}
	if cfg.Cores <= 0 {
		cfg.Cores = runtime.NumCPU()
	}
	if cfg.ProfileOnly && cfg.ProfileDir == "" {
		return nil, errors.New("writebench: ProfileOnly without a ProfileDir")
	}
	cases, err := SelectCases(cfg.Cases)
	if err != nil {
		return nil, err
	}
	subset := len(cases) < len(Cases)
	if cfg.ProfileDir != "" {
		// A subset profiles its own cases unless told otherwise.
		switch profiled, err := CheckIDs(cfg.ProfileCases); {
		case err != nil:
			return nil, err
		case len(profiled) > 0:
			cfg.ProfileCases = profiled
		case subset:
			cfg.ProfileCases = caseIDs(cases)
		default:
			cfg.ProfileCases = DefaultProfileCases
		}
	}
	b := &bench{cfg: cfg, log: cfg.Log, cases: cases, have: map[string]bool{}}
	if b.log == nil {
		b.log = slog.Default()
	}
	for _, tool := range append([]string{"dd", "losetup", "mkfs.ext4", "qemu-img", "xz", "bash"}, optionalTools...) {
		_, lerr := exec.LookPath(tool)
		b.have[tool] = lerr == nil
	}
	for _, tool := range []string{"dd", "losetup", "mkfs.ext4", "qemu-img", "xz", "bash"} {
		if !b.have[tool] {
			return nil, fmt.Errorf("writebench: %s is not installed (scripts/install-deps.sh bench)", tool)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := b.images(ctx); err != nil {
		return nil, err
	}
	stop, err := b.serve()
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := b.attach(); err != nil {
		return nil, err
	}
	defer func() {
		if derr := b.detach(); derr != nil && err == nil {
			err = derr
		}
	}()

	start := time.Now()
	jobs := b.jobs()
	samples := map[string][]Sample{}
	rep = &Report{Started: start, Cores: cfg.Cores, Rounds: cfg.Rounds, SizeMiB: cfg.SizeMiB, RawBytes: b.rawSize, Sizes: b.sizes,
		Image: filepath.Base(b.files[Raw]), Missing: b.missing(), GoVersion: runtime.Version()}
	if subset {
		rep.Subset = caseIDs(cases)
	}
	rounds := cfg.Rounds
	if cfg.ProfileOnly {
		rounds, rep.Rounds = 0, 0
	}
	for r := range rounds {
		rl := RoundLoad{Round: r + 1}
		rl.Before, _ = ReadLoadAvg()
		t0, _ := ReadCPUTimes()
		rs := time.Now()
		var others []float64
		for _, j := range Rotate(jobs, r, cfg.Rounds) {
			b.log.Info("writebench", "round", r+1, "of", cfg.Rounds, "job", j.key)
			if err := b.prepareDevices(j.disks); err != nil {
				return nil, err
			}
			s, err := j.run(ctx)
			if err != nil {
				return nil, fmt.Errorf("writebench: %s: %w", j.key, err)
			}
			samples[j.key] = append(samples[j.key], s)
			others = append(others, s.Others)
		}
		rl.After, _ = ReadLoadAvg()
		t1, _ := ReadCPUTimes()
		rl.Seconds = time.Since(rs).Seconds()
		if rl.Seconds > 0 {
			rl.MachineBusy = (t1.Busy - t0.Busy) / rl.Seconds
			rl.Steal = (t1.Steal - t0.Steal) / rl.Seconds
		}
		rl.Others = Median(others)
		rep.Loads = append(rep.Loads, rl)
	}
	if rounds > 0 {
		b.fill(rep, jobs, samples)
	}
	if cfg.ProfileDir != "" {
		if err := b.profile(ctx, rep); err != nil {
			return nil, err
		}
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// images builds the raw image once, derives the other variants, and
// computes the checksums the writes verify.
func (b *bench) images(ctx context.Context) error {
	b.files, b.sizes, b.sums = map[Variant]string{}, map[Variant]int64{}, map[Variant]map[string]string{}
	raw := filepath.Join(b.cfg.Dir, fmt.Sprintf("%s-%dM.raw", imageVersion, b.cfg.SizeMiB))
	if _, err := os.Stat(raw); err != nil {
		b.log.Info("writebench: building the OS image (once; cached)", "path", raw)
		if err := osimage.Build(ctx, raw, osimage.ForSize(b.cfg.SizeMiB)); err != nil {
			return err
		}
	}
	b.files[Raw] = raw
	for _, v := range Variants[1:] {
		p := strings.TrimSuffix(raw, ".raw") + "." + string(v)
		if _, err := os.Stat(p); err != nil {
			b.log.Info("writebench: deriving (once; cached)", "path", p)
			if p, err = osimage.Derive(ctx, raw, v); err != nil {
				return err
			}
		}
		b.files[v] = p
	}
	for _, v := range Variants {
		algos := []string{"sha256"}
		if v == Raw {
			algos = []string{"sha256", "sha512", "md5"}
		}
		sums, size, err := fileSums(b.files[v], algos)
		if err != nil {
			return err
		}
		b.sums[v], b.sizes[v] = sums, size
	}
	b.rawSize = b.sizes[Raw]
	return nil
}

// fileSums hashes a file with each algorithm in one pass (which also
// brings it into the page cache, where every job reads it from).
func fileSums(path string, algos []string) (map[string]string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	hs := map[string]hash.Hash{}
	var ws []io.Writer
	for _, a := range algos {
		h := map[string]func() hash.Hash{"sha256": sha256.New, "sha512": sha512.New, "md5": md5.New}[a]()
		hs[a] = h
		ws = append(ws, h)
	}
	n, err := io.CopyBuffer(io.MultiWriter(ws...), f, make([]byte, 4<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("hash %s: %w", path, err)
	}
	out := map[string]string{}
	for a, h := range hs {
		out[a] = hex.EncodeToString(h.Sum(nil))
	}
	return out, n, nil
}

// serve starts the image server on loopback. It serves the variants'
// files and nothing else.
func (b *bench) serve() (func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	byName := map[string]string{}
	for _, p := range b.files {
		byName["/"+filepath.Base(p)] = p
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := byName[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, p)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	b.base = "http://" + ln.Addr().String() + "/"
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

func (b *bench) url(v Variant) string { return b.base + filepath.Base(b.files[v]) }

// attach makes three direct-I/O loop devices the size of the raw image
// plus 64 MiB.
func (b *bench) attach() error {
	size := b.rawSize + 64<<20
	for i := range 3 {
		d, err := loopdev.AttachWith(filepath.Join(b.cfg.Dir, fmt.Sprintf("loop-%d.img", i)), size, loopdev.Options{DirectIO: true})
		if err != nil {
			return errors.Join(err, b.detach())
		}
		b.devs = append(b.devs, d)
	}
	return nil
}

func (b *bench) detach() error {
	var errs []error
	for _, d := range b.devs {
		errs = append(errs, d.Detach())
		if err := os.Remove(d.File); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	b.devs = nil
	return errors.Join(errs...)
}

// prepareDevices allocates the backing files of the first n devices in
// full, so every write meets allocated blocks whatever the run before it
// left (a zero-skipping write leaves zeroed ranges unwritten, dd leaves
// them written).
func (b *bench) prepareDevices(n int) error {
	for _, d := range b.devs[:min(n, len(b.devs))] {
		if err := allocate(d.File, d.Size); err != nil {
			return err
		}
	}
	return nil
}

// optionalTools are the tools whose rows are left out when they are not
// installed.
var optionalTools = []string{"fio", "curl", "openssl", "sha256sum", "gzip", "zstd"}

// missing lists the optional tools the run would use that are not
// installed: their rows are left out.
func (b *bench) missing() []string {
	var out []string
	for _, t := range optionalTools {
		if !b.have[t] && b.uses(t) {
			out = append(out, t)
		}
	}
	return out
}

// uses reports whether the run's cases have a job that needs an optional
// tool: fio is a device job, which every run has; openssl (and curl) a
// stage alone, which only a run of every case has; the others are tools
// of the peers of the run's cases.
func (b *bench) uses(tool string) bool {
	if len(b.cases) == len(Cases) || tool == "fio" {
		return true
	}
	for peer, tools := range peerTools {
		if slices.Contains(tools, tool) && slices.ContainsFunc(b.cases, func(c Case) bool { return c.ID == peerAgainst[peer] }) {
			return true
		}
	}
	return false
}

// Job keys.
const (
	keyDD  = "dd bs=4M oflag=direct"
	keyDD3 = "3 × dd bs=4M oflag=direct, at once"
)

func fioKey(bs string, qd int) string {
	return fmt.Sprintf("fio bs=%s iodepth=%d libaio direct", bs, qd)
}
func downloadKey(tool string, v Variant) string {
	return fmt.Sprintf("download %s (%s)", v, tool)
}
func hashKey(tool, algo string, v Variant) string { return fmt.Sprintf("%s %s (%s)", algo, v, tool) }
func decodeKey(v Variant) string {
	return fmt.Sprintf("decode %s → raw (Go, the agent's decoder)", v)
}
func agentKey(c Case) string { return "agent: " + c.Name }

// Peer keys.
const (
	peerCurlDD     = "curl | dd oflag=direct"
	peerCurlHashDD = "curl | tee >(sha256sum) | dd oflag=direct"
	peerQemuImg    = "qemu-img convert -t none -O raw (from the local file)"
	// peerQemuImgZlib is the same from the local zlib-compressed qcow2.
	peerQemuImgZlib = "qemu-img convert -t none -O raw (from the local zlib-compressed file)"
)

// decompressPeers are the pipelines an operator would write for a
// compressed image: curl into the format's own tool (the C reference
// decoder, which verifies the stream's own check; the agent's decoders
// verify gzip's and xz's, not zstd's) into dd, by variant. xz runs twice:
// as it decodes by default (one thread, in XZ Utils before 5.6) and with
// a thread per core (-T0, decoding blocks in parallel as the agent does).
var decompressPeers = map[Variant][]string{Gzip: {"gzip"}, Zstd: {"zstd"}, Xz: {"xz", "xz -T0"}}

// DecompressPeerKey is the peer key of the pipeline that decodes with
// tool (gzip, zstd, xz, or xz -T0).
func DecompressPeerKey(tool string) string {
	return fmt.Sprintf("curl | %s -dc | dd oflag=direct", tool)
}

// peerAgainst maps each peer to the ID of the agent case doing its job.
var peerAgainst = map[string]string{peerCurlDD: "raw-zeros", peerCurlHashDD: "raw-zeros", peerQemuImg: "qcow2", peerQemuImgZlib: "qcow2c",
	DecompressPeerKey("gzip"): "gz", DecompressPeerKey("zstd"): "zst", DecompressPeerKey("xz"): "xz", DecompressPeerKey("xz -T0"): "xz"}

// peerTools are the optional tools each peer needs.
var peerTools = map[string][]string{peerCurlDD: {"curl"}, peerCurlHashDD: {"curl", "sha256sum"},
	DecompressPeerKey("gzip"): {"curl", "gzip"}, DecompressPeerKey("zstd"): {"curl", "zstd"}, DecompressPeerKey("xz"): {"curl"},
	DecompressPeerKey("xz -T0"): {"curl"}}

// jobs lists every job once.
func (b *bench) jobs() []job {
	var js []job
	dev := b.devs[0].Path
	js = append(js, job{key: keyDD, group: groupDevice, disks: 1, run: func(ctx context.Context) (Sample, error) {
		s, _, err := measure(ctx, ddCmd(ctx, b.files[Raw], dev))
		return s, err
	}})
	if b.have["fio"] {
		for _, qd := range []int{1, 8} {
			for _, bs := range []string{"1M", "4M"} {
				js = append(js, job{key: fioKey(bs, qd), group: groupDevice, disks: 1, run: func(ctx context.Context) (Sample, error) {
					return b.fio(ctx, dev, bs, qd)
				}})
			}
		}
	}
	js = append(js, job{key: keyDD3, group: groupDevice, disks: 3, run: func(ctx context.Context) (Sample, error) {
		var cmds []*exec.Cmd
		for _, d := range b.devs {
			cmds = append(cmds, ddCmd(ctx, b.files[Raw], d.Path))
		}
		s, _, err := measure(ctx, cmds...)
		return s, err
	}})
	for _, v := range Variants {
		js = append(js, job{key: downloadKey("Go", v), group: groupStage, in: b.sizes[v], run: func(ctx context.Context) (Sample, error) {
			return b.child(ctx, ChildSpec{Mode: ModeDownload, URL: b.url(v)})
		}})
		js = append(js, job{key: hashKey("Go", "sha256", v), group: groupStage, in: b.sizes[v], run: func(ctx context.Context) (Sample, error) {
			return b.child(ctx, ChildSpec{Mode: ModeHash, File: b.files[v], Algo: "sha256", Sum: b.sums[v]["sha256"]})
		}})
		if v != Raw {
			js = append(js, job{key: decodeKey(v), group: groupStage, in: b.sizes[v], run: func(ctx context.Context) (Sample, error) {
				return b.child(ctx, ChildSpec{Mode: ModeDecode, File: b.files[v], Format: decodeFormat(v)})
			}})
		}
	}
	if b.have["curl"] {
		js = append(js, job{key: downloadKey("curl", Raw), group: groupStage, run: func(ctx context.Context) (Sample, error) {
			s, _, err := measure(ctx, exec.CommandContext(ctx, "curl", "-sS", "--fail", "-o", "/dev/null", b.url(Raw)))
			return s, err
		}})
	}
	for _, algo := range []string{"sha512", "md5"} {
		js = append(js, job{key: hashKey("Go", algo, Raw), group: groupStage, run: func(ctx context.Context) (Sample, error) {
			return b.child(ctx, ChildSpec{Mode: ModeHash, File: b.files[Raw], Algo: algo, Sum: b.sums[Raw][algo]})
		}})
	}
	if b.have["openssl"] {
		for _, algo := range []string{"sha256", "sha512", "md5"} {
			js = append(js, job{key: hashKey("openssl", algo, Raw), group: groupStage, run: func(ctx context.Context) (Sample, error) {
				s, runs, err := measure(ctx, exec.CommandContext(ctx, "openssl", "dgst", "-"+algo, "-r", b.files[Raw]))
				if err == nil && !strings.HasPrefix(runs[0].stdout.String(), b.sums[Raw][algo]) {
					err = fmt.Errorf("openssl %s gave %q, want %s", algo, runs[0].stdout.String(), b.sums[Raw][algo])
				}
				return s, err
			}})
		}
	}
	for _, c := range b.cases {
		js = append(js, job{key: agentKey(c), group: groupAgent, disks: c.Disks, run: func(ctx context.Context) (Sample, error) {
			return b.child(ctx, b.writeSpec(c))
		}})
	}
	if b.have["curl"] {
		js = append(js, job{key: peerCurlDD, group: groupPeer, disks: 1, run: func(ctx context.Context) (Sample, error) {
			script := `curl -sS --fail "$1" | dd of="$2" bs=4M iflag=fullblock oflag=direct conv=fsync status=none`
			s, _, err := measure(ctx, exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", script, "bash", b.url(Raw), dev))
			return s, err
		}})
		if b.have["sha256sum"] {
			js = append(js, job{key: peerCurlHashDD, group: groupPeer, disks: 1, run: func(ctx context.Context) (Sample, error) {
				// The hash reads a FIFO in the background; bash waits for
				// it, so its CPU is counted, and checks its digest.
				script := `set -e; d=$(mktemp -d); trap 'rm -rf "$d"' EXIT; mkfifo "$d/f"
sha256sum < "$d/f" > "$d/sum" & h=$!
curl -sS --fail "$1" | tee "$d/f" | dd of="$2" bs=4M iflag=fullblock oflag=direct conv=fsync status=none
wait $h; read -r s _ < "$d/sum"; [ "$s" = "$3" ] || { echo "sha256 $s, want $3" >&2; exit 1; }`
				s, _, err := measure(ctx, exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", script, "bash", b.url(Raw), dev, b.sums[Raw]["sha256"]))
				return s, err
			}})
		}
	}
	for _, v := range Variants {
		for _, tool := range decompressPeers[v] {
			if slices.ContainsFunc(peerTools[DecompressPeerKey(tool)], func(t string) bool { return !b.have[t] }) {
				continue
			}
			// $3 unquoted: a tool and its options, from the table above.
			js = append(js, job{key: DecompressPeerKey(tool), group: groupPeer, disks: 1, run: func(ctx context.Context) (Sample, error) {
				script := `curl -sS --fail "$1" | $3 -dc | dd of="$2" bs=4M iflag=fullblock oflag=direct conv=fsync status=none`
				s, _, err := measure(ctx, exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", script, "bash", b.url(v), dev, tool))
				return s, err
			}})
		}
	}
	for _, p := range []struct {
		key string
		v   Variant
	}{{peerQemuImg, Qcow2}, {peerQemuImgZlib, Qcow2Zlib}} {
		js = append(js, job{key: p.key, group: groupPeer, disks: 1, run: func(ctx context.Context) (Sample, error) {
			s, _, err := measure(ctx, exec.CommandContext(ctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", "-t", "none", "-n", b.files[p.v], dev))
			return s, err
		}})
	}
	return b.needed(js)
}

// needed keeps the jobs the run's cases need: all of them for every case;
// for a subset, the single-disk device jobs (the device limit is the
// fastest of them), the stages of the cases' bounds, three dd at once for
// a fan-out, the cases themselves and the peers doing their jobs.
func (b *bench) needed(js []job) []job {
	if len(b.cases) == len(Cases) {
		return js
	}
	want := map[string]bool{}
	for _, c := range b.cases {
		want[agentKey(c)] = true
		want[downloadKey("Go", c.Variant)] = true
		want[hashKey("Go", c.Algo, c.Variant)] = true
		if c.Variant != Raw {
			want[decodeKey(c.Variant)] = true
		}
		if c.Disks > 1 {
			want[keyDD3] = true
		}
		for peer, id := range peerAgainst {
			if id == c.ID {
				want[peer] = true
			}
		}
	}
	return slices.DeleteFunc(js, func(j job) bool {
		return !want[j.key] && (j.group != groupDevice || j.disks != 1)
	})
}

func ddCmd(ctx context.Context, in, out string) *exec.Cmd {
	return exec.CommandContext(ctx, "dd", "if="+in, "of="+out, "bs=4M", "oflag=direct", "conv=fsync", "status=none")
}

func (b *bench) writeSpec(c Case) ChildSpec {
	var targets []string
	for _, d := range b.devs[:c.Disks] {
		targets = append(targets, d.Path)
	}
	return ChildSpec{Mode: ModeWrite, URL: b.url(c.Variant), Algo: c.Algo, Sum: b.sums[c.Variant][c.Algo], Targets: targets, NoZeroSkip: c.NoZeroSkip}
}

// child runs one job in the agent-side child program.
func (b *bench) child(ctx context.Context, spec ChildSpec) (Sample, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return Sample{}, err
	}
	cmd := exec.CommandContext(ctx, b.cfg.ChildArgs[0], b.cfg.ChildArgs[1:]...)
	cmd.Env = append(os.Environ(), ChildEnv+"="+string(js))
	s, runs, err := measure(ctx, cmd)
	if err != nil {
		return s, err
	}
	res, err := ParseChildResult(runs[0].stdout.Bytes())
	if err != nil {
		return s, fmt.Errorf("%w: %s", err, tail(runs[0].stdout.String()+runs[0].stderr.String(), 2000))
	}
	if res.Err != "" {
		return s, errors.New(res.Err)
	}
	if res.Seconds > 0 {
		s.Seconds = res.Seconds
	}
	if res.Status.HWM > 0 {
		// The child's own VmHWM is exact; sampling may miss its end.
		s.PeakRSSKiB = res.Status.HWM
	}
	s.Child = &res
	return s, nil
}

// fioResult is the part of fio's JSON output the benchmark reads.
type fioResult struct {
	Jobs []struct {
		Write struct {
			IOBytes int64 `json:"io_bytes"`
			Runtime int64 `json:"runtime"` // ms
		} `json:"write"`
	} `json:"jobs"`
}

// fio writes the raw image's size sequentially to dev with direct I/O.
// Its time is fio's own (start-up and buffer set-up left out, like the
// agent's).
func (b *bench) fio(ctx context.Context, dev, bs string, qd int) (Sample, error) {
	cmd := exec.CommandContext(ctx, "fio", "--name=seqwrite", "--filename="+dev, "--rw=write", "--bs="+bs,
		"--iodepth="+strconv.Itoa(qd), "--ioengine=libaio", "--direct=1", "--size="+strconv.FormatInt(b.rawSize, 10),
		"--end_fsync=1", "--output-format=json")
	s, runs, err := measure(ctx, cmd)
	if err != nil {
		return s, err
	}
	var fr fioResult
	if err := json.Unmarshal(runs[0].stdout.Bytes(), &fr); err != nil || len(fr.Jobs) == 0 {
		return s, fmt.Errorf("fio output: %v: %s", err, tail(runs[0].stdout.String(), 500))
	}
	if fr.Jobs[0].Write.IOBytes != b.rawSize {
		return s, fmt.Errorf("fio wrote %d bytes, want %d", fr.Jobs[0].Write.IOBytes, b.rawSize)
	}
	if ms := fr.Jobs[0].Write.Runtime; ms > 0 {
		s.Seconds = float64(ms) / 1000
	}
	return s, nil
}

// profile runs each profiled case once more, untimed, with a CPU and a
// heap profile and memory sampling.
func (b *bench) profile(ctx context.Context, rep *Report) error {
	if err := os.MkdirAll(b.cfg.ProfileDir, 0o755); err != nil {
		return err
	}
	for _, id := range b.cfg.ProfileCases {
		c, ok := caseByID(id)
		if !ok {
			return fmt.Errorf("writebench: no case %q to profile", id)
		}
		spec := b.writeSpec(c)
		spec.CPUProfile = filepath.Join(b.cfg.ProfileDir, id+".cpu.pprof")
		spec.HeapProfile = filepath.Join(b.cfg.ProfileDir, id+".heap.pprof")
		spec.Trace = filepath.Join(b.cfg.ProfileDir, id+".trace")
		spec.SampleMemory = true
		if err := b.prepareDevices(c.Disks); err != nil {
			return err
		}
		b.log.Info("writebench: profiling", "case", id)
		s, err := b.child(ctx, spec)
		if err != nil {
			return fmt.Errorf("writebench: profiling %s: %w", id, err)
		}
		rep.Memory = append(rep.Memory, MemoryRow{Case: c, Sample: s, CPUProfile: spec.CPUProfile, HeapProfile: spec.HeapProfile})
	}
	return nil
}
