package logcollect

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestArchive(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxFileSize+10)
	s, err := Archive([]Source{
		{Name: "rivet-agent.log", Read: func() ([]byte, error) { return []byte("level=INFO msg=hello\n"), nil }},
		{Name: "dmesg", Read: func() ([]byte, error) { return nil, errors.New("operation not permitted") }},
		{Name: "big", Read: func() ([]byte, error) { return big, nil }},
	}, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	got := map[string]string{}
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != "big,dmesg,rivet-agent.log" {
		t.Errorf("names %v", names)
	}
	if got["rivet-agent.log"] != "level=INFO msg=hello\n" || !strings.Contains(got["dmesg"], "could not collect dmesg: operation not permitted") {
		t.Errorf("content %q", got)
	}
	if len(got["big"]) > MaxFileSize+100 || !strings.HasPrefix(got["big"], "[truncated") {
		t.Errorf("big file %d bytes", len(got["big"]))
	}
}
