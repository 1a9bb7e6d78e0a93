package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/store"
)

// ironicHistoryDetail is an event as Debian's Ironic 21.4 answered GET
// /v1/nodes/h1/history?detail=True (recorded by hand: a deploy that timed
// out waiting for the agent).
const ironicHistoryDetail = `{"uuid": "fc38847f-2bb8-431e-b94f-2de4feabb9a6", "created_at": "2026-12-05T03:09:46.232877+00:00", "severity": "ERROR", "event_type": "deploying", "event": "Timeout reached while waiting for callback for node 1365efb8-319a-4c77-b969-42fac83485f6", "conductor": "127.0.0.1", "user": null, "links": [{"href": "http://127.0.0.1:16385/v1/nodes/1365efb8-319a-4c77-b969-42fac83485f6/history/fc38847f-2bb8-431e-b94f-2de4feabb9a6", "rel": "self"}]}`

// addEvents records events of a node through a node transaction.
func (a *testAPI) addEvents(ident string, evs ...store.HistoryEvent) {
	a.t.Helper()
	if err := a.st.WithNodeLock(context.Background(), ident, func(tx store.Tx) error {
		for _, e := range evs {
			tx.AddHistory(e)
		}
		return nil
	}); err != nil {
		a.t.Fatal(err)
	}
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestNodeHistoryShapes checks GET /v1/nodes/{id}/history and
// /history/{event} against Ironic's: the fields of a list, of a detailed
// list and of one event (the same keys as the recorded Ironic answer),
// timestamps with microseconds and +00:00, null for an unknown user, the
// self link, the event cut to 255 characters in a list that is not
// detailed, and 404 before 1.78.
func TestNodeHistoryShapes(t *testing.T) {
	a := newTestAPI(t)
	n := a.createNode(map[string]any{"name": "h1", "driver": "fake-hardware"})
	id := n["uuid"].(string)
	at := time.Date(2026, 12, 5, 3, 9, 46, 232877000, time.UTC)
	long := strings.Repeat("é", 300)
	a.addEvents("h1",
		store.HistoryEvent{UUID: "fc38847f-2bb8-431e-b94f-2de4feabb9a6", CreatedAt: at, Severity: "ERROR", EventType: "deploying",
			Event: "Timeout reached while waiting for callback for node " + id, Conductor: "c1"},
		store.HistoryEvent{Severity: "INFO", EventType: "maintenance", Event: long, User: "alice", Conductor: "c1"})

	var ironic map[string]any
	if err := json.Unmarshal([]byte(ironicHistoryDetail), &ironic); err != nil {
		t.Fatal(err)
	}
	var list, detail struct {
		History []map[string]any `json:"history"`
		Next    string           `json:"next"`
	}
	if st, _ := a.do("1.78", "GET", "/v1/nodes/h1/history", nil, &list); st != 200 || len(list.History) != 2 || list.Next != "" {
		t.Fatalf("list: %d %+v", st, list)
	}
	if st, _ := a.do("1.78", "GET", "/v1/nodes/"+id+"/history?detail=True", nil, &detail); st != 200 || len(detail.History) != 2 {
		t.Fatalf("detailed list: %d %+v", st, detail)
	}
	if got, want := keysOf(detail.History[0]), keysOf(ironic); !slices.Equal(got, want) {
		t.Errorf("detail fields %v, Ironic's %v", got, want)
	}
	if got := keysOf(list.History[0]); !slices.Equal(got, []string{"created_at", "event", "links", "severity", "uuid"}) {
		t.Errorf("list fields %v", got)
	}
	e := detail.History[0]
	wantLink := a.srv.URL + "/v1/nodes/" + id + "/history/fc38847f-2bb8-431e-b94f-2de4feabb9a6"
	links, _ := e["links"].([]any)
	if e["created_at"] != "2026-12-05T03:09:46.232877+00:00" || e["user"] != nil || e["conductor"] != "c1" ||
		e["severity"] != "ERROR" || e["event_type"] != "deploying" || len(links) != 1 ||
		fmt.Sprint(links[0]) != fmt.Sprint(map[string]any{"href": wantLink, "rel": "self"}) {
		t.Errorf("detailed event %v", e)
	}
	if got := list.History[1]["event"].(string); got != strings.Repeat("é", 251)+"..." {
		t.Errorf("a long event in a list is %d characters, want 251 and ...", len([]rune(got)))
	}
	if detail.History[1]["event"] != long || detail.History[1]["user"] != "alice" {
		t.Errorf("a long event in a detailed list is cut, or its user is lost: %v", detail.History[1]["user"])
	}

	var one map[string]any
	if st, _ := a.do("1.78", "GET", "/v1/nodes/h1/history/FC38847F-2BB8-431E-B94F-2DE4FEABB9A6", nil, &one); st != 200 ||
		!slices.Equal(keysOf(one), keysOf(ironic)) || one["event"] != e["event"] {
		t.Errorf("one event: %d %v", st, one)
	}
	var body map[string]any
	st, _ := a.do("1.77", "GET", "/v1/nodes/h1/history", nil, &body)
	a.fault("history at 1.77", st, body, http.StatusNotFound, "")
	st, _ = a.do("1.77", "GET", "/v1/nodes/h1/history/fc38847f-2bb8-431e-b94f-2de4feabb9a6", nil, &body)
	a.fault("an event at 1.77", st, body, http.StatusNotFound, "")
	st, _ = a.do("1.78", "GET", "/v1/nodes/h1/history/"+id, nil, &body)
	a.fault("unknown event", st, body, http.StatusNotFound, "Node history record "+id+" could not be found.")
	st, _ = a.do("1.78", "GET", "/v1/nodes/nope/history", nil, &body)
	a.fault("unknown node", st, body, http.StatusNotFound, "")
}

// TestNodeHistoryPages checks paging (limit, marker, the next link, both
// orders) and Ironic's refusals of bad arguments.
func TestNodeHistoryPages(t *testing.T) {
	a := newTestAPI(t)
	a.createNode(map[string]any{"name": "h1", "driver": "fake-hardware"})
	for i := range 5 {
		a.addEvents("h1", store.HistoryEvent{Severity: "INFO", EventType: "provisioning", Event: fmt.Sprintf("e%d", i)})
	}
	type page struct {
		History []map[string]any `json:"history"`
		Next    string           `json:"next"`
	}
	get := func(path string) page {
		t.Helper()
		var p page
		if st, _ := a.do("1.78", "GET", path, nil, &p); st != 200 {
			t.Fatalf("GET %s: %d", path, st)
		}
		return p
	}
	texts := func(p page) string {
		var out []string
		for _, e := range p.History {
			out = append(out, e["event"].(string))
		}
		return strings.Join(out, ",")
	}
	var all []string
	path := "/v1/nodes/h1/history?detail=true&limit=2"
	for range 4 {
		p := get(path)
		all = append(all, texts(p))
		if p.Next == "" {
			break
		}
		if !strings.HasPrefix(p.Next, a.srv.URL+"/v1/nodes/h1/history?") || !strings.Contains(p.Next, "detail=True") {
			t.Fatalf("next link %q", p.Next)
		}
		path = strings.TrimPrefix(p.Next, a.srv.URL)
	}
	if got := strings.Join(all, "|"); got != "e0,e1|e2,e3|e4" {
		t.Fatalf("pages %q", got)
	}
	if p := get("/v1/nodes/h1/history?sort_dir=desc&limit=3"); texts(p) != "e4,e3,e2" || !strings.Contains(p.Next, "sort_dir=desc") {
		t.Fatalf("newest first: %q, next %q", texts(p), p.Next)
	}
	if p := get("/v1/nodes/h1/history?limit=5000"); texts(p) != "e0,e1,e2,e3,e4" || p.Next != "" {
		t.Fatalf("a limit over the maximum: %q, next %q", texts(p), p.Next)
	}
	for q, want := range map[string]string{
		"marker=nope":       "Expected UUID for marker: nope",
		"limit=0":           "Limit must be positive",
		"limit=x":           "Expected an integer for limit: x",
		"detail=maybe":      "Invalid detail: Unrecognized value 'maybe', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'",
		"sort_dir=up":       "Invalid sort direction: up. Acceptable values are 'asc' or 'desc'",
		"sort_key=severity": "The sort_key value severity is an invalid field for sorting",
	} {
		var body map[string]any
		st, _ := a.do("1.78", "GET", "/v1/nodes/h1/history?"+q, nil, &body)
		a.fault(q, st, body, http.StatusBadRequest, want)
	}
	var body map[string]any
	st, _ := a.do("1.78", "GET", "/v1/nodes/h1/history?marker=fc38847f-2bb8-431e-b94f-2de4feabb9a6", nil, &body)
	a.fault("unknown marker", st, body, http.StatusNotFound, "Node history record fc38847f-2bb8-431e-b94f-2de4feabb9a6 could not be found.")
}
