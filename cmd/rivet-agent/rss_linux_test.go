package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/agent"
	"github.com/rivetmetal/rivet/internal/hostileimage"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/internal/osimage"
	"github.com/rivetmetal/rivet/internal/syncbuf"
	"github.com/rivetmetal/rivet/wire"
)

// hostile is one image of the RSS test.
type hostile struct {
	name string
	gen  func() io.Reader // the image as served
	// format is image_info's disk_format.
	format string
	// fail is what the failure must say; "" means the image is legal and
	// must be written.
	fail string
	// atCap marks images whose decoding legitimately takes the decoder
	// memory cap.
	atCap bool
	// logHas is a line the agent must log (the path taken).
	logHas string
}

// The ceilings this test holds the agent to: an image the agent refuses,
// or writes without a big decoder (raw, gzip, tidy qcow2), stays under
// baseCeiling; an image that legitimately fills the decoder memory cap
// (a 128 MiB zstd window, two 64 MiB xz dictionaries, xz workers' blocks
// and dictionaries filling their shares of the cap, qcow2 tables up to
// the cap) stays under baseCeiling + the cap: the Go memory limit the
// agent sets (agent.BaseMemory + the cap) plus 32 MiB for what the Go
// runtime does not count (the binary's pages, thread stacks).
const (
	baseCeiling = agent.BaseMemory + 32<<20
	decoderCap  = agent.DefaultMaxDecoderMemory
)

func TestAgentPeakRSSUnderHostileImages(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a few GiB")
	}
	// A sparse 64 GiB disk, so the qcow2 images may declare a virtual
	// size whose tables reach the memory cap.
	disk := loopdev.New(t, 64<<30)
	// The agent as shipped (no race detector, no cgo), in processes of
	// its own.
	bin := buildAgent(t)
	patterned := func(n int64) func() io.Reader {
		return func() io.Reader { return io.LimitReader(hostileimage.Pattern(), n) }
	}
	bytesOf := func(b []byte) func() io.Reader { return func() io.Reader { return bytes.NewReader(b) } }
	hugeVSize := hostileimage.QCOW2{ClusterBits: 16, Size: 64 << 20, Data: map[int64][]byte{0: []byte("x")}}.Build()
	binary.BigEndian.PutUint64(hugeVSize[24:], 1<<50)
	binary.BigEndian.PutUint32(hugeVSize[36:], 1<<21)
	alternate := map[int64][]byte{}
	for g := int64(0); g < 64; g += 2 {
		alternate[g] = bytes.Repeat([]byte{byte(g + 1)}, 512)
	}
	scattered := map[int64][]byte{}
	for i := int64(0); i < 4200; i++ {
		scattered[i*64] = bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 256)
	}
	// A cloud image's layout at its most memory-hungry: every cluster
	// zlib-compressed, and 2 MiB clusters (qcow2's largest), decoded on a
	// worker per core.
	cloud := compressedQcow2(t, 192<<20, 2<<20)
	images := []hostile{
		{name: "raw, 192 MiB (baseline)", gen: patterned(192 << 20), format: "raw"},
		{name: "xz, 4 GiB dictionary, 256 MiB of data", gen: func() io.Reader { return hostileimage.XZReader(256<<20, 40, 8<<20) },
			fail: "LZMA2 dictionary of 4096 MiB"},
		{name: "xz, 128 MiB dictionary, 192 MiB", gen: func() io.Reader { return hostileimage.XZReader(192<<20, 30, 8<<20) },
			fail: "LZMA2 dictionary of 128 MiB"},
		{name: "xz, 64 MiB dictionary (half the cap), 24 blocks, 192 MiB", gen: func() io.Reader { return hostileimage.XZReader(192<<20, 28, 8<<20) }, atCap: true},
		// Blocks that declare their sizes decode in parallel, each worker
		// holding its dictionary and its block: with two workers, each
		// fills its half of the cap.
		{name: "xz, blocks declaring their sizes, 32 MiB dictionary and 30 MiB blocks, 192 MiB",
			gen: func() io.Reader { return hostileimage.XZSizedReader(192<<20, 26, 30<<20) }, atCap: true},
		{name: "zstd, 2 GiB window (--long=31), 256 MiB", gen: func() io.Reader { return hostileimage.ZstdReader(256<<20, 31) },
			fail: "2048 MiB window"},
		{name: "zstd, 512 MiB window (--long=29), 256 MiB", gen: func() io.Reader { return hostileimage.ZstdReader(256<<20, 29) },
			fail: "512 MiB window"},
		{name: "zstd, 128 MiB window (the cap), 192 MiB", gen: func() io.Reader { return hostileimage.ZstdReader(192<<20, 27) }, atCap: true},
		{name: "gzip bomb, 2 GiB of zeros", gen: func() io.Reader { return hostileimage.GzipZeros(2 << 30) }},
		{name: "qcow2, 1 PiB virtual size", gen: bytesOf(hugeVSize), format: "qcow2", fail: "virtual size"},
		{name: "qcow2, L1 of 4 Mi entries for a 64 MiB disk", format: "qcow2", logHas: "path=tables",
			gen: bytesOf(hostileimage.QCOW2{ClusterBits: 16, Size: 64 << 20, L1Entries: 4 << 20, Data: map[int64][]byte{5: []byte("data")}}.Build())},
		{name: "qcow2, 128 L1 entries sharing one L2 table", format: "qcow2", logHas: "path=tables",
			gen: bytesOf(hostileimage.QCOW2{ClusterBits: 12, Size: 256 << 20, SharedL2: true, Data: map[int64][]byte{0: []byte("a"), 7: []byte("b")}}.Build())},
		{name: "qcow2, 4200 L2 tables scattered (over the range-request bound)", format: "qcow2", logHas: "too many random reads",
			gen: bytesOf(hostileimage.QCOW2{ClusterBits: 9, Size: 4200 << 15, L2Gap: 129, Data: scattered}.Build())},
		{name: "qcow2, 60 GiB of 512-byte clusters behind one shared L2 table", format: "qcow2", atCap: true, fail: "more decoder memory than allowed",
			gen: bytesOf(hostileimage.QCOW2{ClusterBits: 9, Size: 60 << 30, SharedL2: true, Data: alternate}.Build())},
		{name: "qcow2, zlib-compressed 2 MiB clusters (qemu-img convert -c), 192 MiB", format: "qcow2", logHas: "path=tables",
			gen: bytesOf(cloud)},
	}
	// Every image is generated once into a file and served from there
	// (with Range support), so serving is fast whatever the generators
	// cost (they are slow under the race detector).
	dir := t.TempDir()
	files := make([]string, len(images))
	sums := make([]string, len(images))
	for i, img := range images {
		files[i] = filepath.Join(dir, strconv.Itoa(i))
		f, err := os.Create(files[i])
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(f, h), img.gen()); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		sums[i] = hex.EncodeToString(h.Sum(nil))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil || i < 0 || i >= len(images) {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, files[i])
	}))
	defer srv.Close()

	var report strings.Builder
	fmt.Fprintf(&report, "| image | outcome | agent peak RSS (VmHWM) | ceiling |\n|---|---|---:|---:|\n")
	for i, img := range images {
		hwm, outcome, logs := runAgentWrite(t, bin, disk.Path, fmt.Sprintf("%s/%d", srv.URL, i), img.format, sums[i])
		if img.logHas != "" && !strings.Contains(logs, img.logHas) {
			t.Errorf("%s: the agent's log does not say %q", img.name, img.logHas)
		}
		ceiling := int64(baseCeiling)
		if img.atCap {
			ceiling += decoderCap
		}
		ok := (img.fail == "" && outcome == "written") || (img.fail != "" && strings.Contains(outcome, img.fail))
		if !ok {
			t.Errorf("%s: %s; want %q", img.name, outcome, map[bool]string{true: "written", false: img.fail}[img.fail == ""])
		}
		if hwm > ceiling {
			t.Errorf("%s: agent peak RSS %.1f MiB over the %d MiB ceiling", img.name, float64(hwm)/(1<<20), ceiling>>20)
		}
		short := outcome
		if len(short) > 90 {
			short = short[:90] + "…"
		}
		fmt.Fprintf(&report, "| %s | %s | %.1f MiB | %d MiB |\n", img.name, short, float64(hwm)/(1<<20), ceiling>>20)
	}
	t.Logf("agent peak RSS per image (decoder cap %d MiB):\n%s", decoderCap>>20, report.String())
}

// compressedQcow2 is a size-byte disk of text with random bytes strewn
// in (it compresses about threefold), as qemu-img convert -c writes it
// with clusterSize clusters.
func compressedQcow2(t *testing.T, size, clusterSize int) []byte {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatal("qemu-img (qemu-utils, installed by scripts/install-deps.sh) is needed")
	}
	raw := bytes.Repeat([]byte("a line of a cloud image's root filesystem, compressed by qemu-img\n"), size/66+1)[:size]
	noise := hostileimage.Pattern()
	for off := 0; off < size; off += 4096 {
		if _, err := io.ReadFull(noise, raw[off:off+1024]); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := osimage.ConvertQcow2(context.Background(), in, out, "-c", "-o", "compression_type=zlib,cluster_size="+strconv.Itoa(clusterSize)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildAgent builds rivet-agent as make build does.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rivet-agent")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOAMD64=v1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runAgentWrite starts a standalone agent process restricted to disk,
// has it write the image through the API (deploy.execute_deploy_step,
// write_image) and returns its peak RSS, "written" or the failure, and
// its log.
func runAgentWrite(t *testing.T, bin, disk, url, format, sum string) (int64, string, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := []string{"--ipa-standalone", "--ipa-listen-host=127.0.0.1", "--ipa-listen-port=" + strconv.Itoa(port),
		"--ipa-block-devices=" + disk, "--ipa-image-download-connection-retries=0", "--ipa-enable-auto-tls=false"}
	cmd := exec.Command(bin, args...)
	logs := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", tail(logs.String(), 4000))
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/v1/status")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("agent exited before it served: %v", cmd.ProcessState)
		default:
		}
		if i == 300 {
			t.Fatalf("agent not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var df any
	if format != "" {
		df = format
	}
	body, _ := json.Marshal(map[string]any{"name": "deploy.execute_deploy_step", "params": map[string]any{
		"step": map[string]any{"interface": "deploy", "step": "write_image", "priority": 80, "args": map[string]any{
			"image_info": map[string]any{"id": "hostile", "urls": []string{url}, "disk_format": df, "os_hash_algo": "sha256", "os_hash_value": sum},
		}},
		"node":           map[string]any{"uuid": "00000000-0000-0000-0000-000000000001", "properties": map[string]any{"root_device": map[string]any{"name": disk}}, "instance_info": map[string]any{}},
		"ports":          []any{},
		"deploy_version": map[string]string{"generic_hardware_manager": "1.2"},
	}})
	resp, err := http.Post(base+"/v1/commands/?wait=true", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var res wire.CommandResult
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	hwm := vmHWM(t, cmd.Process.Pid)
	switch {
	case res.CommandStatus == wire.StatusSucceeded:
		return hwm, "written", logs.String()
	case res.CommandError != nil:
		return hwm, res.CommandError.Type + ": " + res.CommandError.Details, logs.String()
	}
	return hwm, fmt.Sprintf("status %s", res.CommandStatus), logs.String()
}

func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
