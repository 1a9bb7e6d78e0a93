package configdrive

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/rivetmetal/rivet/imagewriter/source"
)

// fakeISO has the ISO 9660 primary volume descriptor of a config drive.
func fakeISO() []byte {
	b := make([]byte, 40<<10)
	copy(b[32768:], "\x01CD001")
	copy(b[32768+40:], "config-2                        ")
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestDecode(t *testing.T) {
	iso := fakeISO()
	b64 := base64.StdEncoding.EncodeToString(gz(iso))
	wrapped := ""
	for i := 0; i < len(b64); i += 76 {
		wrapped += b64[i:min(i+76, len(b64))] + "\n"
	}
	for name, in := range map[string][]byte{
		"base64 of gzip":          []byte(b64),
		"base64 with line breaks": []byte(wrapped),
		"url-safe base64 of gzip": []byte(base64.URLEncoding.EncodeToString(gz(iso))),
		"raw gzip (not base64)":   gz(iso),
		"raw ISO":                 iso,
		"base64 of an ISO, no gz": []byte(base64.StdEncoding.EncodeToString(iso)),
	} {
		got, err := Decode(in)
		if err != nil || !bytes.Equal(got, iso) || Label(got) != "config-2" {
			t.Errorf("%s: Decode = %d bytes (label %q), %v", name, len(got), Label(got), err)
		}
	}
	if _, err := Decode(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty: %v", err)
	}
	huge := gz(make([]byte, MaxSize+1))
	if _, err := Decode(huge); !errors.Is(err, ErrInvalid) {
		t.Errorf("over 64 MiB: %v", err)
	}
}

func TestFetch(t *testing.T) {
	iso := fakeISO()
	body := []byte(base64.StdEncoding.EncodeToString(gz(iso)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Basic x" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, r, "cd", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	src := source.Source{Header: http.Header{"Authorization": {"Basic x"}}, Retry: source.Retry{Attempts: 1, Interval: time.Millisecond}}
	if !IsURL(" " + srv.URL + "/cd") {
		t.Fatal("IsURL")
	}
	got, err := Fetch(context.Background(), src, srv.URL+"/cd")
	if err != nil || !bytes.Equal(got, iso) {
		t.Fatalf("Fetch = %d bytes, %v", len(got), err)
	}
	if _, err := Fetch(context.Background(), source.Source{Retry: src.Retry}, srv.URL+"/cd"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Fetch without auth: %v", err)
	}
}
