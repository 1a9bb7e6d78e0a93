// Package kernelcmdline reads the kernel command line's key=value
// parameters, as the agent takes its configuration from them (IPA's
// ipa-* parameters) and test guests take their instructions.
package kernelcmdline

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxLen bounds what is read of a command line (the kernel's own limit is
// a few KiB).
const maxLen = 64 << 10

// Parse splits a kernel command line into key=value pairs. Tokens
// without "=" are ignored, as IPA does; double quotes group spaces.
func Parse(r io.Reader) (map[string]string, error) {
	b, err := io.ReadAll(bufio.NewReader(io.LimitReader(r, maxLen)))
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	out := map[string]string{}
	var tok strings.Builder
	inQuote := false
	flush := func() {
		// The kernel takes quotes around a value or a whole parameter
		// ("ipa-x=a b" and ipa-x="a b" alike) and drops them.
		t := strings.ReplaceAll(tok.String(), `"`, "")
		tok.Reset()
		if k, v, ok := strings.Cut(t, "="); ok && k != "" && !strings.ContainsAny(k, " \t\n") {
			out[k] = v
		}
	}
	for _, ch := range string(b) {
		switch {
		case ch == '"':
			inQuote = !inQuote
			tok.WriteRune(ch)
		case (ch == ' ' || ch == '\t' || ch == '\n') && !inQuote:
			flush()
		default:
			tok.WriteRune(ch)
		}
	}
	flush()
	return out, nil
}

// Read parses the running kernel's command line (/proc/cmdline).
func Read() (map[string]string, error) {
	f, err := os.Open("/proc/cmdline")
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	defer f.Close()
	return Parse(f)
}
