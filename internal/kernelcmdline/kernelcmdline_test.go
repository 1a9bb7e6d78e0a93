package kernelcmdline

import (
	"bytes"
	"maps"
	"os"
	"strings"
	"testing"
)

// TestParse: key=value tokens, the last of a repeated key, quotes around
// a value or a whole parameter dropped, tokens without "=" and empty or
// spaced keys ignored, and nothing read past the bound.
func TestParse(t *testing.T) {
	got, err := Parse(strings.NewReader(`BOOT_IMAGE=/vmlinuz ro quiet rivet.powerloss=store x=1 x=2` +
		` ipa-collectors="default, logs" "ipa-id=req a" =0 " k=v" e=` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"BOOT_IMAGE": "/vmlinuz", "rivet.powerloss": "store", "x": "2",
		"ipa-collectors": "default, logs", "ipa-id": "req a", "e": ""}
	if !maps.Equal(got, want) {
		t.Fatalf("parsed %q, want %q", got, want)
	}
	long := "a=1 " + strings.Repeat("y", maxLen) + " b=2"
	if got, err := Parse(strings.NewReader(long)); err != nil || got["a"] != "1" || got["b"] != "" {
		t.Fatalf("past the bound: %q, %v", got, err)
	}
}

// TestRead parses this machine's own command line, as Parse does its
// text.
func TestRead(t *testing.T) {
	got, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("Read %q, Parse of /proc/cmdline %q", got, want)
	}
}
