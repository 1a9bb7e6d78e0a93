package imagewriter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/hostileimage"
)

// marked fills a file target with a marker, so tests can tell that nothing
// was written.
func marked(t *testing.T, size int64) string {
	t.Helper()
	p := fileTarget(t, size)
	if err := os.WriteFile(p, bytes.Repeat([]byte("untouched"), int(size/9)+1)[:size], 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func untouched(t *testing.T, path string) {
	t.Helper()
	if b := readDevice(t, path, 0, 9); string(b) != "untouched" {
		t.Errorf("%s was written (%q)", path, b)
	}
}

func TestDecoderMemoryCaps(t *testing.T) {
	data := bytes.Repeat([]byte("decoded "), 256<<10) // 2 MiB
	cases := []struct {
		name  string
		image []byte
		limit int64
		want  string // "" means written
	}{
		{"xz 4 GiB dictionary", hostileimage.XZ(data, 40, 1<<20), 0, "LZMA2 dictionary of 4096 MiB"},
		{"xz 256 MiB dictionary, 128 MiB limit", hostileimage.XZ(data, 32, 1<<20), 0, "over the 128 MiB limit"},
		{"xz second block over the limit", append(hostileimage.XZ(data, 18, 1<<20), hostileimage.XZ(data, 36, 1<<20)...), 0, "LZMA2 dictionary"},
		{"xz 128 MiB dictionary (two may be live: 256 MiB)", hostileimage.XZ(data, 30, 1<<20), 0, "over the 128 MiB limit"},
		{"xz 64 MiB dictionary (xz -9), several blocks", hostileimage.XZ(data, 28, 256<<10), 0, ""},
		{"zstd 2 GiB window", hostileimage.Zstd(data, 31), 0, "2048 MiB window"},
		{"zstd 512 MiB window (zstd --long=29)", hostileimage.Zstd(data, 29), 0, "512 MiB window"},
		{"zstd 64 MiB window, 32 MiB limit", hostileimage.Zstd(data, 26), 32 << 20, "64 MiB window"},
		{"zstd 128 MiB window", hostileimage.Zstd(data, 27), 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := marked(t, 8<<20)
			srv := serveBytes(t, tc.image)
			res, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
				Checksum: sha256Of(tc.image), Targets: []string{target}, MaxDecoderMemory: tc.limit, Logger: discardLogger()})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if res.ImageSize != int64(len(data)) {
					t.Errorf("image size %d, want %d", res.ImageSize, len(data))
				}
				if got := readDevice(t, target, 0, len(data)); !bytes.Equal(got, data) {
					t.Fatal("written disk differs")
				}
				return
			}
			if !errors.Is(err, ErrFormat) || !errors.Is(err, ErrMemoryLimit) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v; want ErrFormat + ErrMemoryLimit mentioning %q", err, tc.want)
			}
			if !strings.Contains(tc.name, "second block") {
				untouched(t, target)
			}
		})
	}
}

// noRangeServer serves b whole whatever the request says, as
// python3 -m http.server and many simple image stores do; claimRanges
// makes it say Accept-Ranges: bytes all the same. It counts requests.
func noRangeServer(t *testing.T, b []byte, claimRanges bool) (string, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if claimRanges {
			w.Header().Set("Accept-Ranges", "bytes")
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b)
	}))
	return srv.URL + "/disk.qcow2", &n
}

func TestQcow2WithoutRanges(t *testing.T) {
	data := map[int64][]byte{}
	for g := int64(0); g < 64; g += 3 {
		data[g] = bytes.Repeat([]byte{byte(g + 1)}, 65536)
	}
	tidy := hostileimage.QCOW2{ClusterBits: 16, Size: 16 << 20, Data: data}
	bigData := map[int64][]byte{}
	for g := int64(0); g < 100; g++ {
		bigData[g] = bytes.Repeat([]byte{byte(g + 7)}, 65536)
	}
	dataFirst := hostileimage.QCOW2{ClusterBits: 16, Size: 16 << 20, Data: bigData, DataFirst: true}
	for _, tc := range []struct {
		name   string
		q      hostileimage.QCOW2
		disk   int64
		claim  bool
		path   string
		errSub string
	}{
		{"spooled beyond the virtual size", tidy, 64 << 20, false, "spool", ""},
		{"streamed when there is no room to spool", tidy, 16 << 20, false, "stream", ""},
		{"server claims ranges but ignores them", tidy, 64 << 20, true, "spool", ""},
		{"data before tables is spooled", dataFirst, 64 << 20, false, "spool", ""},
		{"data before tables with no room fails clearly", dataFirst, 16 << 20, false, "stream", "does not serve byte ranges and the target has no room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.q.Build()
			url, _ := noRangeServer(t, file, tc.claim)
			target := marked(t, tc.disk)
			var logs bytes.Buffer
			_, err := Write(context.Background(), Request{Source: Source{URLs: []string{url}, Retry: fastRetry},
				Checksum: sha256Of(file), Targets: []string{target}, Logger: textLogger(&logs)})
			if !strings.Contains(logs.String(), "path="+tc.path) {
				t.Errorf("log does not show path=%s:\n%s", tc.path, logs.String())
			}
			if tc.errSub != "" {
				if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("Write = %v; want ErrFormat with %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := readDevice(t, target, 0, int(tc.q.Size)); !bytes.Equal(got, tc.q.Raw()) {
				t.Fatal("written disk differs from the qcow2 image's disk")
			}
			if tc.path == "spool" {
				if head := readDevice(t, target, tc.q.Size, 4); bytes.Equal(head, []byte("QFI\xfb")) {
					t.Error("the spooled file's header was left on the disk")
				}
			}
		})
	}
}

func TestQcow2HugeVirtualSizeIsRefusedFromTheHeader(t *testing.T) {
	// A small image whose header then claims 1 PiB (and the 16 MiB L1
	// table that needs): nothing past the header may be read.
	file := hostileimage.QCOW2{ClusterBits: 16, Size: 64 << 20, Data: map[int64][]byte{0: []byte("x")}}.Build()
	binary.BigEndian.PutUint64(file[24:], 1<<50)
	binary.BigEndian.PutUint32(file[36:], 1<<21)
	var ranges atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		http.ServeContent(w, r, "x.qcow2", time.Time{}, bytes.NewReader(file))
	}))
	target := marked(t, 64<<20)
	_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
		Checksum: sha256Of(file), Targets: []string{target}, Logger: discardLogger()})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "virtual size") {
		t.Fatalf("Write = %v; want ErrTooLarge for the virtual size", err)
	}
	if n := ranges.Load(); n != 0 {
		t.Fatalf("%d range requests for an image refused by its header", n)
	}
	untouched(t, target)
}

func TestQcow2ScatteredTablesFallBackToOnePass(t *testing.T) {
	data := map[int64][]byte{}
	for i := int64(0); i < 256; i++ {
		data[i*512] = bytes.Repeat([]byte{byte(i)}, 4096) // one cluster per 2 MiB span
	}
	q := hostileimage.QCOW2{ClusterBits: 12, Size: 512 << 20, L2Gap: 32, Data: data}
	file := q.Build()
	var ranges atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		http.ServeContent(w, r, "x.qcow2", time.Time{}, bytes.NewReader(file))
	}))
	target := fileTarget(t, 512<<20)
	var logs bytes.Buffer
	_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
		Checksum: sha256Of(file), Targets: []string{target}, MaxRangeReads: 64, Logger: textLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	if n := ranges.Load(); n > 64 {
		t.Fatalf("%d range requests; the bound is 64", n)
	}
	if !strings.Contains(logs.String(), "path=stream") || !strings.Contains(logs.String(), "too many random reads") {
		t.Errorf("log does not show the fallback:\n%s", logs.String())
	}
	if got := readDevice(t, target, 0, int(q.Size)); !bytes.Equal(got, q.Raw()) {
		t.Fatal("written disk differs")
	}
}

func TestGzipBombIsBoundedByTheDisk(t *testing.T) {
	// 4 GiB of zeros in a few MiB of gzip, generated as it is served:
	// the write stops when the 64 MiB disk is full.
	var served atomic.Int64
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(w, hostileimage.GzipZeros(4<<30))
		served.Add(n)
	}))
	target := fileTarget(t, 64<<20)
	_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
		Checksum: Checksum{Algo: "sha256", Value: strings.Repeat("0", 64)}, Targets: []string{target}, Logger: discardLogger()})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Write = %v; want ErrTooLarge", err)
	}
}

// TestQcow2FromPythonHTTPServer serves a qemu-img image with what users
// have: python3 -m http.server, which ignores Range.
func TestQcow2FromPythonHTTPServer(t *testing.T) {
	for _, tool := range []string{"python3", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
				t.Fatalf("RIVET_REQUIRE_E2E=1 but %s is not installed", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := t.TempDir()
	raw := make([]byte, 20<<20)
	for i := range raw {
		if (i>>16)%3 == 0 {
			raw[i] = byte(i*7 + i>>12)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, b)
	}
	file, err := os.ReadFile(filepath.Join(dir, "disk.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d/disk.qcow2", port)
	for i := 0; ; i++ {
		resp, err := http.Head(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if i == 100 {
			t.Fatalf("python3 -m http.server did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sum := sha256.Sum256(file)
	for _, disk := range []int64{64 << 20, 20 << 20} { // room to spool; none
		target := fileTarget(t, disk)
		var logs bytes.Buffer
		_, err := Write(context.Background(), Request{Source: Source{URLs: []string{url}, Retry: fastRetry},
			Checksum: Checksum{Algo: "sha256", Value: hex.EncodeToString(sum[:])}, Targets: []string{target}, Logger: textLogger(&logs)})
		if err != nil {
			t.Fatalf("%d MiB disk: %v\n%s", disk>>20, err, logs.String())
		}
		if got := readDevice(t, target, 0, len(raw)); !bytes.Equal(got, raw) {
			t.Fatalf("%d MiB disk: written disk differs", disk>>20)
		}
	}
}

func textLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// String is what was written so far, when w is a fmt.Stringer (a
// bytes.Buffer), read under the lock while writers may still write.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(fmt.Stringer).String()
}
