package virtualrack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConsoleFollow: lines appended to the file (in pieces, with CRs)
// are seen in order with their Seq, a wait from a Seq skips earlier
// matches, and waiting ends with the context.
func TestConsoleFollow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	c := newConsole(p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.follow(ctx) }()
	defer func() { cancel(); <-done }()

	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("firmware\r\nmarker one\r\nhalf a li")
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	l, m, err := c.wait(wctx, regexp.MustCompile(`marker (\w+)`), 0)
	if err != nil || l.Seq != 1 || m[1] != "one" || l.Text != "marker one" || l.At.IsZero() {
		t.Fatalf("first marker: %+v %v %v", l, m, err)
	}
	from := c.seq()
	f.WriteString("ne\nmarker two\n")
	l, m, err = c.wait(wctx, regexp.MustCompile(`marker (\w+)`), from)
	if err != nil || m[1] != "two" || l.Seq != 3 {
		t.Fatalf("marker after Seq %d: %+v %v %v", from, l, m, err)
	}
	if l, _, err := c.wait(wctx, regexp.MustCompile(`^half a line$`), 0); err != nil || l.Seq != 2 {
		t.Fatalf("the line written in two pieces: %+v %v", l, err)
	}
	short, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	if _, _, err := c.wait(short, regexp.MustCompile(`never`), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a line that never comes: %v", err)
	}
	var b strings.Builder
	c.tail(&b, 2)
	if b.String() != "half a line\nmarker two\n" {
		t.Errorf("tail %q", b.String())
	}
}

// TestConsoleBounded: a line without an end is cut, and old lines are
// dropped past the limit; a wait from a dropped line says so.
func TestConsoleBounded(t *testing.T) {
	c := newConsole("unused")
	c.add([]byte(strings.Repeat("x", 3*maxLineBytes)), time.Now())
	c.add([]byte("y\n"), time.Now())
	if len(c.lines) != 1 || len(c.lines[0].Text) != maxLineBytes {
		t.Fatalf("long line kept as %d lines, first %d bytes", len(c.lines), len(c.lines[0].Text))
	}
	for i := 0; i < maxConsoleLines+10; i++ {
		c.add([]byte("line\n"), time.Now())
	}
	if len(c.lines) != maxConsoleLines || c.lines[0].Seq != 11 || c.seq() != maxConsoleLines+11 {
		t.Fatalf("%d lines kept, first Seq %d, next %d", len(c.lines), c.lines[0].Seq, c.seq())
	}
	if _, _, err := c.wait(context.Background(), regexp.MustCompile(`line`), 0); !errors.Is(err, errDropped) {
		t.Fatalf("wait from a dropped line: %v", err)
	}
}
