package agent

import "sync"

// LogBuffer keeps the newest bytes of the agent's log, for
// log.collect_system_logs and the log stream (GET /v1/rivet/logs). It is
// an io.Writer; cmd/rivet-agent tees the log into it. Every byte ever
// written has an offset (the count of bytes written before it), so a
// reader can follow the log from where it left off.
type LogBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	end     int64         // offset of the byte after the last written
	written chan struct{} // closed (and replaced) by every write
}

// NewLogBuffer keeps at most max bytes (the oldest are dropped).
func NewLogBuffer(max int) *LogBuffer { return &LogBuffer{max: max, written: make(chan struct{})} }

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.end += int64(len(p))
	if len(p) > 0 {
		close(b.written)
		b.written = make(chan struct{})
	}
	return len(p), nil
}

// Bytes returns a copy of the kept log.
func (b *LogBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// Since copies at most limit bytes of the log from offset on. When the
// bytes at offset were dropped already, it starts at the oldest byte
// kept; from is the offset of the first byte returned, next the offset
// to read from next time. written is closed at the next write, for a
// reader that caught up to wait on.
func (b *LogBuffer) Since(offset int64, limit int) (data []byte, from, next int64, written <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	start := b.end - int64(len(b.buf))
	from = min(max(offset, start), b.end)
	n := min(int64(limit), b.end-from)
	i := from - start
	return append([]byte(nil), b.buf[i:i+n]...), from, from + n, b.written
}
