package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// minHistory is the microversion of node history (Ironic 1.78).
var minHistory = Version{1, 78}

// HistoryEvent is one event of a node's history (Ironic's shape).
type HistoryEvent struct {
	UUID      string    `json:"uuid"`
	CreatedAt time.Time `json:"created_at"`
	Severity  string    `json:"severity"`
	EventType string    `json:"event_type"`
	Event     string    `json:"event"`
	Conductor string    `json:"conductor"`
	User      string    `json:"user"`
	// Raw is the event as the API sent it.
	Raw map[string]any `json:"-"`
}

// MaxHistoryPages bounds the pages History follows.
const MaxHistoryPages = 100

// History lists a node's history, oldest first, in detail, following the
// API's next links (at most MaxHistoryPages pages of at most limit events;
// limit 0 lets the server choose).
func (c *Client) History(ctx context.Context, ident string, limit int) ([]HistoryEvent, error) {
	if err := c.needs(ctx, minHistory, "node history"); err != nil {
		return nil, err
	}
	q := url.Values{"detail": {"True"}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "nodes/" + url.PathEscape(ident) + "/history?" + q.Encode()
	var out []HistoryEvent
	for range MaxHistoryPages {
		var page struct {
			History []map[string]any `json:"history"`
			Next    string           `json:"next"`
		}
		if err := c.do(ctx, http.MethodGet, path, nil, &page, http.StatusOK); err != nil {
			return nil, err
		}
		for _, raw := range page.History {
			e, err := eventOf(raw)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		if page.Next == "" || len(page.History) == 0 {
			return out, nil
		}
		next, err := c.relative(page.Next)
		if err != nil {
			return nil, err
		}
		path = next
	}
	return out, fmt.Errorf("node %s: history longer than %d pages", ident, MaxHistoryPages)
}

// relative turns a next link into a path under /v1/ of this client's
// endpoint; a link elsewhere is refused.
func (c *Client) relative(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("next link %q: %w", link, err)
	}
	i := strings.Index(u.Path, "/v1/")
	if i < 0 {
		return "", fmt.Errorf("next link %q is not under /v1/", link)
	}
	p := u.Path[i+len("/v1/"):]
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p, nil
}

// HistoryEvent reads one event of a node's history.
func (c *Client) HistoryEvent(ctx context.Context, ident, event string) (HistoryEvent, error) {
	if err := c.needs(ctx, minHistory, "node history"); err != nil {
		return HistoryEvent{}, err
	}
	var raw map[string]any
	if err := c.do(ctx, http.MethodGet, "nodes/"+url.PathEscape(ident)+"/history/"+url.PathEscape(event), nil, &raw, http.StatusOK); err != nil {
		return HistoryEvent{}, err
	}
	return eventOf(raw)
}

func eventOf(raw map[string]any) (HistoryEvent, error) {
	e := HistoryEvent{Raw: raw}
	str := func(k string) string { s, _ := raw[k].(string); return s }
	e.UUID, e.Severity, e.EventType, e.Event = str("uuid"), str("severity"), str("event_type"), str("event")
	e.Conductor, e.User = str("conductor"), str("user")
	if s := str("created_at"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return e, fmt.Errorf("history event %s: created_at %q: %w", e.UUID, s, err)
		}
		e.CreatedAt = t
	}
	return e, nil
}

// LogArchive is an archive of a node's agent logs the conductor keeps.
type LogArchive struct {
	Name        string    `json:"name"`
	Label       string    `json:"label"`
	Bytes       int64     `json:"bytes"`
	CollectedAt time.Time `json:"collected_at"`
}

// AgentLogIndex is what the conductor has of a node's agent logs.
type AgentLogIndex struct {
	Archives     []LogArchive `json:"agent_logs"`
	AgentRunning bool         `json:"agent_running"`
}

// AgentLogs lists a node's agent log archives, newest first (Rivet's
// route; a real Ironic has none).
func (c *Client) AgentLogs(ctx context.Context, ident string) (*AgentLogIndex, error) {
	var idx AgentLogIndex
	if err := c.do(ctx, http.MethodGet, "nodes/"+url.PathEscape(ident)+"/rivet/agent_logs", nil, &idx, http.StatusOK); err != nil {
		return nil, err
	}
	return &idx, nil
}

// AgentLogArchive opens one archive (a gzip-compressed tar); the caller
// closes it.
func (c *Client) AgentLogArchive(ctx context.Context, ident, name string) (io.ReadCloser, error) {
	resp, err := c.stream(ctx, "nodes/"+url.PathEscape(ident)+"/rivet/agent_logs/"+url.PathEscape(name))
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// FollowAgentLog opens the log of the agent running on a node, from
// offset on; with follow it goes on as the agent logs, until ctx ends or
// the agent stops. It returns the offset of the first byte; the caller
// closes the body. A node without a running agent is an *Error with
// status 409.
func (c *Client) FollowAgentLog(ctx context.Context, ident string, offset int64, follow bool) (io.ReadCloser, int64, error) {
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}}
	if follow {
		q.Set("follow", "true")
	}
	resp, err := c.stream(ctx, "nodes/"+url.PathEscape(ident)+"/rivet/agent_logs/live?"+q.Encode())
	if err != nil {
		return nil, 0, err
	}
	from, _ := strconv.ParseInt(resp.Header.Get(wire.AgentLogOffsetHeader), 10, 64)
	return resp.Body, from, nil
}
