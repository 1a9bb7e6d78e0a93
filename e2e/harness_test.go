package e2e

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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// artefacts are the files `make test` builds before the tests run.
type artefacts struct {
	kernel, ramdisk, image, conductor, cli string
}

func needArtefacts(t *testing.T) artefacts {
	t.Helper()
	root := vmtest.RepoRoot(t)
	vmtest.QEMU(t)
	a := artefacts{
		kernel:    vmtest.Kernel(t),
		ramdisk:   filepath.Join(root, "build/initramfs-virtual.cpio.zst"),
		image:     filepath.Join(root, "build/testimage/disk.raw"),
		conductor: filepath.Join(root, "build/bin/rivet-conductor"),
		cli:       filepath.Join(root, "build/bin/rivet"),
	}
	for _, f := range []string{a.ramdisk, a.image, a.conductor, a.cli} {
		if _, err := os.Stat(f); err != nil {
			vmtest.Unavailable(t, "%s is missing: run `make test` (it builds the ramdisk, the test image and the binaries)", f)
		}
	}
	return a
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// logTo copies lines of r to t.Log with a prefix, and to file.
func logTo(t *testing.T, prefix string, r io.Reader, file io.Writer, wg *sync.WaitGroup) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintln(file, sc.Text())
		t.Logf("%s %s", prefix, sc.Text())
	}
}

// conductorProc is a running rivet-conductor.
type conductorProc struct {
	url      string
	stateDir string
	cli      string
}

// startConductor runs the real conductor binary on a loopback port until the
// test ends, and waits for its API. extraArgs are appended to the flags every
// e2e conductor gets.
func startConductor(t *testing.T, a artefacts, imageDir string, extraArgs ...string) *conductorProc {
	t.Helper()
	// QEMU's QMP socket path must stay short: a temp dir under /tmp.
	stateDir, err := os.MkdirTemp("/tmp", "rivet-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--state-dir", stateDir,
		"--image-dir", imageDir,
		"--deploy-kernel", a.kernel,
		"--deploy-ramdisk", a.ramdisk,
		"--ramdisk-heartbeat-timeout", "20s",
		"--deploy-callback-timeout", "10m",
		// Cleaning costs a QEMU boot per provide: off unless a test asks
		// for it (a later --automated-clean in extraArgs wins).
		"--automated-clean=false",
	}, extraArgs...)
	cmd := exec.CommandContext(ctx, a.conductor, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	logFile, err := os.Create(filepath.Join(stateDir, "conductor.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go logTo(t, "conductor:", out, logFile, &wg)
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		wg.Wait()
		logFile.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url + "/v1")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("conductor API not up after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &conductorProc{url: url, stateDir: stateDir, cli: a.cli}
}

// rivet runs the CLI against the conductor and returns its stdout; a
// non-zero exit fails the test.
func (c *conductorProc) rivet(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := c.rivetErr(timeout, args...)
	if err != nil {
		t.Fatalf("rivet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *conductorProc) rivetErr(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.cli, append([]string{"--url", c.url}, args...)...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// node reads a node document through the CLI's JSON output.
func (c *conductorProc) node(t *testing.T, name string) map[string]any {
	t.Helper()
	out := c.rivet(t, 30*time.Second, "-o", "json", "node", "show", name)
	var n map[string]any
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		t.Fatalf("node show %s: %v: %s", name, err, out)
	}
	return n
}
