package images

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestServesRangesAndStaysInside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	outside := filepath.Join(filepath.Dir(dir), "secret")
	os.WriteFile(outside, []byte("x"), 0o644)
	defer os.Remove(outside)
	h, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(http.StripPrefix("/images", h))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/images/disk.raw", nil)
	req.Header.Set("Range", "bytes=2-5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "2345" {
		t.Fatalf("range GET = %d %q", resp.StatusCode, body)
	}
	for _, p := range []string{"/images/", "/images/sub", "/images/../secret", "/images/%2e%2e/secret", "/images/nope"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
	resp, _ = http.Post(srv.URL+"/images/disk.raw", "text/plain", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d, want 405", resp.StatusCode)
	}
}
