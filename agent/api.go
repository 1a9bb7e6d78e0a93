package agent

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	agentmetrics "github.com/rivetmetal/rivet/agent/metrics"
	"github.com/rivetmetal/rivet/wire"
)

// maxRequestBody caps a command request: a configdrive may be up to 64 MiB
// once decoded (IPA's limit), which base64 makes 86 MiB at most, plus the
// node and the rest. A larger body is refused with 413 before it is read
// (a declared length) or as soon as it goes past the cap.
const maxRequestBody = 96 << 20

// api serves IPA's HTTP API (contract §1).
type api struct {
	runner  *runner
	version string
	started time.Time
	tokens  *tokenGate
	log     *slog.Logger
	// logs is the agent's log, streamed at wire.AgentLogPath (nil: none
	// kept); stop ends the streams when the API shuts down.
	logs *LogBuffer
	stop <-chan struct{}
}

// reject answers a refused request and logs what happened and what the
// agent does next: nothing runs, the caller sees the error.
func (a *api) reject(w http.ResponseWriter, r *http.Request, name string, err error) {
	code, _ := httpError(err)
	if a.log != nil {
		next := "no command started; the agent keeps waiting for commands"
		if code == http.StatusConflict {
			next = "the running command continues; Ironic retries on a later heartbeat"
		}
		a.log.Warn("command refused", "command", name, "method", r.Method, "status", code, "error", err.Error(), "next", next)
	}
	writeError(w, err)
}

// tokenGate holds the agent token and the GET rule of IPA 10.2: GETs stay
// open until a GET arrives carrying a token; from then on every GET needs a
// valid one. POSTs always need it once the agent holds a token.
type tokenGate struct {
	mu        sync.Mutex
	token     string
	getLocked bool
}

func (g *tokenGate) set(tok string) {
	g.mu.Lock()
	g.token = tok
	g.mu.Unlock()
}

func (g *tokenGate) valid(given string) bool {
	g.mu.Lock()
	tok := g.token
	g.mu.Unlock()
	if tok == "" {
		return true // no token yet: IPA validates nothing
	}
	return subtle.ConstantTimeCompare([]byte(given), []byte(tok)) == 1
}

func (g *tokenGate) checkGet(r *http.Request) bool {
	given, present := r.URL.Query()["agent_token"]
	g.mu.Lock()
	if present {
		g.getLocked = true
	}
	locked := g.getLocked
	g.mu.Unlock()
	if !locked {
		return true
	}
	return len(given) > 0 && g.valid(given[0])
}

func (a *api) handler() http.Handler {
	mux := http.NewServeMux()
	for _, prefix := range []string{"", "/v1"} {
		mux.HandleFunc(prefix+"/status", a.status)
		mux.HandleFunc(prefix+"/commands", a.commands)
		mux.HandleFunc(prefix+"/commands/{$}", a.commands)
		mux.HandleFunc(prefix+"/commands/{id}", a.command)
	}
	mux.Handle("GET /metrics", agentmetrics.New(a.runner.lastProgress).Handler())
	mux.HandleFunc("GET "+wire.AgentLogPath, a.streamLogs)
	mux.HandleFunc("/v1", a.v1)
	mux.HandleFunc("/v1/{$}", a.v1)
	mux.HandleFunc("/{$}", a.root)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFound("The requested URL %s was not found on the server.", r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code, fault := httpError(err)
	writeJSON(w, code, fault)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, wire.Fault{FaultCode: wire.FaultClient, FaultString: "405 Method Not Allowed: The method is not allowed for the requested URL."})
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (a *api) root(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	base := baseURL(r)
	v1 := map[string]any{"id": "v1", "links": []wire.Link{
		{Href: base + "/v1", Rel: "self"},
		{Href: "https://docs.openstack.org/ironic-python-agent", Rel: "describedby", Type: "text/html"},
	}}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":            "OpenStack Ironic Python Agent API",
		"description":     "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
		"versions":        []any{v1},
		"default_version": v1,
	})
}

func (a *api) v1(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	base := baseURL(r)
	links := func(p string) []wire.Link {
		return []wire.Link{{Href: base + "/v1/" + p, Rel: "self"}, {Href: base + "/" + p, Rel: "bookmark"}}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id":       "v1",
		"links":    []wire.Link{{Href: base + "/v1", Rel: "self"}},
		"commands": links("commands"),
		"status":   links("status"),
		"media_types": []map[string]string{{
			"base": "application/json", "type": "application/vnd.openstack.ironic-python-agent.v1+json",
		}},
	})
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	writeJSON(w, http.StatusOK, wire.Status{
		StartedAt: float64(a.started.UnixNano()) / 1e9,
		Version:   a.version,
	})
}

func (a *api) commands(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		if !a.tokens.checkGet(r) {
			a.reject(w, r, "", errUnauthorized())
			return
		}
		writeJSON(w, http.StatusOK, wire.CommandList{Commands: a.runner.list()})
	case http.MethodPost:
		a.post(w, r)
	default:
		methodNotAllowed(w, "GET, POST")
	}
}

func (a *api) post(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !a.tokens.valid(q.Get("agent_token")) {
		a.reject(w, r, "", errUnauthorized())
		return
	}
	req, err := decodeCommandRequest(w, r, maxRequestBody)
	if err != nil {
		a.reject(w, r, "", err)
		return
	}
	if req.Name == "" {
		a.reject(w, r, "", errInvalidCommand("Missing command 'name' field."))
		return
	}
	if p := strings.TrimSpace(string(req.Params)); p == "" || p[0] != '{' {
		a.reject(w, r, req.Name, errInvalidCommand("Missing or invalid 'params' field."))
		return
	}
	e, err := a.runner.execute(req.Name, req.Params)
	if err != nil {
		a.reject(w, r, req.Name, err)
		return
	}
	if strings.EqualFold(q.Get("wait"), "true") {
		if err := e.wait(r.Context()); err != nil {
			return // the client went away
		}
	}
	writeJSON(w, http.StatusOK, e.snapshot())
}

// decodeCommandRequest reads a command request body of at most max bytes:
// exactly one JSON object, nothing after it. The body is read into a
// buffer sized by its declared length, never grown past max.
func decodeCommandRequest(w http.ResponseWriter, r *http.Request, max int64) (wire.CommandRequest, error) {
	var req wire.CommandRequest
	if r.ContentLength > max {
		return req, errTooLarge()
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, max)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, errTooLarge()
		}
		return req, errInvalidContent("reading the body: %v", err)
	}
	dec := json.NewDecoder(&buf)
	if err := dec.Decode(&req); err != nil {
		return req, errInvalidContent("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errInvalidContent("unexpected data after the JSON object")
	}
	return req, nil
}

func (a *api) command(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	if !a.tokens.checkGet(r) {
		writeError(w, errUnauthorized())
		return
	}
	e := a.runner.get(r.PathValue("id"))
	if e == nil {
		writeError(w, errNotFound("No command with id %s.", r.PathValue("id")))
		return
	}
	if strings.EqualFold(r.URL.Query().Get("wait"), "true") {
		if err := e.wait(r.Context()); err != nil {
			if errors.Is(err, r.Context().Err()) {
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, e.snapshot())
}

// errTooLarge is werkzeug's answer (IPA's server) to an oversized body.
func errTooLarge() *Error {
	return &Error{Type: "RequestEntityTooLarge", Code: http.StatusRequestEntityTooLarge, Message: "413 Request Entity Too Large",
		Details: "The data value transmitted exceeds the capacity limit."}
}
