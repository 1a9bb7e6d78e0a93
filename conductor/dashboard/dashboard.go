// Package dashboard is the conductor's web dashboard, served under
// /dashboard/ from assets embedded in the binary: a fleet table (name,
// provision and power state, driver, last error, a live progress bar with
// rate and ETA for writing nodes) with filters by state, and a page per
// node with its history, a per-phase timing chart of each deploy, its
// ports and its inspection inventory. Pages update live over server-sent
// events fed by the conductor's change feed (conductor/changefeed): the
// dashboard keeps every node's summary in memory, drops changes that do
// not change a summary (heartbeats), and sends each browser the changed
// summaries, coalesced per node and at most every MinInterval. Nothing
// polls the store or the nodes.
//
// Browsers log in with a form (when an Authenticator is configured) that
// sets a signed, HttpOnly, SameSite=Strict session cookie; state-changing
// requests carry a CSRF token. The dashboard is read-only.
package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Reader is what the dashboard reads from the store.
type Reader interface {
	GetNode(ctx context.Context, ident string) (*store.Node, error)
	ListNodes(ctx context.Context, f store.NodeFilter) ([]*store.Node, error)
	ListPorts(ctx context.Context, f store.PortFilter) ([]*store.Port, error)
}

// Config configures the dashboard. Zero values take the defaults.
type Config struct {
	// Store is read for full loads and node pages (required).
	Store Reader
	// Feed is the store's change feed (required).
	Feed *changefeed.Feed
	// History answers node histories; nil means a FeedHistory the
	// dashboard keeps itself.
	History History
	// Auth checks logins; nil means no login (the dashboard is as open as
	// an API without authentication).
	Auth Authenticator
	// SessionKey signs session cookies (at least 16 bytes); empty means a
	// random key, so sessions end when the conductor restarts. Conductors
	// behind one load balancer need the same key.
	SessionKey []byte
	// SessionTTL is a login's lifetime (default 8 h).
	SessionTTL time.Duration
	// Conductor is this conductor's name, shown on the pages.
	Conductor string
	// MinInterval is the least time between two updates sent to one
	// browser; changes meanwhile are coalesced per node (default 250 ms).
	MinInterval time.Duration
	// MaxClients bounds the open event streams (default 256).
	MaxClients int
	// ClientMaxPending is the number of distinct changed nodes a browser
	// may fall behind by before it is sent the whole fleet again (default
	// 4096).
	ClientMaxPending int
	// Reload reloads the fleet from the store this often, a safety net for
	// changes no feed saw (default 5 min; negative never).
	Reload time.Duration
	// Logger receives errors (default slog.Default()).
	Logger *slog.Logger
}

// Dashboard serves /dashboard/. Run keeps its view of the fleet.
type Dashboard struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	fleet    *fleet
	history  History
	feedHist *FeedHistory
	sessions *sessions
	pages    *pages
	slots    chan struct{}
	loaded   chan struct{}
	// done is closed when Run returns: event streams end with it, so
	// that the server's shutdown need not wait for them.
	done chan struct{}
}

// New returns the dashboard.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Store == nil || cfg.Feed == nil {
		return nil, errors.New("dashboard: no store or change feed")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 250 * time.Millisecond
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 256
	}
	if cfg.ClientMaxPending <= 0 {
		cfg.ClientMaxPending = 4096
	}
	if cfg.Reload == 0 {
		cfg.Reload = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ss, err := newSessions(cfg.SessionKey, cfg.SessionTTL, time.Now)
	if err != nil {
		return nil, err
	}
	pg, err := loadPages()
	if err != nil {
		return nil, err
	}
	d := &Dashboard{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), fleet: newFleet(cfg.ClientMaxPending),
		sessions: ss, pages: pg, slots: make(chan struct{}, cfg.MaxClients), loaded: make(chan struct{}), done: make(chan struct{})}
	d.feedHist = NewFeedHistory(cfg.Conductor)
	d.history = cfg.History
	if d.history == nil {
		d.history = d.feedHist
	}
	m := d.mux
	m.Handle("GET /dashboard/static/", http.StripPrefix("/dashboard/static/", staticHandler()))
	m.HandleFunc("GET /dashboard/login", d.loginPage)
	m.HandleFunc("POST /dashboard/login", d.login)
	m.HandleFunc("POST /dashboard/logout", d.authed(false, d.logout))
	m.HandleFunc("GET /dashboard/{$}", d.authed(true, d.page("fleet")))
	m.HandleFunc("GET /dashboard/nodes/{ident}", d.authed(true, d.page("node")))
	m.HandleFunc("GET /dashboard/api/nodes/{ident}", d.authed(false, d.nodeDetail))
	m.HandleFunc("GET /dashboard/api/events", d.authed(false, d.events))
	m.HandleFunc("/dashboard/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Not found", http.StatusNotFound)
	})
	if !chartAvailable() {
		d.log.Warn("dashboard built without its chart library (run `make dashboard`): deploy timings show as tables only")
	}
	return d, nil
}

// Run keeps the dashboard's view of the fleet (and its history, when it
// keeps one) from the change feed until ctx ends.
func (d *Dashboard) Run(ctx context.Context) {
	defer close(d.done)
	reload := d.cfg.Reload
	if reload < 0 {
		reload = 0
	}
	once := false
	d.cfg.Feed.Follow(ctx, (*view)(d), changefeed.FollowOptions{MaxPending: 1 << 20, Reload: reload, Loaded: func() {
		if !once {
			once = true
			close(d.loaded)
		}
	}})
}

// Clients is the number of open event streams.
func (d *Dashboard) Clients() int { return len(d.slots) }

// view is the dashboard as a changefeed.View: one full read feeds both
// the fleet and the history.
type view Dashboard

// Load implements changefeed.View.
func (v *view) Load(ctx context.Context) error {
	nodes, err := v.cfg.Store.ListNodes(ctx, store.NodeFilter{})
	if err != nil {
		return fmt.Errorf("dashboard: load the fleet: %w", err)
	}
	v.fleet.reset(nodes)
	v.feedHist.reset(nodes)
	return nil
}

// Apply implements changefeed.View.
func (v *view) Apply(items []changefeed.Item[changefeed.Change]) {
	v.fleet.apply(items)
	v.feedHist.apply(items)
}

// ServeHTTP serves /dashboard/.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	d.mux.ServeHTTP(w, r)
}

// authed runs h with the request's session; without one, a page
// redirects to the login form and an API call gets 401.
func (d *Dashboard) authed(page bool, h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.cfg.Auth == nil {
			h(w, r, session{})
			return
		}
		if c, err := r.Cookie(cookieName); err == nil {
			if ss, ok := d.sessions.check(c.Value); ok {
				h(w, r, ss)
				return
			}
		}
		if page {
			http.Redirect(w, r, "/dashboard/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		writeJSONError(w, http.StatusUnauthorized, "Log in to the dashboard first.")
	}
}

// pageData is what the page templates show.
type pageData struct {
	Page      string
	NodeID    string
	User      string
	Role      string
	CSRF      string
	AuthOn    bool
	Conductor string
	Chart     bool
	Error     string
	Next      string
}

func (d *Dashboard) data(ss session) pageData {
	p := pageData{User: ss.User, Role: ss.Role, AuthOn: d.cfg.Auth != nil, Conductor: d.cfg.Conductor, Chart: chartAvailable()}
	if p.AuthOn {
		p.CSRF = d.sessions.csrfToken(ss)
	}
	return p
}

func (d *Dashboard) page(name string) func(http.ResponseWriter, *http.Request, session) {
	return func(w http.ResponseWriter, r *http.Request, ss session) {
		p := d.data(ss)
		p.Page = name
		p.NodeID = r.PathValue("ident")
		d.render(w, http.StatusOK, "page.html", p)
	}
}

func (d *Dashboard) render(w http.ResponseWriter, status int, tmpl string, p pageData) {
	var buf bytes.Buffer
	if err := d.pages.t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		d.log.Error("dashboard: render page", "page", tmpl, "error", err)
		http.Error(w, "Internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes()) //nolint:errcheck // the client went away
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Auth == nil {
		http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
		return
	}
	p := d.data(session{})
	p.Page, p.Next = "login", safeNext(r.URL.Query().Get("next"))
	d.render(w, http.StatusOK, "login.html", p)
}

// login checks the form's credentials and sets the session cookie.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Auth == nil {
		http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
		return
	}
	if !sameOrigin(r) {
		http.Error(w, "Cross-site login refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad login form", http.StatusBadRequest)
		return
	}
	user, pass := r.PostForm.Get("username"), r.PostForm.Get("password")
	next := safeNext(r.PostForm.Get("next"))
	role, ok := d.cfg.Auth.Authenticate(user, pass)
	if !ok || user == "" {
		d.log.Info("dashboard login refused", "user", user, "remote", r.RemoteAddr)
		p := d.data(session{})
		p.Page, p.Next, p.Error = "login", next, "Wrong user name or password."
		d.render(w, http.StatusUnauthorized, "login.html", p)
		return
	}
	v, _, err := d.sessions.issue(user, role)
	if err != nil {
		http.Error(w, "Internal error", http.StatusInternalServerError)
		return
	}
	setCookie(w, r, v, int(d.cfg.SessionTTL.Seconds()))
	d.log.Info("dashboard login", "user", user, "role", role, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout clears the session cookie; it needs the session's CSRF token.
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, ss session) {
	if d.cfg.Auth != nil {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		token := r.Header.Get("X-CSRF-Token")
		if token == "" {
			token = r.PostFormValue("csrf_token")
		}
		if !d.sessions.checkCSRF(ss, token) {
			http.Error(w, "Missing or wrong CSRF token", http.StatusForbidden)
			return
		}
	}
	setCookie(w, r, "", -1)
	http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
}

// nodeDetail serves one node's page data.
func (d *Dashboard) nodeDetail(w http.ResponseWriter, r *http.Request, _ session) {
	n, err := d.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if errors.Is(err, errdefs.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "No such node.")
		return
	}
	if err != nil {
		d.log.Error("dashboard: read node", "node", r.PathValue("ident"), "error", err)
		writeJSONError(w, http.StatusInternalServerError, "Reading the node failed.")
		return
	}
	ports, err := d.cfg.Store.ListPorts(r.Context(), store.PortFilter{NodeID: n.ID})
	if err != nil {
		d.log.Error("dashboard: read ports", "node", n.UUID, "error", err)
		writeJSONError(w, http.StatusInternalServerError, "Reading the node's ports failed.")
		return
	}
	hist, err := d.history.NodeHistory(r.Context(), n.UUID)
	if err != nil {
		d.log.Error("dashboard: read history", "node", n.UUID, "error", err)
		writeJSONError(w, http.StatusInternalServerError, "Reading the node's history failed.")
		return
	}
	writeJSON(w, http.StatusOK, detailOf(n, ports, hist, d.feedHist.Deploys(n.UUID), d.cfg.History == nil))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// events streams the fleet (or one node, ?node=UUID) as server-sent
// events: a "snapshot" first (and again whenever the browser fell too far
// behind), then "nodes" events with the summaries that changed (deleted
// ones flagged), at most one every MinInterval.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request, _ session) {
	select {
	case d.slots <- struct{}{}:
		defer func() { <-d.slots }()
	default:
		writeJSONError(w, http.StatusServiceUnavailable, "Too many dashboard clients.")
		return
	}
	ctx := r.Context()
	select {
	case <-d.loaded:
	case <-ctx.Done():
		return
	case <-d.done:
		return
	}
	node := r.URL.Query().Get("node")
	rc := http.NewResponseController(w)
	sub := d.fleet.hub.SubscribeLimit(d.cfg.ClientMaxPending)
	defer sub.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	send := func() bool {
		if err := rc.SetWriteDeadline(time.Now().Add(30 * time.Second)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		buf.Reset()
		return rc.Flush() == nil
	}
	snapshot := func() bool {
		seq := sub.Seq()
		writeEvent(&buf, "snapshot", seq, d.fleet.snapshot(node))
		return send()
	}
	if !snapshot() {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.done:
			return
		case <-keepalive.C:
			buf.WriteString(": keepalive\n\n")
			if !send() {
				return
			}
			continue
		case <-sub.Ready():
		}
		items, resync := sub.Take()
		if resync {
			if !snapshot() {
				return
			}
		} else {
			var (
				changed []*fleetItem
				seq     uint64
			)
			for _, it := range items {
				seq = max(seq, it.Seq)
				if node == "" || it.Key == node {
					changed = append(changed, it.Value)
				}
			}
			if len(changed) > 0 {
				writeEvent(&buf, "nodes", seq, changed)
				if !send() {
					return
				}
			}
		}
		// Let the next changes gather, coalesced per node.
		pause.Reset(d.cfg.MinInterval)
		select {
		case <-ctx.Done():
			return
		case <-d.done:
			return
		case <-pause.C:
		}
	}
}

// writeEvent writes one server-sent event whose data is
// {"seq":…,"sent_at":…,"nodes":[…]}.
func writeEvent(buf *bytes.Buffer, name string, seq uint64, items []*fleetItem) {
	buf.WriteString("event: ")
	buf.WriteString(name)
	buf.WriteString("\nid: ")
	buf.WriteString(strconv.FormatUint(seq, 10))
	buf.WriteString("\ndata: {\"seq\":")
	buf.WriteString(strconv.FormatUint(seq, 10))
	buf.WriteString(",\"sent_at\":")
	buf.WriteString(strconv.FormatInt(time.Now().UnixMilli(), 10))
	buf.WriteString(",\"nodes\":[")
	for i, it := range items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(it.JSON) // compact JSON: no newlines
	}
	buf.WriteString("]}\n\n")
}

// trimURL drops the user information, query and fragment of an image URL
// (they may hold credentials).
func trimURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			return s[:i]
		}
		return s
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
