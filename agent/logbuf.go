package agent

import "sync"

// LogBuffer keeps the newest bytes of the agent's log, for
// log.collect_system_logs. It is an io.Writer; cmd/rivet-agent tees the
// log into it.
type LogBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// NewLogBuffer keeps at most max bytes (the oldest are dropped).
func NewLogBuffer(max int) *LogBuffer { return &LogBuffer{max: max} }

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of the kept log.
func (b *LogBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}
