package imagewriter

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/loopdev"
	"golang.org/x/sys/unix"
)

// testImage is random data with an unaligned tail, so both the O_DIRECT path
// and the buffered tail path are exercised.
func testImage(t *testing.T, size int) ([]byte, Checksum) {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return b, Checksum{Algo: "sha256", Value: hex.EncodeToString(s[:])}
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func serveBytes(t *testing.T, b []byte) *httptest.Server {
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "image.raw", time.Time{}, bytes.NewReader(b))
	}))
}

func readDevice(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteRawToLoopDevice(t *testing.T) {
	img, sum := testImage(t, 40<<20+1234)
	loop := loopdev.New(t, 64<<20)
	srv := serveBytes(t, img)
	var mu sync.Mutex
	var last Progress
	calls := 0
	res, err := Write(context.Background(), Request{
		Source:           Source{URLs: []string{srv.URL + "/image.raw"}},
		Checksum:         sum,
		Targets:          []string{loop.Path},
		BufferSize:       1 << 20,
		ProgressInterval: 10 * time.Millisecond,
		Progress: func(p Progress) {
			mu.Lock()
			last, calls = p, calls+1
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != int64(len(img)) || res.Checksum != sum || res.URL != srv.URL+"/image.raw" {
		t.Fatalf("result = %+v", res)
	}
	for _, ph := range []string{PhaseConnect, PhaseDownload, PhaseWrite, PhaseFlush, PhaseVerify} {
		if _, ok := res.Timings[ph]; !ok {
			t.Errorf("no timing for phase %s: %v", ph, res.Timings)
		}
	}
	if got := readDevice(t, loop.Path, len(img)); !bytes.Equal(got, img) {
		t.Fatal("device content differs from the image")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 || last.Phase != PhaseDone || last.BytesWritten != int64(len(img)) || last.TotalBytes != int64(len(img)) {
		t.Fatalf("final progress = %+v after %d calls", last, calls)
	}
}

func TestWriteFanOutToSeveralDisks(t *testing.T) {
	img, sum := testImage(t, 24<<20)
	loops := []*loopdev.Device{loopdev.New(t, 32<<20), loopdev.New(t, 32<<20), loopdev.New(t, 48<<20)}
	srv := serveBytes(t, img)
	req := Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sum, BufferSize: 1 << 20, Buffers: 4}
	for _, l := range loops {
		req.Targets = append(req.Targets, l.Path)
	}
	if _, err := Write(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for _, l := range loops {
		if !bytes.Equal(readDevice(t, l.Path, len(img)), img) {
			t.Fatalf("%s content differs", l.Path)
		}
	}
}

func TestWriteFileURLAndSecondURL(t *testing.T) {
	img, sum := testImage(t, 3<<20+7)
	dir := t.TempDir()
	src := filepath.Join(dir, "img.raw")
	if err := os.WriteFile(src, img, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "disk")
	if err := os.WriteFile(dst, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := serve(t, http.NotFoundHandler())
	res, err := Write(context.Background(), Request{
		Source:   Source{URLs: []string{missing.URL + "/gone.raw", "file://" + src}},
		Checksum: sum, Targets: []string{dst},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.URL != "file://"+src {
		t.Fatalf("served by %s", res.URL)
	}
	if !bytes.Equal(readDevice(t, dst, len(img)), img) {
		t.Fatal("file target content differs")
	}
}

// faults are the ways a server can misbehave; each must fail the write with
// the right class and a message naming the cause.
func TestWriteFaults(t *testing.T) {
	img, sum := testImage(t, 6<<20)
	cases := []struct {
		name    string
		handler http.HandlerFunc
		sum     Checksum
		gap     time.Duration
		class   error
		msg     string
	}{
		{"404 names the URL", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			sum, 0, ErrDownload, "/image.raw: HTTP 404"},
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) },
			sum, 0, ErrDownload, "HTTP 500"},
		{"wrong checksum", func(w http.ResponseWriter, r *http.Request) { w.Write(img) },
			Checksum{"sha256", strings.Repeat("0", 64)}, 0, ErrChecksum, "expected 0000"},
		{"truncated body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(img)))
			w.Write(img[:len(img)/2])
			hijackClose(w)
		}, sum, 0, ErrTruncated, fmt.Sprintf("of %d bytes", len(img))},
		{"reset mid-stream, no length", func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush()
			w.Write(img[:1<<20])
			w.(http.Flusher).Flush()
			hijackClose(w)
		}, sum, 0, ErrTruncated, ""},
		{"wrong length: a short declared length ends cleanly, the hash catches it", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(img)-100))
			w.Write(img[:len(img)-100])
		}, sum, 0, ErrChecksum, "expected"},
		{"body longer than its length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(img)-100))
			w.Write(img)
		}, sum, 0, ErrTruncated, ""},
		{"stalled server", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(img)))
			w.Write(img[:4096])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, sum, 300 * time.Millisecond, ErrDownload, "no data for 300ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "disk")
			if err := os.WriteFile(dst, make([]byte, 8<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			srv := serve(t, c.handler)
			_, err := Write(context.Background(), Request{
				Source: Source{URLs: []string{srv.URL + "/image.raw"}}, Checksum: c.sum,
				Targets: []string{dst}, ReadGapTimeout: c.gap, BufferSize: 1 << 20,
			})
			if !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v; want %v containing %q", err, c.class, c.msg)
			}
		})
	}
}

func hijackClose(w http.ResponseWriter) {
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestWriteImageLargerThanDiskWritesNothing(t *testing.T) {
	img, sum := testImage(t, 9<<20)
	loop := loopdev.New(t, 8<<20)
	srv := serveBytes(t, img)
	_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sum, Targets: []string{loop.Path}})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("err = %v", err)
	}
	if got := readDevice(t, loop.Path, 1<<20); !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Fatal("device was written although the image cannot fit")
	}
	// Without a Content-Length the size is found out while streaming.
	chunked := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		w.Write(img)
	}))
	_, err = Write(context.Background(), Request{Source: Source{URLs: []string{chunked.URL}}, Checksum: sum, Targets: []string{loop.Path}, BufferSize: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("chunked oversize: %v", err)
	}
}

func TestWriteRefusesMountedDevice(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	loop := loopdev.New(t, 32<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", loop.Path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v: %s", err, out)
	}
	mnt := t.TempDir()
	if err := unix.Mount(loop.Path, mnt, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, 0)
	img, sum := testImage(t, 1<<20)
	srv := serveBytes(t, img)
	_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sum, Targets: []string{loop.Path}})
	if !errors.Is(err, ErrTarget) || !errors.Is(err, unix.EBUSY) {
		t.Fatalf("writing a mounted device: %v", err)
	}
}

func TestWriteCancel(t *testing.T) {
	img, sum := testImage(t, 4<<20)
	started := make(chan struct{})
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(img)))
		w.Write(img[:1<<20])
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
	}))
	dst := filepath.Join(t.TempDir(), "disk")
	os.WriteFile(dst, make([]byte, 8<<20), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := Write(ctx, Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sum, Targets: []string{dst}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
}
