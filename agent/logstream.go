package agent

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// logChunk bounds one write of the stream.
const logChunk = 64 << 10

// streamLogs serves wire.AgentLogPath. Unlike IPA's GETs it always needs the
// token: an agent that holds none yet refuses, since its log is the one
// thing on its API that tells about the machine and the deploy.
func (a *api) streamLogs(w http.ResponseWriter, r *http.Request) {
	given := r.URL.Query().Get("agent_token")
	if !a.tokens.has() || given == "" || !a.tokens.valid(given) {
		a.reject(w, r, "", errUnauthorized())
		return
	}
	if a.logs == nil {
		writeError(w, errNotFound("The agent keeps no log in memory."))
		return
	}
	q := r.URL.Query()
	var offset int64
	if s := q.Get("offset"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, errInvalidCommand("offset must be a non-negative integer"))
			return
		}
		offset = n
	}
	follow := strings.EqualFold(q.Get("follow"), "true")
	data, from, next, written := a.logs.Since(offset, logChunk)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(wire.AgentLogOffsetHeader, strconv.FormatInt(from, 10))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(b []byte) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(30 * time.Second)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if len(data) == 0 && rc.Flush() != nil { // the headers, at once
		return
	}
	for {
		if len(data) > 0 && !send(data) {
			return
		}
		if len(data) < logChunk {
			// Caught up.
			if !follow {
				return
			}
			select {
			case <-written:
			case <-r.Context().Done():
				return
			case <-a.stop:
				return
			}
		}
		want := next
		data, from, next, written = a.logs.Since(want, logChunk)
		if from > want && !send(fmt.Appendf(nil, "\n[rivet-agent: %d bytes of the log were dropped before they were sent]\n", from-want)) {
			return
		}
	}
}

// has reports whether the agent holds a token.
func (g *tokenGate) has() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.token != ""
}
