package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
)

// HistoryReader reads node history (store.HistoryStore).
type HistoryReader interface {
	NodeHistory(ctx context.Context, nodeID int64, q store.HistoryQuery) ([]*store.HistoryEvent, error)
	NodeHistoryEvent(ctx context.Context, nodeID int64, uuid string) (*store.HistoryEvent, error)
}

// minorHistory introduced node history (Ironic 1.78).
const minorHistory = 78

// maxLimit caps a page of history (Ironic's [api]max_limit), which is
// also the page size without a limit.
const maxLimit = 1000

// Fields of history events: a list shows the standard ones, a detailed
// list and a single event the detail ones (Ironic's NodeHistoryController
// up to 1.112).
var (
	historyStandardFields = []string{"uuid", "created_at", "severity", "event"}
	historyDetailFields   = []string{"uuid", "created_at", "severity", "event_type", "event", "conductor", "user"}
)

// maxListedEvent is the length beyond which a list that is not detailed
// cuts an event's text (to 251 characters and "...").
const maxListedEvent = 255

// ironicBool parses a boolean query argument as Ironic does
// (oslo's bool_from_string, strict).
func ironicBool(name, raw string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "1", "t", "true", "on", "y", "yes":
		return true, nil
	case "0", "f", "false", "off", "n", "no":
		return false, nil
	}
	return false, errdefs.InvalidArgument("Invalid %s: Unrecognized value '%s', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'", name, raw)
}

// historyQuery reads the arguments of GET /v1/nodes/{ident}/history:
// detail, marker, limit, and sort_key (created_at only) and sort_dir.
func historyQuery(q url.Values) (store.HistoryQuery, bool, int, error) {
	var (
		hq     store.HistoryQuery
		detail bool
		limit  = maxLimit
		err    error
	)
	if raw := q.Get("detail"); raw != "" {
		if detail, err = ironicBool("detail", raw); err != nil {
			return hq, false, 0, err
		}
	}
	if m := q.Get("marker"); m != "" {
		if _, err := uuid.Parse(m); err != nil {
			return hq, false, 0, errdefs.InvalidArgument("Expected UUID for marker: %s", m)
		}
		hq.Marker = m
	}
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		switch {
		case err != nil:
			return hq, false, 0, errdefs.InvalidArgument("Expected an integer for limit: %s", raw)
		case n <= 0:
			return hq, false, 0, errdefs.InvalidArgument("Limit must be positive")
		}
		limit = min(n, maxLimit)
	}
	hq.Limit = limit
	if k := q.Get("sort_key"); k != "" && k != "created_at" {
		return hq, false, 0, errdefs.InvalidArgument("The sort_key value %s is an invalid field for sorting", k)
	}
	switch d := q.Get("sort_dir"); d {
	case "", "asc":
	case "desc":
		hq.Descending = true
	default:
		return hq, false, 0, errdefs.InvalidArgument("Invalid sort direction: %s. Acceptable values are 'asc' or 'desc'", d)
	}
	return hq, detail, limit, nil
}

// nodeHistory serves GET /v1/nodes/{ident}/history (API >= 1.78): the
// node's events, oldest first, in pages (marker, limit) with a "next"
// link when a page is full.
func (s *Server) nodeHistory(w http.ResponseWriter, r *http.Request, v version) {
	if v.minor < minorHistory {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	hq, detail, limit, err := historyQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	events, err := s.cfg.Store.NodeHistory(r.Context(), n.ID, hq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	base := s.baseURL(r)
	out := make([]map[string]any, 0, len(events))
	for _, e := range events {
		out = append(out, historyDoc(base, n.UUID, e, detail))
	}
	body := map[string]any{"history": out}
	if len(events) > 0 && len(events) == limit {
		nq := url.Values{}
		if detail {
			nq.Set("detail", "True")
		}
		if hq.Descending {
			nq.Set("sort_dir", "desc")
		}
		nq.Set("limit", strconv.Itoa(limit))
		nq.Set("marker", events[len(events)-1].UUID)
		body["next"] = base + "/v1/nodes/" + url.PathEscape(r.PathValue("ident")) + "/history?" + nq.Encode()
	}
	writeJSON(w, http.StatusOK, body)
}

// nodeHistoryEvent serves GET /v1/nodes/{ident}/history/{event} (API >=
// 1.78): one event, in detail.
func (s *Server) nodeHistoryEvent(w http.ResponseWriter, r *http.Request, v version) {
	if v.minor < minorHistory {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	n, err := s.cfg.Store.GetNode(r.Context(), r.PathValue("ident"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.cfg.Store.NodeHistoryEvent(r.Context(), n.ID, r.PathValue("event"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, historyDoc(s.baseURL(r), n.UUID, e, true))
}

// historyDoc renders an event as Ironic does: the standard or detail
// fields (an empty user as null) and a self link.
func historyDoc(base, nodeUUID string, e *store.HistoryEvent, detail bool) map[string]any {
	all := map[string]any{
		"uuid":       e.UUID,
		"created_at": e.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000-07:00"),
		"severity":   e.Severity,
		"event_type": e.EventType,
		"event":      e.Event,
		"conductor":  nullable(e.Conductor),
		"user":       nullable(e.User),
	}
	fields := historyDetailFields
	if !detail {
		fields = historyStandardFields
		if ev := e.Event; len([]rune(ev)) > maxListedEvent {
			all["event"] = string([]rune(ev)[:maxListedEvent-4]) + "..."
		}
	}
	doc := make(map[string]any, len(fields)+1)
	for _, f := range fields {
		doc[f] = all[f]
	}
	doc["links"] = []map[string]string{{
		"href": base + "/v1/nodes/" + nodeUUID + "/history/" + e.UUID,
		"rel":  "self",
	}}
	return doc
}
