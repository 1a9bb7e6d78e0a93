package vmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// recorder captures what Unavailable does instead of ending the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestUnavailable(t *testing.T) {
	t.Setenv(RequireEnv, "")
	r := &recorder{TB: t}
	Unavailable(r, "no %s", "qemu")
	if r.skipped != "no qemu" || r.failed != "" {
		t.Errorf("without %s: skipped %q, failed %q", RequireEnv, r.skipped, r.failed)
	}
	t.Setenv(RequireEnv, "1")
	r = &recorder{TB: t}
	Unavailable(r, "no %s", "qemu")
	if r.skipped != "" || !strings.Contains(r.failed, "no qemu") || !strings.Contains(r.failed, RequireEnv) {
		t.Errorf("with %s=1: skipped %q, failed %q", RequireEnv, r.skipped, r.failed)
	}
}

func TestRepoRoot(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(t), "go.mod"))
	if err != nil || !strings.Contains(string(b), "module github.com/rivetmetal/rivet\n") {
		t.Errorf("go.mod at the root: %v", err)
	}
}

func TestLineWriter(t *testing.T) {
	var lines []string
	w := &lineWriter{line: func(s string) { lines = append(lines, s) }}
	for _, chunk := range []string{"Boot", "ing\r\nline two\n", "tail"} {
		w.Write([]byte(chunk))
	}
	w.flush()
	if got := strings.Join(lines, "|"); got != "Booting|line two|tail" {
		t.Errorf("lines %q", got)
	}
}

func TestWaitForFileLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(path, []byte("MARK old=1\n"), 0o644)
	go func() {
		time.Sleep(300 * time.Millisecond)
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("noise\r\nMARK new=2\r\n")
		f.Close()
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	m, err := WaitForFileLine(ctx, path, int64(len("MARK old=1\n")), regexp.MustCompile(`^MARK new=(\d)$`))
	if err != nil || m[1] != "2" {
		t.Fatalf("match %q, %v", m, err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := WaitForFileLine(ctx, path, 0, regexp.MustCompile(`never`)); err == nil {
		t.Error("no error at the deadline")
	}
}
