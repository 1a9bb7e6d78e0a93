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
	"log/slog"
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

	"github.com/klauspost/compress/zstd"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"golang.org/x/sys/unix"
)

// fastRetry keeps the retry policy's shape with test-sized waits.
var fastRetry = Retry{Attempts: 3, Interval: 10 * time.Millisecond}

// testImage is random data with an unaligned tail, so both the O_DIRECT path
// and the buffered tail path are exercised.
func testImage(t *testing.T, size int) ([]byte, Checksum) {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b, sha256Of(b)
}

func sha256Of(b []byte) Checksum {
	s := sha256.Sum256(b)
	return Checksum{Algo: "sha256", Value: hex.EncodeToString(s[:])}
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func serveBytes(t *testing.T, b []byte) *httptest.Server {
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "image", time.Time{}, bytes.NewReader(b))
	}))
}

func readDevice(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// fillDevice writes n bytes of old data, all b, to the device at path.
func fillDevice(t *testing.T, path string, b byte, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte{b}, n)); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		t.Fatal(err)
	}
}

// fileTarget is a sparse regular file standing in for a disk where the test
// is about the source, not the device.
func fileTarget(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteRawToLoopDevice(t *testing.T) {
	img, _ := testImage(t, 40<<20+1234)
	copy(img[8<<20:], make([]byte, 12<<20)) // a zero run the device zeroes instead
	sum := sha256Of(img)
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
		Verify:           true,
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
	if res.Size != int64(len(img)) || res.Checksum != sum || res.URL != srv.URL+"/image.raw" || res.Format != FormatRaw || res.Decode != nil {
		t.Fatalf("result = %+v", res)
	}
	for _, ph := range []string{PhaseConnect, PhaseDownload, PhaseWrite, PhaseFlush, PhaseVerify, PhasePrepare} {
		if _, ok := res.Timings[ph]; !ok {
			t.Errorf("no timing for phase %s: %v", ph, res.Timings)
		}
	}
	d := res.Disks[0]
	if d.Skipped < 11<<20 || d.Written+d.Skipped != int64(len(img)) || d.Verified < int64(len(img)) {
		t.Errorf("disk result = %+v; want ≥ 11 MiB skipped, written+skipped = %d, all verified", d, len(img))
	}
	if got := readDevice(t, loop.Path, 0, len(img)); !bytes.Equal(got, img) {
		t.Fatal("device content differs from the image")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 || last.Phase != PhaseDone || last.BytesWritten+last.BytesSkipped != int64(len(img)) || last.TotalBytes != int64(len(img)) {
		t.Fatalf("final progress = %+v after %d calls", last, calls)
	}
}

func TestWriteFanOutToSeveralDisks(t *testing.T) {
	img, sum := testImage(t, 24<<20)
	loops := []*loopdev.Device{loopdev.New(t, 32<<20), loopdev.New(t, 32<<20), loopdev.New(t, 48<<20)}
	srv := serveBytes(t, img)
	req := Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sum, BufferSize: 1 << 20, Buffers: 4, ParallelStreams: 3}
	for _, l := range loops {
		req.Targets = append(req.Targets, l.Path)
	}
	res, err := Write(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Disks) != 3 {
		t.Fatalf("disks = %+v", res.Disks)
	}
	for _, l := range loops {
		if !bytes.Equal(readDevice(t, l.Path, 0, len(img)), img) {
			t.Fatalf("%s content differs", l.Path)
		}
	}
}

func TestWriteFileURLAndSecondURL(t *testing.T) {
	img, sum := testImage(t, 3<<20+7)
	src := filepath.Join(t.TempDir(), "img.raw")
	if err := os.WriteFile(src, img, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := fileTarget(t, 8<<20)
	missing := serve(t, http.NotFoundHandler())
	res, err := Write(context.Background(), Request{
		Source:   Source{URLs: []string{missing.URL + "/gone.raw", "file://" + src}, Retry: fastRetry},
		Checksum: sum, Targets: []string{dst},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.URL != "file://"+src {
		t.Fatalf("served by %s", res.URL)
	}
	if !bytes.Equal(readDevice(t, dst, 0, len(img)), img) {
		t.Fatal("file target content differs")
	}
}

// faulty serves an image and misbehaves in one way; Range requests are
// honoured unless noRange is set.
type faulty struct {
	img     []byte
	fault   func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool // true: handled
	noRange bool
	mu      sync.Mutex
	reqs    int
	ranges  []string
}

func (f *faulty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs++
	n := f.reqs
	f.ranges = append(f.ranges, r.Header.Get("Range"))
	f.mu.Unlock()
	if f.fault != nil && f.fault(f, n, w, r) {
		return
	}
	if f.noRange {
		r.Header.Del("Range")
	}
	http.ServeContent(w, r, "image", time.Time{}, bytes.NewReader(f.img))
}

// cutAt serves the requested range (or all) but drops the connection once
// the absolute offset reaches at.
func cutAt(f *faulty, w http.ResponseWriter, r *http.Request, at int) {
	start := 0
	if rg := r.Header.Get("Range"); rg != "" && !f.noRange {
		start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(f.img)-1, len(f.img)))
		w.Header().Set("Content-Length", strconv.Itoa(len(f.img)-start))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Content-Length", strconv.Itoa(len(f.img)))
	}
	if at > start {
		w.Write(f.img[start:at])
	}
	hijackClose(w)
}

func hijackClose(w http.ResponseWriter) {
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

// TestWriteFaults runs the fault-injecting server: every fault ends in a
// clear failure of the right class, or in success through a resume, with
// the right bytes on disk. Never a success on bad data.
func TestWriteFaults(t *testing.T) {
	img, sum := testImage(t, 6<<20)
	const mib = 1 << 20
	cases := []struct {
		name    string
		fault   func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool
		noRange bool
		sum     Checksum
		class   error  // nil: must succeed
		msg     string // in the error
		resumes bool   // success needs a resume
	}{
		{name: "404 names the URL", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool { http.NotFound(w, r); return true },
			class: ErrDownload, msg: "/image.raw: HTTP 404"},
		{name: "5xx twice then served", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			if n <= 2 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return true
			}
			return false
		}},
		{name: "5xx always", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, "boom", 500)
			return true
		}, class: ErrDownload, msg: "HTTP 500"},
		{name: "reset mid-stream once resumes with Range", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			if n == 1 {
				cutAt(f, w, r, 2*mib+17)
				return true
			}
			return false
		}, resumes: true},
		{name: "reset every MiB still makes progress", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			start := 0
			if rg := r.Header.Get("Range"); rg != "" {
				start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			}
			if start+mib < len(f.img) {
				cutAt(f, w, r, start+mib)
				return true
			}
			return false
		}, resumes: true},
		{name: "reset on a server without Range restarts and skips", noRange: true, fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			if n == 1 {
				cutAt(f, w, r, 3*mib)
				return true
			}
			return false
		}, resumes: true},
		{name: "truncated at the same byte every time", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			cutAt(f, w, r, 4*mib)
			return true
		}, class: ErrTruncated, msg: fmt.Sprintf("ended after %d of %d bytes", 4*mib, 6*mib)},
		{name: "declared length too short: the hash catches it", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Length", strconv.Itoa(len(f.img)-100))
			w.Write(f.img[:len(f.img)-100])
			return true
		}, class: ErrChecksum, msg: "expected"},
		{name: "declared length too long", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			if r.Header.Get("Range") != "" {
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return true
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(f.img)+100))
			w.Write(f.img)
			hijackClose(w)
			return true
		}, class: ErrTruncated, msg: "416"},
		{name: "wrong checksum", sum: Checksum{"sha256", strings.Repeat("0", 64)}, class: ErrChecksum, msg: "expected 0000"},
		{name: "slow drip", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Length", strconv.Itoa(len(f.img)))
			for i := 0; i < len(f.img); i += 256 << 10 {
				w.Write(f.img[i:min(i+256<<10, len(f.img))])
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
			return true
		}},
		{name: "stalls once, resumes after the read-gap timeout", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			if n > 1 {
				return false
			}
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Content-Length", strconv.Itoa(len(f.img)))
			w.Write(f.img[:mib])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return true
		}, resumes: true},
		{name: "stalls always", fault: func(f *faulty, n int, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Length", strconv.Itoa(len(f.img)))
			w.Write(f.img[:4096])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return true
		}, class: ErrDownload, msg: "no data for 300ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := fileTarget(t, 8<<20)
			f := &faulty{img: img, fault: c.fault, noRange: c.noRange}
			srv := serve(t, f)
			want := sum
			if c.sum.Value != "" {
				want = c.sum
			}
			res, err := Write(context.Background(), Request{
				Source:   Source{URLs: []string{srv.URL + "/image.raw"}, ReadGapTimeout: 300 * time.Millisecond, Retry: fastRetry},
				Checksum: want, Targets: []string{dst}, BufferSize: 1 << 20,
			})
			if c.class == nil {
				if err != nil {
					t.Fatalf("err = %v; want success (requests %v)", err, f.ranges)
				}
				if c.resumes && res.Resumes == 0 {
					t.Errorf("succeeded without a resume: %+v", res)
				}
				if !bytes.Equal(readDevice(t, dst, 0, len(img)), img) {
					t.Fatal("disk content differs")
				}
				return
			}
			if !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v; want %v containing %q", err, c.class, c.msg)
			}
			if res != nil {
				t.Fatalf("a failed write returned a result: %+v", res)
			}
			if head := readDevice(t, dst, 0, 1<<20); !bytes.Equal(head, make([]byte, 1<<20)) {
				t.Fatal("a failed write left the image's first MiB on the disk")
			}
		})
	}
}

func TestWriteImageLargerThanDiskWritesNothing(t *testing.T) {
	img, sum := testImage(t, 9<<20)
	loop := loopdev.New(t, 8<<20)
	marker := bytes.Repeat([]byte("old"), 1000)
	if err := os.WriteFile(loop.File, marker, 0o644); err != nil { // the backing file, before the device sees it
		t.Fatal(err)
	}
	srv := serveBytes(t, img)
	_, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sum, Targets: []string{loop.Path}})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("err = %v", err)
	}
	if got := readDevice(t, loop.Path, 0, len(marker)); !bytes.Equal(got, marker) {
		t.Fatal("the device was changed although the image cannot fit")
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
	dst := fileTarget(t, 8<<20)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := Write(ctx, Request{Source: Source{URLs: []string{srv.URL}}, Checksum: sum, Targets: []string{dst}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
}

func TestWriteChecksumFileURL(t *testing.T) {
	img, sum := testImage(t, 2<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("/images/disk.raw", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "disk.raw", time.Time{}, bytes.NewReader(img))
	})
	mux.HandleFunc("/images/SHA256SUMS", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s  other.raw\n%s *disk.raw\n", strings.Repeat("1", 64), sum.Value)
	})
	mux.HandleFunc("/images/CHECKSUM", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# CentOS style\nSHA256 (disk.raw) = %s\n", sum.Value)
	})
	srv := serve(t, mux)
	for _, file := range []string{"SHA256SUMS", "CHECKSUM"} {
		got, err := FetchChecksum(context.Background(), Source{Retry: fastRetry}, srv.URL+"/images/"+file, srv.URL+"/images/disk.raw", ChecksumOptions{})
		if err != nil || got != sum {
			t.Fatalf("%s: FetchChecksum = %v, %v; want %v", file, got, err, sum)
		}
	}
	if _, err := FetchChecksum(context.Background(), Source{Retry: fastRetry}, srv.URL+"/images/SHA256SUMS", srv.URL+"/images/missing.raw", ChecksumOptions{}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("image not in the file: %v", err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestWriteCompressedZeroRunsOverOldData writes gzip and zstd images with
// zero runs (one starting unaligned, and a zero tail) over a disk full of
// old bytes: the zero runs the decoder hands over whole are zeroed by the
// device without being copied, and every byte must read back as the image.
func TestWriteCompressedZeroRunsOverOldData(t *testing.T) {
	img, _ := testImage(t, 24<<20+512)
	clear(img[4<<20+1000 : 12<<20])
	clear(img[14<<20:])
	for _, tc := range []struct {
		format     Format
		noZeroSkip bool
	}{{FormatZstd, false}, {FormatGzip, false}, {FormatZstd, true}} {
		t.Run(fmt.Sprintf("%s/noZeroSkip=%v", tc.format, tc.noZeroSkip), func(t *testing.T) {
			served := compressed(t, tc.format, img)
			loop := loopdev.New(t, 32<<20)
			fillDevice(t, loop.Path, 0xa5, 32<<20)
			srv := serveBytes(t, served)
			res, err := Write(context.Background(), Request{
				Source: Source{URLs: []string{srv.URL}, Retry: fastRetry}, Checksum: sha256Of(served),
				Targets: []string{loop.Path}, BufferSize: 1 << 20, Verify: true, NoZeroSkip: tc.noZeroSkip,
			})
			if err != nil {
				t.Fatal(err)
			}
			d := res.Disks[0]
			if res.Format != tc.format || res.ImageSize != int64(len(img)) || d.Written+d.Skipped != int64(len(img)) || d.Verified < int64(len(img)) {
				t.Fatalf("result = %+v, disk %+v; want %d image bytes, all written or skipped and verified", res, d, len(img))
			}
			if tc.noZeroSkip && d.Skipped != 0 || !tc.noZeroSkip && d.Skipped < 17<<20 {
				t.Fatalf("skipped %d bytes; want %v", d.Skipped, map[bool]string{true: "none", false: "≥ 17 MiB"}[tc.noZeroSkip])
			}
			if got := readDevice(t, loop.Path, 0, len(img)); !bytes.Equal(got, img) {
				t.Fatal("device content differs from the image")
			}
		})
	}
}

// TestWriteZstdLeavesFrameChecksumsToTheImageChecksum: the writer does not
// compute the zstd frames' XXH64, because the image's own checksum covers
// the bytes it would be computed from. A frame whose XXH64 is wrong, served
// with an image checksum of those very bytes, is written exactly; a payload
// changed in transit, which XXH64 would have caught, fails the image
// checksum, and the disk keeps nothing of it.
func TestWriteZstdLeavesFrameChecksumsToTheImageChecksum(t *testing.T) {
	img, _ := testImage(t, 6<<20)
	good := compressed(t, FormatZstd, img)
	var h zstd.Header
	if err := h.Decode(good); err != nil || !h.HasCheckSum {
		t.Fatalf("test stream: header %+v, %v; want a frame with a checksum", h, err)
	}

	wrongXXH := bytes.Clone(good)
	for i := len(wrongXXH) - 4; i < len(wrongXXH); i++ {
		wrongXXH[i] ^= 0xff
	}
	loop := loopdev.New(t, 8<<20)
	srv := serveBytes(t, wrongXXH)
	res, err := Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
		Checksum: sha256Of(wrongXXH), Targets: []string{loop.Path}})
	if err != nil {
		t.Fatalf("a frame with a wrong XXH64 whose bytes the image checksum vouches for: %v", err)
	}
	if res.Format != FormatZstd || !bytes.Equal(readDevice(t, loop.Path, 0, len(img)), img) {
		t.Fatalf("result %+v; the device does not hold the image", res)
	}

	// One byte changed inside a block's data: the stream still decodes,
	// to other bytes.
	changed := bytes.Clone(good)
	dec, err := zstd.NewReader(nil, zstd.IgnoreChecksum(true))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for at := len(changed) / 2; ; at += 1000 {
		if at >= len(changed)-8 {
			t.Fatal("no byte of the stream changes its output without a decoding error")
		}
		changed[at] ^= 0x01
		if out, err := dec.DecodeAll(changed, nil); err == nil && len(out) == len(img) && !bytes.Equal(out, img) {
			break
		}
		changed[at] ^= 0x01
	}
	loop = loopdev.New(t, 8<<20)
	srv = serveBytes(t, changed)
	res, err = Write(context.Background(), Request{Source: Source{URLs: []string{srv.URL}, Retry: fastRetry},
		Checksum: sha256Of(good), Targets: []string{loop.Path}})
	if !errors.Is(err, ErrChecksum) || res != nil {
		t.Fatalf("a payload changed in transit: result %+v, err %v; want ErrChecksum and no result", res, err)
	}
	if head := readDevice(t, loop.Path, 0, 1<<20); !bytes.Equal(head, make([]byte, 1<<20)) {
		t.Fatal("a failed write left the image's first MiB on the disk")
	}
}
