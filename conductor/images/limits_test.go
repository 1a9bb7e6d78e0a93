package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
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

// streamServer answers /img with a body it writes in 64 KiB pieces:
// size bytes of zeros, with a Content-Length when declare >= 0 (which may
// lie), and blocks before each piece while hold is set (released by
// closing the channel), counting what it sent and noticing the client
// going away.
type streamServer struct {
	srv      *httptest.Server
	sent     atomic.Int64
	gone     chan struct{}
	goneOnce sync.Once
}

func newStreamServer(t *testing.T, size, declare int64, hold <-chan struct{}) *streamServer {
	s := &streamServer{gone: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if declare >= 0 {
			w.Header().Set("Content-Length", fmt.Sprint(declare))
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		w.(http.Flusher).Flush()
		piece := make([]byte, 64<<10)
		for n := int64(0); n < size; n += int64(len(piece)) {
			if hold != nil {
				select {
				case <-hold:
				case <-r.Context().Done():
					s.goneOnce.Do(func() { close(s.gone) })
					return
				}
			}
			k, err := w.Write(piece[:min(int64(len(piece)), size-n)])
			s.sent.Add(int64(k))
			if err != nil {
				s.goneOnce.Do(func() { close(s.gone) })
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// TestCacheRefusesImagesOverTheCap: an image whose server says it is
// larger than the cache is refused before its body is read; one whose
// server says nothing (or lies) is cut off at the cap; nothing is left.
func TestCacheRefusesImagesOverTheCap(t *testing.T) {
	const max = 1 << 20
	for _, tc := range []struct {
		name          string
		size, declare int64
		want          string
	}{
		{"declared too large", 64 << 20, 64 << 20, "more than the conductor's image cache holds"},
		{"no length", 256 << 20, -1, "sent more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStreamServer(t, tc.size, tc.declare, nil)
			c, dir := newCacheWith(t, CacheConfig{MaxSize: max})
			_, err := c.Ensure(context.Background(), Image{Source: s.srv.URL + "/img", Algo: "sha256", Checksum: strings.Repeat("0", 64)})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Ensure = %v, want %q", err, tc.want)
			}
			if left := cachedFiles(t, dir); len(left) != 0 {
				t.Fatalf("files left in the cache: %v", left)
			}
			// The copy stopped at the cap: what the server got rid of
			// beyond it sat in socket buffers.
			if got := s.sent.Load(); got > 64<<20 {
				t.Errorf("the server sent %d bytes to a cache of %d", got, max)
			}
		})
	}
}

// TestCacheEvictsUnusedImages: to make room, images unused for the
// in-use window go, least recently used first; when only images in use
// remain the download is refused as "full".
func TestCacheEvictsUnusedImages(t *testing.T) {
	one := bytes.Repeat([]byte("a"), 400<<10)
	two := bytes.Repeat([]byte("b"), 400<<10)
	three := bytes.Repeat([]byte("c"), 400<<10)
	s1, s2, s3 := newImageServer(t, one), newImageServer(t, two), newImageServer(t, three)
	c, dir := newCacheWith(t, CacheConfig{MaxSize: 1 << 20})
	ctx := context.Background()
	img := func(s *imageServer, data []byte) Image {
		return Image{Source: s.srv.URL + "/disk.img", Algo: "sha256", Checksum: sha(data)}
	}
	n1, err := c.Ensure(ctx, img(s1, one))
	if err != nil {
		t.Fatal(err)
	}
	n2, err := c.Ensure(ctx, img(s2, two))
	if err != nil {
		t.Fatal(err)
	}
	// Both were used just now: the third does not fit.
	_, err = c.Ensure(ctx, img(s3, three))
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "image cache is full") {
		t.Fatalf("third image with two in use: %v", err)
	}
	if left := cachedFiles(t, dir); len(left) != 2 {
		t.Fatalf("after the refusal: %v", left)
	}
	// Age the first past the window, the second less: the first goes.
	age := func(name string, d time.Duration) {
		p := filepath.Join(dir, name)
		fi, _ := os.Stat(p)
		if err := os.Chtimes(p, time.Now().Add(-d), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	age(n1, 3*InUseWindow)
	age(n2, 2*InUseWindow)
	n3, err := c.Ensure(ctx, img(s3, three))
	if err != nil {
		t.Fatal(err)
	}
	left := cachedFiles(t, dir)
	if len(left) != 2 || !contains(left, n2) || !contains(left, n3) {
		t.Fatalf("after eviction %v, want %s and %s", left, n2, n3)
	}
	if used, _ := c.Usage(); used > 1<<20 {
		t.Fatalf("usage %d over the cap", used)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// TestCacheStopsAbandonedDownloads: a download goes on while someone
// waits for it; when every caller has gone (its deploy aborted or
// deleted) it stops, the server sees the connection closed and the
// partial file is removed; a new request starts afresh.
func TestCacheStopsAbandonedDownloads(t *testing.T) {
	hold := make(chan struct{})
	s := newStreamServer(t, 4<<20, 4<<20, hold)
	c, dir := newCache(t)
	img := Image{Source: s.srv.URL + "/img", Algo: "sha256", Checksum: strings.Repeat("0", 64)}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, err := c.Ensure(ctx1, img); errs <- err }()
	go func() { _, err := c.Ensure(ctx2, img); errs <- err }()
	waitFor(t, "the download to start", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		f := c.inflight[c.name(img)]
		return f != nil && f.waiters == 2
	})
	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	select {
	case <-s.gone:
		t.Fatal("the download stopped while a caller still waited")
	default:
	}
	cancel2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("second caller: %v", err)
	}
	<-s.gone
	waitFor(t, "the download to end", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.inflight) == 0
	})
	if left := cachedFiles(t, dir); len(left) != 0 {
		t.Fatalf("files left after the download stopped: %v", left)
	}
}

// TestCacheCloseStopsDownloads: shutting down stops a download and
// removes its partial file; callers get an error, not a hang.
func TestCacheCloseStopsDownloads(t *testing.T) {
	hold := make(chan struct{})
	s := newStreamServer(t, 4<<20, 4<<20, hold)
	dir := t.TempDir()
	c, err := NewCache(CacheConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Source: s.srv.URL + "/img", Algo: "sha256", Checksum: strings.Repeat("0", 64)}
	errc := make(chan error, 1)
	go func() { _, err := c.Ensure(context.Background(), img); errc <- err }()
	waitFor(t, "the download to start", func() bool {
		_, err := os.Stat(filepath.Join(dir, c.name(img)+".part"))
		return err == nil
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "download stopped") {
		t.Fatalf("Ensure during Close: %v", err)
	}
	if left := cachedFiles(t, dir); len(left) != 0 {
		t.Fatalf("files left after Close: %v", left)
	}
}

// TestCacheTimesOutStalledServers: a server that never answers, and one
// that stops sending mid-body, fail the download instead of holding it.
func TestCacheTimesOutStalledServers(t *testing.T) {
	// Accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				<-stop
				conn.Close()
			}()
		}
	}()
	defer func() { close(stop); ln.Close(); conns.Wait() }()
	hold := make(chan struct{}) // never released: the body stalls after its headers
	stalled := newStreamServer(t, 4<<20, 4<<20, hold)
	c, dir := newCacheWith(t, CacheConfig{ConnectTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	for _, src := range []string{"http://" + ln.Addr().String() + "/img", stalled.srv.URL + "/img"} {
		_, err := c.Ensure(context.Background(), Image{Source: src, Algo: "sha256", Checksum: strings.Repeat("0", 64)})
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "timeout") {
			t.Errorf("%s: %v, want a timeout", src, err)
		}
		if strings.Contains(fmt.Sprint(err), "?") {
			t.Errorf("error shows a query: %v", err)
		}
	}
	_ = dir
}

// TestCacheFileSourcesAreConfined: file:// sources open only regular
// files in the allowed directories; /dev/zero, the outside and symbolic
// links out are refused before anything is copied.
func TestCacheFileSourcesAreConfined(t *testing.T) {
	allowed := t.TempDir()
	outside := t.TempDir()
	files, err := hostpath.New(hostpath.Config{Allowed: []string{allowed}})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	secret := filepath.Join(outside, "secret.img")
	os.WriteFile(secret, []byte("secret"), 0o600)
	os.Symlink(secret, filepath.Join(allowed, "link.img"))
	os.Symlink("/dev/zero", filepath.Join(allowed, "zero.img"))
	big := filepath.Join(allowed, "sparse.img")
	f, _ := os.Create(big)
	f.Truncate(1 << 40)
	f.Close()
	c, dir := newCacheWith(t, CacheConfig{Files: files, MaxSize: 1 << 30})
	for src, want := range map[string]string{
		"file:///dev/zero": "not in a directory allowed",
		"file://" + secret: "not in a directory allowed",
		"file://" + filepath.Join(allowed, "link.img"): "leads out of its allowed directory",
		"file://" + filepath.Join(allowed, "zero.img"): "leads out of its allowed directory",
		"file://" + big:         "more than the conductor's image cache holds",
		"file://evil.example/x": "only local files",
	} {
		_, err := c.Ensure(context.Background(), Image{Source: src, Algo: "sha256", Checksum: strings.Repeat("0", 64)})
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
	if left := cachedFiles(t, dir); len(left) != 0 {
		t.Fatalf("files left: %v", left)
	}
	// Without allowed directories, no file:// source at all.
	none, _ := newCache(t)
	if _, err := none.Ensure(context.Background(), Image{Source: "file://" + big, Algo: "sha256", Checksum: strings.Repeat("0", 64)}); err == nil ||
		!strings.Contains(err.Error(), "allows no host files") {
		t.Errorf("file:// without allowed paths: %v", err)
	}
}

// TestCacheCleansUpAtStart: partial downloads and images unused past the
// TTL do not survive a restart; recent images do.
func TestCacheCleansUpAtStart(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(CacheConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	old, recent := strings.Repeat("1", 32), strings.Repeat("2", 32)
	for _, n := range []string{old, recent, strings.Repeat("3", 32) + ".part", nameKeyFile + ".0011"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-30 * 24 * time.Hour)
	os.Chtimes(filepath.Join(dir, old), past, past)
	c, err = NewCache(CacheConfig{Dir: dir, TTL: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	left := cachedFiles(t, dir)
	if len(left) != 1 || left[0] != recent {
		t.Fatalf("after a restart: %v, want only %s", left, recent)
	}
}

// waitFor polls cond (a few seconds at most) and fails the test if it
// never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
