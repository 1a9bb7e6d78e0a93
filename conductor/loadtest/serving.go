package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ServingConfig configures RunServing. Zero values take the defaults.
type ServingConfig struct {
	// Conductor is the rivet-conductor binary (required).
	Conductor string
	// Nginx is the nginx binary serving the same file for comparison
	// (default "nginx" on PATH, or /usr/sbin/nginx).
	Nginx string
	// Size is the image's size in bytes (default 1 GiB).
	Size int64
	// Clients is the number of concurrent downloaders (default 50).
	Clients int
	// Rounds is how many times each server is measured, alternating which
	// goes first (default 3).
	Rounds int
	// Dir holds the image, the conductor's state and nginx's files
	// (default a new temporary directory, removed afterwards).
	Dir string
	// Logger receives progress messages (default slog.Default()).
	Logger *slog.Logger
}

// Servers compared by RunServing.
const (
	ServerRivet = "rivet-conductor"
	ServerNginx = "nginx"
)

// ServingRun is one measurement: every client downloading the whole
// image once from one server.
type ServingRun struct {
	Server string
	Round  int
	// Bytes is what the clients received in all; Took is from the first
	// request until the last byte.
	Bytes int64
	Took  time.Duration
	// ServerCPU is the server's CPU time (nginx: master and workers);
	// ClientCPU the downloaders' (this process's) CPU time; MachineCPU
	// the machine's busy fraction of all its cores.
	ServerCPU, ClientCPU time.Duration
	MachineCPU           float64
	// Load1 is the 1-minute load average just before the run.
	Load1 float64
}

// Throughput is the aggregate rate in bytes per second.
func (r ServingRun) Throughput() float64 { return float64(r.Bytes) / r.Took.Seconds() }

// ServingReport is the outcome of RunServing.
type ServingReport struct {
	Size    int64
	Clients int
	Cores   int
	Runs    []ServingRun
}

// Median returns the median run of server by throughput (the lower
// middle one for an even count).
func (r *ServingReport) Median(server string) ServingRun {
	var rs []ServingRun
	for _, x := range r.Runs {
		if x.Server == server {
			rs = append(rs, x)
		}
	}
	if len(rs) == 0 {
		return ServingRun{Server: server}
	}
	slices.SortFunc(rs, func(a, b ServingRun) int {
		switch {
		case a.Throughput() < b.Throughput():
			return -1
		case a.Throughput() > b.Throughput():
			return 1
		}
		return 0
	})
	return rs[(len(rs)-1)/2]
}

// RunServing measures image serving: one cached image served by
// rivet-conductor (GET /agent_images/<name>, the image cache's route,
// through the API's whole middleware chain) and by nginx with sendfile
// (the same file, hard-linked) to Clients concurrent downloaders on
// loopback, Rounds times each, the order alternating every round.
func RunServing(ctx context.Context, cfg ServingConfig) (*ServingReport, error) {
	if cfg.Conductor == "" {
		return nil, errors.New("loadtest: no conductor binary")
	}
	if cfg.Size <= 0 {
		cfg.Size = 1 << 30
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 50
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Nginx == "" {
		cfg.Nginx = "nginx"
		if _, err := exec.LookPath(cfg.Nginx); err != nil {
			cfg.Nginx = "/usr/sbin/nginx"
		}
	}
	if _, err := exec.LookPath(cfg.Nginx); err != nil {
		return nil, fmt.Errorf("loadtest: nginx not found (scripts/install-deps.sh test or bench installs it): %w", err)
	}
	log := cfg.Logger
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "rivet-servebench-")
		if err != nil {
			return nil, fmt.Errorf("loadtest: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	// nginx's workers may run as another user: let them reach the file.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}

	// The image, in the conductor's image cache (its default place under
	// the state directory) under a cache name, and linked for nginx.
	cacheDir := filepath.Join(dir, "state", "image-cache")
	wwwDir := filepath.Join(dir, "www")
	for _, d := range []string{cacheDir, wwwDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("loadtest: %w", err)
		}
	}
	const name = "0123456789abcdef0123456789abcdef"
	imgPath := filepath.Join(cacheDir, name)
	log.Info("writing the image", "bytes", cfg.Size)
	sum, err := writeRandomFile(imgPath, cfg.Size)
	if err != nil {
		return nil, err
	}
	if err := os.Link(imgPath, filepath.Join(wwwDir, "image")); err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}

	cond, err := startConductor(ctx, Config{Conductor: cfg.Conductor, HeartbeatTimeout: 30 * time.Second}, dir)
	if err != nil {
		return nil, err
	}
	defer cond.stop()
	ngx, err := startNginx(ctx, cfg.Nginx, dir, wwwDir)
	if err != nil {
		return nil, err
	}
	defer ngx.stop()

	urls := map[string]string{ServerRivet: cond.url + "/agent_images/" + name, ServerNginx: ngx.url + "/image"}
	pids := map[string]func() ([]int, error){
		ServerRivet: func() ([]int, error) { return []int{cond.cmd.Process.Pid}, nil },
		ServerNginx: func() ([]int, error) { return processTree(ngx.cmd.Process.Pid) },
	}
	// Both serve the right bytes (and the file is in the page cache).
	for _, s := range []string{ServerRivet, ServerNginx} {
		got, err := downloadSum(ctx, urls[s])
		if err != nil {
			return nil, fmt.Errorf("loadtest: %s: %w", s, err)
		}
		if !bytes.Equal(got, sum) {
			return nil, fmt.Errorf("loadtest: %s served other bytes than the image's", s)
		}
	}

	rep := &ServingReport{Size: cfg.Size, Clients: cfg.Clients}
	for round := range cfg.Rounds {
		order := []string{ServerRivet, ServerNginx}
		if round%2 == 1 {
			order = []string{ServerNginx, ServerRivet}
		}
		for _, s := range order {
			run, err := measureServing(ctx, urls[s], cfg.Clients, cfg.Size, pids[s])
			if err != nil {
				return nil, fmt.Errorf("loadtest: %s, round %d: %w", s, round+1, err)
			}
			run.Server, run.Round = s, round+1
			rep.Cores = runtimeCores()
			log.Info("served", "server", s, "round", round+1, "MiB/s", int(run.Throughput()/(1<<20)),
				"server_cpu", run.ServerCPU.Round(time.Millisecond), "load1", run.Load1)
			rep.Runs = append(rep.Runs, run)
		}
	}
	return rep, nil
}

// writeRandomFile writes size random bytes to path and returns their
// SHA-256.
func writeRandomFile(path string, size int64) ([]byte, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.Reader, size))
	if err := errors.Join(err, f.Close()); err != nil {
		return nil, fmt.Errorf("loadtest: write image: %w", err)
	}
	return h.Sum(nil), nil
}

// downloadSum downloads url once and returns the body's SHA-256.
func downloadSum(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// measureServing has clients download url at once, each over its own
// connection, and times them.
func measureServing(ctx context.Context, url string, clients int, size int64, pids func() ([]int, error)) (ServingRun, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	ps, err := pids()
	if err != nil {
		return ServingRun{}, err
	}
	s0, err := cpuOf(ps)
	if err != nil {
		return ServingRun{}, err
	}
	c0, err := cpuOf([]int{os.Getpid()})
	if err != nil {
		return ServingRun{}, err
	}
	m0, err := machineCPU()
	if err != nil {
		return ServingRun{}, err
	}
	load1, _ := loadavg()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		first error
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := download(ctx, c, url)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err == nil && n != size {
				err = fmt.Errorf("got %d bytes of %d", n, size)
			}
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if first != nil {
		return ServingRun{}, first
	}
	s1, err := cpuOf(ps)
	if err != nil {
		return ServingRun{}, err
	}
	c1, err := cpuOf([]int{os.Getpid()})
	if err != nil {
		return ServingRun{}, err
	}
	m1, err := machineCPU()
	if err != nil {
		return ServingRun{}, err
	}
	return ServingRun{Bytes: total, Took: took, ServerCPU: s1 - s0, ClientCPU: c1 - c0,
		MachineCPU: m1.busyFraction(m0), Load1: load1}, nil
}

// download reads url's body to the end in large reads and returns its
// length.
func download(ctx context.Context, c *http.Client, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// startNginx starts nginx in the foreground on a free 127.0.0.1 port,
// serving root with sendfile, as Debian's default configuration does,
// with as many workers as cores and no access log.
func startNginx(ctx context.Context, bin, dir, root string) (*server, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`%sdaemon off;
worker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	default_type application/octet-stream;
	client_body_temp_path %[2]s/tmp/body;
	proxy_temp_path %[2]s/tmp/proxy;
	fastcgi_temp_path %[2]s/tmp/fastcgi;
	uwsgi_temp_path %[2]s/tmp/uwsgi;
	scgi_temp_path %[2]s/tmp/scgi;
	server {
		listen %[3]s;
		root %[4]s;
	}
}
`, user, prefix, addr, root)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	logPath := filepath.Join(prefix, "stderr.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-p", prefix, "-c", confPath, "-e", filepath.Join(prefix, "error.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	return startServer(ctx, "nginx", cmd, "http://"+addr, logPath, syscall.SIGQUIT, 30*time.Second,
		func(url string) (bool, error) {
			resp, err := http.Head(url + "/image")
			if err != nil {
				return false, nil
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false, fmt.Errorf("nginx answers HTTP %d for the image (logs in %s)", resp.StatusCode, prefix)
			}
			return true, nil
		})
}

// runtimeCores is the machine's number of CPUs, as /proc/stat lists them.
func runtimeCores() int {
	s, err := machineCPU()
	if err != nil {
		return 0
	}
	return s.cores
}
