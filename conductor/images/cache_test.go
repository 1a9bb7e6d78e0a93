package images

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hostpath"
)

// imageServer serves one image with Range support, counting the bytes it
// sends and the range requests it gets; cut, when set, makes the first
// full GET stop after that many bytes (a dropped connection).
type imageServer struct {
	srv    *httptest.Server
	data   []byte
	sent   atomic.Int64
	ranges atomic.Int64
	cut    atomic.Int64
}

func newImageServer(t *testing.T, data []byte) *imageServer {
	s := &imageServer{data: data}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/disk.img.SHA256SUMS":
			sum := sha256.Sum256(data)
			fmt.Fprintf(w, "0000000000000000000000000000000000000000000000000000000000000000  other.img\n%s *disk.img\n", hex.EncodeToString(sum[:]))
			return
		case "/disk.img.BSD":
			sum := sha256.Sum256(data)
			fmt.Fprintf(w, "SHA256 (disk.img) = %s\n", hex.EncodeToString(sum[:]))
			return
		case "/disk.img":
		default:
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Range") != "" {
			s.ranges.Add(1)
		}
		if cut := s.cut.Swap(0); cut > 0 && r.Method == http.MethodGet && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Header().Set("Accept-Ranges", "bytes")
			w.WriteHeader(http.StatusOK)
			s.sent.Add(cut)
			w.Write(data[:cut])
			// Drop the connection mid-body.
			hj, _ := w.(http.Hijacker)
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		cw := &countingWriter{ResponseWriter: w, n: &s.sent}
		http.ServeContent(cw, r, "disk.img", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

// Write counts p before handing it on: the client can have read the last
// bytes (and the test checked the count) before the inner Write returns.
func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return w.ResponseWriter.Write(p)
}

func testData() []byte { return bytes.Repeat([]byte("rivet-cache-0123"), 64<<10) } // 1 MiB

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func newCache(t *testing.T) (*Cache, string) {
	return newCacheWith(t, CacheConfig{})
}

// newCacheWith opens a cache in a fresh directory with cfg (its Dir set
// here) and closes it when the test ends.
func newCacheWith(t *testing.T, cfg CacheConfig) (*Cache, string) {
	t.Helper()
	cfg.Dir = t.TempDir()
	c, err := NewCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cfg.Dir
}

// cachedFiles lists a cache directory but its naming key.
func cachedFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != nameKeyFile {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestResolvePassesHTTPThrough(t *testing.T) {
	c, dir := newCache(t)
	ii := map[string]any{"image_source": "http://img.example/disk.raw", "image_checksum": strings.Repeat("a", 64)}
	r, err := c.Resolve(context.Background(), ii, "http://127.0.0.1:6385")
	u := r.URL
	if err != nil || u != "http://img.example/disk.raw" {
		t.Fatalf("Resolve = %q, %v", u, err)
	}
	if entries := cachedFiles(t, dir); len(entries) != 0 {
		t.Fatalf("pass-through image was cached: %v", entries)
	}
}

func TestCacheDownloadsVerifiesOnceAndServes(t *testing.T) {
	data := testData()
	s := newImageServer(t, data)
	c, _ := newCache(t)
	ii := map[string]any{"image_source": s.srv.URL + "/disk.img", "image_download_source": "http",
		"image_os_hash_algo": "sha256", "image_os_hash_value": sha(data)}
	ctx := context.Background()

	// Concurrent requests share one download.
	var wg sync.WaitGroup
	urls := make([]string, 4)
	errs := make([]error, 4)
	for i := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r Resolved
			r, errs[i] = c.Resolve(ctx, ii, "http://127.0.0.1:6385/")
			urls[i] = r.URL
		}()
	}
	wg.Wait()
	for i := range urls {
		if errs[i] != nil || urls[i] != urls[0] || !strings.HasPrefix(urls[i], "http://127.0.0.1:6385/agent_images/") {
			t.Fatalf("ImageURL[%d] = %q, %v", i, urls[i], errs[i])
		}
	}
	if got := s.sent.Load(); got != int64(len(data)) {
		t.Fatalf("source sent %d bytes for 4 concurrent requests, want %d (one download)", got, len(data))
	}
	// A second call neither downloads nor re-hashes: the source is not
	// contacted at all.
	s.srv.Close()
	if r, err := c.Resolve(ctx, ii, "http://127.0.0.1:6385"); err != nil || r.URL != urls[0] || !r.Cached || r.Algo == "" || r.Checksum == "" {
		t.Fatalf("cached Resolve = %+v, %v", r, err)
	}

	// Served with Range support; partial files never.
	srv := httptest.NewServer(http.StripPrefix("/agent_images", c))
	defer srv.Close()
	name := strings.TrimPrefix(urls[0], "http://127.0.0.1:6385/agent_images/")
	resp, err := http.Get(srv.URL + "/agent_images/" + name)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("served %d, %d bytes", resp.StatusCode, len(got))
	}
	req, _ := http.NewRequest("GET", srv.URL+"/agent_images/"+name, nil)
	req.Header.Set("Range", "bytes=16-31")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(got) != "rivet-cache-0123" {
		t.Fatalf("range: %d %q", resp.StatusCode, got)
	}
	for _, p := range []string{name + ".part", "../etc/passwd", ""} {
		resp, err := http.Get(srv.URL + "/agent_images/" + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %q = %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestCacheResumesAfterADroppedDownload(t *testing.T) {
	data := testData()
	s := newImageServer(t, data)
	s.cut.Store(300 << 10)
	c, dir := newCache(t)
	img := Image{Source: s.srv.URL + "/disk.img", Algo: "sha256", Checksum: sha(data)}
	if _, err := c.Ensure(context.Background(), img); err == nil {
		t.Fatal("a dropped download succeeded")
	}
	part, err := os.Stat(filepath.Join(dir, c.name(img)+".part"))
	if err != nil || part.Size() != 300<<10 {
		t.Fatalf("partial file after the drop: %v %v", part, err)
	}
	name, err := c.Ensure(context.Background(), img)
	if err != nil {
		t.Fatalf("resumed download: %v", err)
	}
	if s.ranges.Load() == 0 {
		t.Fatal("the second download did not resume with a Range request")
	}
	if total := s.sent.Load(); total != int64(len(data)) {
		t.Fatalf("source sent %d bytes in all, want %d (the rest only)", total, len(data))
	}
	got, _ := os.ReadFile(filepath.Join(dir, name))
	if !bytes.Equal(got, data) {
		t.Fatal("resumed file differs from the image")
	}
}

func TestCacheRejectsABadChecksum(t *testing.T) {
	data := testData()
	s := newImageServer(t, data)
	c, dir := newCache(t)
	img := Image{Source: s.srv.URL + "/disk.img", Algo: "sha256", Checksum: strings.Repeat("0", 64)}
	_, err := c.Ensure(context.Background(), img)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("Ensure with a wrong checksum = %v", err)
	}
	if entries := cachedFiles(t, dir); len(entries) != 0 {
		t.Fatalf("a bad image was kept: %v", entries)
	}
}

func TestCacheFileSourceAndChecksumFiles(t *testing.T) {
	data := testData()
	s := newImageServer(t, data)
	allowed := t.TempDir()
	files, err := hostpath.New(hostpath.Config{Allowed: []string{allowed}})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	c, dir := newCacheWith(t, CacheConfig{Files: files})
	local := filepath.Join(allowed, "disk.img")
	os.WriteFile(local, data, 0o644)
	md := md5.Sum(data)
	ctx := context.Background()

	// file:// is always cached; a 32-digit checksum is MD5.
	r, err := c.Resolve(ctx, map[string]any{"image_source": "file://" + local,
		"image_checksum": hex.EncodeToString(md[:])}, "http://c:6385")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Cached || r.Algo != "md5" || r.Checksum != hex.EncodeToString(md[:]) {
		t.Fatalf("file:// source resolved to %+v", r)
	}
	got, _ := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(r.URL, "http://c:6385/agent_images/")))
	if !bytes.Equal(got, data) {
		t.Fatal("file:// image not copied")
	}
	if _, err := c.Resolve(ctx, map[string]any{"image_source": "file://" + local,
		"image_checksum": strings.Repeat("1", 32)}, "http://c:6385"); err == nil {
		t.Fatal("file:// image with a wrong checksum accepted")
	}
	// Checksum files in both formats name the image's hash.
	for _, f := range []string{"disk.img.SHA256SUMS", "disk.img.BSD"} {
		img, err := c.ImageFromInstanceInfo(ctx, map[string]any{"image_source": s.srv.URL + "/disk.img",
			"image_checksum": s.srv.URL + "/" + f})
		if err != nil || img.Checksum != sha(data) || img.Algo != "sha256" {
			t.Fatalf("%s: %+v %v", f, img, err)
		}
	}
	if _, err := c.ImageFromInstanceInfo(ctx, map[string]any{"image_source": s.srv.URL + "/disk.img"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("no checksum: %v", err)
	}
}

// TestCacheNamesAreKeyed: the name an image is served under depends on a
// secret key kept in the cache directory, so it cannot be computed from
// the image's source and checksum; the key survives a restart, so cached
// images keep their names.
func TestCacheNamesAreKeyed(t *testing.T) {
	img := Image{Source: "http://images.example/disk.img", Algo: "sha256", Checksum: strings.Repeat("ab", 32)}
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := NewCache(CacheConfig{Dir: dirA})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCache(CacheConfig{Dir: dirB})
	if err != nil {
		t.Fatal(err)
	}
	if a.name(img) == b.name(img) {
		t.Error("two caches with their own keys name an image alike")
	}
	if !nameRE.MatchString(a.name(img)) || nameRE.MatchString(nameKeyFile) {
		t.Errorf("name %q, key file %q: only names are servable", a.name(img), nameKeyFile)
	}
	if st, err := os.Stat(filepath.Join(dirA, nameKeyFile)); err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Errorf("key file: %v %v", st, err)
	}
	want := a.name(img)
	a.Close()
	again, err := NewCache(CacheConfig{Dir: dirA})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got := again.name(img); got != want {
		t.Errorf("after a restart the image is named %q, was %q", got, want)
	}
	b.Close()
	if err := os.WriteFile(filepath.Join(dirB, nameKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCache(CacheConfig{Dir: dirB}); err == nil || !strings.Contains(err.Error(), "5 bytes, want 32") {
		t.Errorf("a damaged key file: %v", err)
	}
	// The key file is never served.
	rec := httptest.NewRecorder()
	again.ServeHTTP(rec, httptest.NewRequest("GET", "/"+nameKeyFile, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET %s: %d", nameKeyFile, rec.Code)
	}
}
