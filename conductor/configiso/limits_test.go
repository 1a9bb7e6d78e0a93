package configiso

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/rivetmetal/rivet/imagewriter/configdrive"
)

// gzipped returns data gzipped.
func gzipped(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	z.Write(data)
	z.Close()
	return b.Bytes()
}

// zeros gzips n zero bytes without holding them.
func gzippedZeros(t testing.TB, n int64) []byte {
	var b bytes.Buffer
	z, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	chunk := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(chunk)) {
		z.Write(chunk[:min(int64(len(chunk)), left)])
	}
	z.Close()
	return b.Bytes()
}

// TestCheckStringIsTheAgentsLimit: a config drive string is accepted at
// the API exactly when the agent would decode it, 64 MiB decoded at most:
// a gzip bomb that expands past it is refused with a clear error, whatever
// its small size on the wire.
func TestCheckStringIsTheAgentsLimit(t *testing.T) {
	iso := bytes.Repeat([]byte("ISO"), 1000)
	atLimit := base64.StdEncoding.EncodeToString(gzippedZeros(t, MaxSize))
	bomb := base64.StdEncoding.EncodeToString(gzippedZeros(t, MaxSize+1))
	bigBomb := base64.StdEncoding.EncodeToString(gzippedZeros(t, 256<<20))
	for name, tc := range map[string]struct {
		s    string
		want string // "" accepted
	}{
		"gzip base64":         {base64.StdEncoding.EncodeToString(gzipped(t, iso)), ""},
		"raw base64":          {base64.StdEncoding.EncodeToString(iso), ""},
		"url-safe base64":     {base64.RawURLEncoding.EncodeToString(gzipped(t, iso)), ""},
		"with newlines":       {strings.Join(strings.SplitAfter(base64.StdEncoding.EncodeToString(iso), "AAAA"), "\n"), ""},
		"url":                 {"https://configdrives.example/n1.iso.gz?sig=x", ""},
		"not base64":          {"just some text!", ""},
		"64 MiB exactly":      {atLimit, ""},
		"bomb over 64 MiB":    {bomb, "larger than 64 MiB"},
		"256 MiB bomb":        {bigBomb, "larger than 64 MiB"},
		"broken gzip":         {base64.StdEncoding.EncodeToString(append([]byte{0x1f, 0x8b}, "nonsense"...)), "gzip"},
		"empty":               {"", "empty"},
		"empty gzip":          {base64.StdEncoding.EncodeToString(gzipped(t, nil)), "empty"},
		"raw text over limit": {strings.Repeat("!", MaxSize+1), "larger than"},
	} {
		err := CheckString(tc.s)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid)):
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if configdrive.IsURL(tc.s) || len(tc.s) > 1<<20 {
			continue
		}
		if _, aerr := configdrive.Decode([]byte(tc.s)); (aerr == nil) != (err == nil) {
			t.Errorf("%s: the API says %v, the agent %v", name, err, aerr)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	many := `{"meta_data":{` + strings.TrimSuffix(strings.Repeat(`"k":1,`, MaxJSONValues), ",") + `}}`
	deep := strings.Repeat(`{"a":`, MaxJSONDepth+1) + "1" + strings.Repeat("}", MaxJSONDepth+1)
	okDeep := strings.Repeat(`{"a":`, MaxJSONDepth-1) + "1" + strings.Repeat("}", MaxJSONDepth-1)
	list := `{"user_data":[` + strings.TrimSuffix(strings.Repeat(`1,`, MaxJSONValues), ",") + `]}`
	for name, tc := range map[string]struct {
		s, want string
	}{
		"ordinary":    {`{"meta_data":{"hostname":"web-1","public_keys":{"k":"ssh-ed25519 AAAA"}},"user_data":"#cloud-config\n"}`, ""},
		"deep enough": {okDeep, ""},
		"many keys":   {many, "more than 100000 values"},
		"long list":   {list, "more than 100000 values"},
		"too deep":    {deep, "deeper than 32"},
		"not JSON":    {`{"a":`, "ends early"},
		"two values":  {`{} {}`, "more than one"},
		"trailing":    {`{} x`, "invalid character"},
	} {
		err := CheckJSON([]byte(tc.s))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	big := make([]byte, MaxJSONSize+1)
	if err := CheckJSON(big); err == nil || !strings.Contains(err.Error(), "bytes of JSON") {
		t.Errorf("oversized JSON: %v", err)
	}
}

// TestBuildRefusesOversizedFilesFirst: files that cannot fit in a 64 MiB
// image are refused before the ISO is written.
func TestBuildRefusesOversizedFilesFirst(t *testing.T) {
	dir := t.TempDir()
	_, err := Build(map[string]any{"user_data": strings.Repeat("x", MaxSize/2+1)}, Node{UUID: "u"}, dir)
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "metadata versions") {
		t.Fatalf("Build = %v", err)
	}
}

// FuzzCheckString: the API's check and the agent's decoder agree on
// every config drive string.
func FuzzCheckString(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString(gzipped(f, []byte("iso"))))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("raw iso bytes")))
	f.Add("H4sIAAAAAAAA/wMAAAAAAAAAAAA=")
	f.Add(" \u00a0\t")
	f.Add("https://example.com/cd")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckString(s)
		if configdrive.IsURL(s) {
			if err != nil {
				t.Fatalf("URL refused: %v", err)
			}
			return
		}
		_, aerr := configdrive.Decode([]byte(s))
		if (err == nil) != (aerr == nil) {
			t.Fatalf("CheckString(%q) = %v, but the agent's Decode = %v", s, err, aerr)
		}
	})
}

// FuzzCheckJSON: the check never panics, accepts only valid JSON, and
// what it accepts decodes within the limits.
func FuzzCheckJSON(f *testing.F) {
	f.Add([]byte(`{"meta_data":{"a":[1,2,{"b":null}]},"user_data":"x"}`))
	f.Add([]byte(`[[[[[]]]]]`))
	f.Add([]byte(`{"a":{"b":{"c":{}}}} trailing`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := CheckJSON(b); err != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		for {
			var v any
			if err := dec.Decode(&v); err != nil {
				break
			}
			if n, d := countValues(v, 1); n > MaxJSONValues || d > MaxJSONDepth {
				t.Fatalf("accepted %d values, depth %d", n, d)
			}
		}
	})
}

// countValues counts the values of a decoded JSON tree and its depth.
func countValues(v any, depth int) (n, maxDepth int) {
	n, maxDepth = 1, 0
	switch x := v.(type) {
	case map[string]any:
		maxDepth = depth
		for _, e := range x {
			c, d := countValues(e, depth+1)
			n += c
			maxDepth = max(maxDepth, d)
		}
	case []any:
		maxDepth = depth
		for _, e := range x {
			c, d := countValues(e, depth+1)
			n += c
			maxDepth = max(maxDepth, d)
		}
	}
	return n, maxDepth
}
