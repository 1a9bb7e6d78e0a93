package fakeagent

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/rivetmetal/rivet/wire"
)

// agentLog is the fake agent's own log: a line per command it receives,
// served at wire.AgentLogPath as rivet-agent serves its log (from an
// offset, and with follow as lines are added).
type agentLog struct {
	mu      sync.Mutex
	data    []byte
	written chan struct{}
}

func (l *agentLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.data = fmt.Appendf(l.data, format+"\n", args...)
	if l.written != nil {
		close(l.written)
	}
	l.written = make(chan struct{})
}

// since returns the log from offset on and a channel closed at the next
// line.
func (l *agentLog) since(offset int64) ([]byte, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.written == nil {
		l.written = make(chan struct{})
	}
	offset = min(offset, int64(len(l.data)))
	return append([]byte(nil), l.data[offset:]...), l.written
}

// Log is what the agent logged so far.
func (a *Agent) Log() string {
	b, _ := a.log.since(0)
	return string(b)
}

// handleLog serves wire.AgentLogPath: the token is required.
func (a *Agent) handleLog(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ok := a.token != "" && r.URL.Query().Get("agent_token") == a.token
	a.mu.Unlock()
	if !ok {
		writeFault(w, http.StatusUnauthorized, "401 Unauthorized: Token invalid.")
		return
	}
	offset, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	offset = max(offset, 0)
	follow := strings.EqualFold(r.URL.Query().Get("follow"), "true")
	data, written := a.log.since(offset)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set(wire.AgentLogOffsetHeader, strconv.FormatInt(offset, 10))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for {
		if _, err := w.Write(data); err != nil || rc.Flush() != nil || !follow {
			return
		}
		offset += int64(len(data))
		select {
		case <-written:
		case <-r.Context().Done():
			return
		case <-a.ctx.Done():
			return
		}
		data, written = a.log.since(offset)
	}
}
