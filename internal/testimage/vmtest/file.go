package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"time"
)

// WaitForFileLine polls a log file (a VM's console written by QEMU) until a
// line after byte offset from matches re, and returns its submatches.
func WaitForFileLine(ctx context.Context, path string, from int64, re *regexp.Regexp) ([]string, error) {
	for {
		if b, err := os.ReadFile(path); err == nil && int64(len(b)) > from {
			sc := bufio.NewScanner(bytes.NewReader(b[from:]))
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				if m := re.FindStringSubmatch(string(bytes.TrimRight(sc.Bytes(), "\r"))); m != nil {
					return m, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %q in %s: %w", re, path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
