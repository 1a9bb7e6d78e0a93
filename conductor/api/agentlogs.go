package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/wire"
)

// AgentLogReader serves nodes' agent logs (provision.AgentLogs).
type AgentLogReader interface {
	Index(ctx context.Context, ident string) (*provision.AgentLogIndex, error)
	OpenArchive(ctx context.Context, ident, name string) (*os.File, provision.LogArchive, error)
	Follow(ctx context.Context, ident string, offset int64, follow bool) (*agentclient.LogStream, error)
}

// The agent-log routes are Rivet's own, under a path Ironic does not use;
// they answer at any microversion.
const agentLogsPath = "/v1/nodes/{ident}/rivet/agent_logs"

// agentLogIndex serves GET /v1/nodes/{ident}/rivet/agent_logs: the
// node's collected archives, newest first, and whether its agent runs.
func (s *Server) agentLogIndex(w http.ResponseWriter, r *http.Request, _ version) {
	if s.cfg.AgentLogs == nil {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	idx, err := s.cfg.AgentLogs.Index(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	base := s.baseURL(r) + "/v1/nodes/" + url.PathEscape(r.PathValue("ident")) + "/rivet/agent_logs/"
	list := make([]map[string]any, 0, len(idx.Archives))
	for _, a := range idx.Archives {
		list = append(list, map[string]any{
			"name": a.Name, "label": a.Label, "bytes": a.Size,
			"collected_at": a.CollectedAt.UTC().Format("2006-01-02T15:04:05.000000-07:00"),
			"links":        []wire.Link{{Href: base + a.Name, Rel: "self"}},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"agent_logs":    list,
		"agent_running": idx.AgentRunning,
		"links":         []wire.Link{{Href: base + "live", Rel: "live"}},
	})
}

// agentLogArchive serves GET /v1/nodes/{ident}/rivet/agent_logs/{name}:
// one archive, a gzip-compressed tar (with Range).
func (s *Server) agentLogArchive(w http.ResponseWriter, r *http.Request, _ version) {
	if s.cfg.AgentLogs == nil {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	f, a, err := s.cfg.AgentLogs.OpenArchive(r.Context(), r.PathValue("ident"), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+a.Name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, a.Name, a.CollectedAt, f)
}

// agentLogLive serves GET /v1/nodes/{ident}/rivet/agent_logs/live: the
// running agent's log from ?offset= on, and with ?follow=true as it is
// logged, proxied from the agent (wire.AgentLogPath) until the client goes
// away, the agent stops or the conductor shuts down.
func (s *Server) agentLogLive(w http.ResponseWriter, r *http.Request, _ version) {
	if s.cfg.AgentLogs == nil {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	q := r.URL.Query()
	var offset int64
	if raw := q.Get("offset"); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, errdefs.InvalidArgument("Invalid offset %q: a non-negative integer is required", raw))
			return
		}
		offset = n
	}
	follow := false
	if raw := q.Get("follow"); raw != "" {
		b, err := ironicBool("follow", raw)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		follow = b
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if s.cfg.StreamsDone != nil {
		go func() {
			select {
			case <-s.cfg.StreamsDone:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	stream, err := s.cfg.AgentLogs.Follow(ctx, r.PathValue("ident"), offset, follow)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer stream.Body.Close()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(wire.AgentLogOffsetHeader, strconv.FormatInt(stream.Offset, 10))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := stream.Body.Read(buf)
		if n > 0 {
			if err := rc.SetWriteDeadline(time.Now().Add(30 * time.Second)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if rerr != nil {
			return
		}
	}
}
