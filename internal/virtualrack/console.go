package virtualrack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sync"
	"time"
)

// Bounds of a console follower's memory.
const (
	maxConsoleLines = 20000    // lines kept; older ones are dropped
	maxLineBytes    = 4 << 10  // a longer line is cut there
	readChunk       = 64 << 10 // bytes read per poll step
)

// consolePoll is how often the console file is read.
const consolePoll = 100 * time.Millisecond

// Line is one console line and when the rack first saw it (the console
// file is polled every 100 ms).
type Line struct {
	// Seq numbers the node's console lines from 0.
	Seq int
	// At is when the line was read.
	At time.Time
	// Text is the line without its end (and without a carriage return).
	Text string
}

// console follows a node's console log file (QEMU appends to it) and
// keeps its recent lines with the time each was seen.
type console struct {
	path string

	mu      sync.Mutex
	lines   []Line // the last maxConsoleLines lines
	next    int    // Seq of the next line
	changed chan struct{}
	partial []byte
	off     int64
}

func newConsole(path string) *console {
	return &console{path: path, changed: make(chan struct{})}
}

// follow polls the file until ctx ends.
func (c *console) follow(ctx context.Context) {
	t := time.NewTicker(consolePoll)
	defer t.Stop()
	for {
		c.poll()
		select {
		case <-ctx.Done():
			c.poll()
			return
		case <-t.C:
		}
	}
}

// poll reads what was appended since the last poll.
func (c *console) poll() {
	f, err := os.Open(c.path)
	if err != nil {
		return // not created yet
	}
	defer f.Close()
	buf := make([]byte, readChunk)
	for {
		n, err := f.ReadAt(buf, c.off)
		if n > 0 {
			c.off += int64(n)
			c.add(buf[:n], time.Now())
		}
		if err != nil || n < len(buf) {
			return
		}
	}
}

// add splits data into lines, stamped at.
func (c *console) add(data []byte, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	added := false
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			room := maxLineBytes - len(c.partial)
			if room > 0 {
				c.partial = append(c.partial, data[:min(room, len(data))]...)
			}
			break
		}
		if room := maxLineBytes - len(c.partial); room > 0 {
			c.partial = append(c.partial, data[:min(room, i)]...)
		}
		data = data[i+1:]
		c.lines = append(c.lines, Line{Seq: c.next, At: at, Text: string(bytes.TrimRight(c.partial, "\r"))})
		c.next++
		c.partial = c.partial[:0]
		added = true
	}
	if over := len(c.lines) - maxConsoleLines; over > 0 {
		c.lines = append(c.lines[:0:0], c.lines[over:]...)
	}
	if added {
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// seq is the Seq the next line will get.
func (c *console) seq() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next
}

// errDropped is returned when the lines a wait starts from were dropped.
var errDropped = errors.New("console lines dropped (more than 20000 since)")

// wait returns the first line with Seq >= from that matches re, and its
// submatches, waiting for it until ctx ends.
func (c *console) wait(ctx context.Context, re *regexp.Regexp, from int) (Line, []string, error) {
	for {
		c.mu.Lock()
		if len(c.lines) > 0 && from < c.lines[0].Seq {
			c.mu.Unlock()
			return Line{}, nil, fmt.Errorf("console %s: waiting for %q from line %d: %w", c.path, re, from, errDropped)
		}
		for _, l := range c.lines {
			if l.Seq < from {
				continue
			}
			if m := re.FindStringSubmatch(l.Text); m != nil {
				c.mu.Unlock()
				return l, m, nil
			}
		}
		if c.next > from {
			from = c.next
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Line{}, nil, fmt.Errorf("console %s: waiting for %q: %w", c.path, re, ctx.Err())
		}
	}
}

// tail writes the last n lines to w.
func (c *console) tail(w io.Writer, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := max(0, len(c.lines)-n)
	for _, l := range c.lines[start:] {
		fmt.Fprintln(w, l.Text)
	}
}
