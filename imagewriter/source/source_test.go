package source

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 0-9/10", 0, 10, true},
		{"bytes 100-199/*", 100, -1, true},
		{"bytes */10", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes -1-2/3", 0, 0, false},
	} {
		s, tot, err := parseContentRange(c.in)
		if (err == nil) != c.ok || (c.ok && (s != c.start || tot != c.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", c.in, s, tot, err)
		}
	}
}

func TestReadAtOverHTTPAndFile(t *testing.T) {
	data := make([]byte, 1<<20+3)
	rand.Read(data)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	p := filepath.Join(t.TempDir(), "img")
	os.WriteFile(p, data, 0o644)
	for _, u := range []string{srv.URL + "/img", "file://" + p} {
		s := &Source{URLs: []string{u}, Retry: Retry{Attempts: 1, Interval: time.Millisecond}}
		st, err := s.Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != int64(len(data)) || !st.RangeOK() {
			t.Fatalf("%s: size %d range %v", u, st.Size(), st.RangeOK())
		}
		buf := make([]byte, 4096)
		if n, err := st.ReadAt(buf, 500000); err != nil || n != 4096 || !bytes.Equal(buf, data[500000:504096]) {
			t.Fatalf("%s: ReadAt = %d, %v", u, n, err)
		}
		if n, err := st.ReadAt(buf, int64(len(data))-10); err != io.EOF || n != 10 || !bytes.Equal(buf[:10], data[len(data)-10:]) {
			t.Fatalf("%s: ReadAt at the end = %d, %v", u, n, err)
		}
		all, err := io.ReadAll(st)
		if err != nil || !bytes.Equal(all, data) {
			t.Fatalf("%s: stream read %d bytes, %v", u, len(all), err)
		}
		st.Close()
	}
}

func TestReadAtNeedsRangeSupport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 8192)) // ignores Range
	}))
	defer srv.Close()
	s := &Source{URLs: []string{srv.URL}, Retry: Retry{Attempts: 2, Interval: time.Millisecond}}
	st, err := s.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ReadAt(make([]byte, 10), 100); !errors.Is(err, ErrDownload) || !errors.Is(err, ErrNoRanges) {
		t.Fatalf("ReadAt on a server without ranges: %v", err)
	}
}

func TestMaxDuration(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		<-release // the rest never comes
	}))
	defer srv.Close()
	defer close(release)
	s := &Source{URLs: []string{srv.URL}, Retry: Retry{Attempts: 1, Interval: time.Millisecond}, MaxDuration: 200 * time.Millisecond}
	// On a slow machine the limit may already pass while Open waits for
	// the first bytes; either way the download must end with the limit.
	st, err := s.Open(context.Background())
	if err == nil {
		defer st.Close()
		_, err = io.ReadAll(st)
	}
	if !errors.Is(err, ErrDownload) || !errors.Is(err, ErrMaxDuration) {
		t.Fatalf("a stalled download under MaxDuration: %v", err)
	}
}

func TestOpenSkipsURLsAnswering4xx(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	defer srv.Close()
	s := &Source{URLs: []string{srv.URL + "/a"}, Retry: Retry{Attempts: 5, Interval: time.Millisecond}}
	if _, err := s.Open(context.Background()); !errors.Is(err, ErrDownload) || calls != 1 {
		t.Fatalf("Open = %v after %d calls; want one call, ErrDownload", err, calls)
	}
}

// FuzzParseContentRange: whatever a server sends as Content-Range, the
// parse never panics and what it accepts is a sane range start.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 5-9/*", "bytes 9223372036854775807-0/1", "bytes -5/10", "items 1-2/3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		start, total, err := parseContentRange(v)
		if err == nil && (start < 0 || total < -1) {
			t.Fatalf("%q parsed to start %d, total %d", v, start, total)
		}
	})
}
