package dashboard

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/sqlite"
)

// staticAuth knows one user.
type staticAuth struct{ user, pass, role string }

func (a staticAuth) Authenticate(user, pass string) (string, bool) {
	ok := subtle.ConstantTimeCompare([]byte(user), []byte(a.user)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(a.pass)) == 1
	return a.role, ok
}

// env is a dashboard over a real SQLite store and change feed, served by a
// real HTTP server on 127.0.0.1.
type env struct {
	t    *testing.T
	st   store.Store
	d    *Dashboard
	srv  *httptest.Server
	stop func()
}

func newEnv(t *testing.T, auth Authenticator) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rivet.db"))
	if err != nil {
		t.Fatal(err)
	}
	feed := changefeed.New(db, changefeed.Config{})
	st := feed.Store()
	d, err := New(Config{Store: st, Feed: feed, Auth: auth, Conductor: "test", MinInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	<-d.loaded // changes from now on are seen as changes
	srv := httptest.NewServer(d)
	e := &env{t: t, st: st, d: d, srv: srv}
	e.stop = func() {
		srv.CloseClientConnections()
		cancel()
		<-done
		srv.Close()
		st.Close()
	}
	t.Cleanup(e.stop)
	return e
}

func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) createNode(name string, mut func(n *store.Node)) *store.Node {
	e.t.Helper()
	n := &store.Node{Name: name, Driver: "fake-hardware"}
	if err := e.st.CreateNode(context.Background(), n); err != nil {
		e.t.Fatal(err)
	}
	if mut != nil {
		e.update(name, mut)
	}
	return n
}

func (e *env) update(ident string, mut func(n *store.Node)) {
	e.t.Helper()
	if err := e.st.WithNodeLock(context.Background(), ident, func(tx store.Tx) error { mut(tx.Node()); return nil }); err != nil {
		e.t.Fatal(err)
	}
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoginSessionAndCSRF(t *testing.T) {
	e := newEnv(t, staticAuth{"ops", "s3cret", "admin"})
	c := e.client()

	// Without a session: pages go to the login form, the API says 401.
	resp, err := c.Get(e.srv.URL + "/dashboard/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/dashboard/login?next=") {
		t.Fatalf("page without session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = c.Get(e.srv.URL + "/dashboard/api/events")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("events without session: %d", resp.StatusCode)
	}
	resp, _ = c.Get(e.srv.URL + "/dashboard/login")
	page := body(t, resp)
	if !strings.Contains(page, `<label for="username">`) || !strings.Contains(page, `<label for="password">`) {
		t.Fatalf("login form lacks labels:\n%s", page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP = %q", csp)
	}

	post := func(origin string, form url.Values) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/dashboard/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := post(e.srv.URL, url.Values{"username": {"ops"}, "password": {"wrong"}}); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(body(t, resp), "Wrong user name or password") {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if resp := post("http://evil.example", url.Values{"username": {"ops"}, "password": {"s3cret"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site login: %d", resp.StatusCode)
	}
	resp = post(e.srv.URL, url.Values{"username": {"ops"}, "password": {"s3cret"}, "next": {"https://evil.example/"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/" {
		t.Fatalf("login: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == cookieName {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/dashboard/" {
		t.Fatalf("session cookie %+v", cookie)
	}

	resp, _ = c.Get(e.srv.URL + "/dashboard/")
	page = body(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "ops") || !strings.Contains(page, `id="fleet"`) {
		t.Fatalf("fleet page after login: %d", resp.StatusCode)
	}
	token := between(page, `<meta name="csrf-token" content="`, `"`)
	if token == "" {
		t.Fatal("no CSRF token on the page")
	}

	// A forged cookie is refused.
	forged := &http.Client{CheckRedirect: c.CheckRedirect}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/dashboard/api/nodes/x", nil)
	// One character of the MAC changed, for another: replacing the last
	// two with "AA" forged nothing when they were already (about one
	// cookie in a thousand), and the last one carries padding bits.
	forgedValue := []byte(cookie.Value)
	if i := len(forgedValue) - 5; forgedValue[i] == 'A' {
		forgedValue[i] = 'B'
	} else {
		forgedValue[i] = 'A'
	}
	req.AddCookie(&http.Cookie{Name: cookieName, Value: string(forgedValue)})
	resp, _ = forged.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged cookie: %d", resp.StatusCode)
	}

	// Logging out needs the CSRF token.
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/dashboard/logout", nil)
	resp, _ = c.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without CSRF token: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/dashboard/logout", strings.NewReader(url.Values{"csrf_token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ = c.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	resp, _ = c.Get(e.srv.URL + "/dashboard/")
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("page after logout: %d", resp.StatusCode)
	}
}

func TestSessionsExpireAndAreBoundToTheirKey(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s, err := newSessions([]byte("0123456789abcdef0123"), time.Hour, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	v, ss, err := s.issue("ops", "admin")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.check(v); !ok || got.User != "ops" || got.Role != "admin" {
		t.Fatalf("check = %+v %v", got, ok)
	}
	if !s.checkCSRF(ss, s.csrfToken(ss)) || s.checkCSRF(ss, "") || s.checkCSRF(ss, s.csrfToken(session{Nonce: "other"})) {
		t.Fatal("CSRF tokens not bound to their session")
	}
	other, _ := newSessions([]byte("another key 0123456"), time.Hour, func() time.Time { return now })
	if _, ok := other.check(v); ok {
		t.Fatal("a session signed with another key was accepted")
	}
	now = now.Add(time.Hour)
	if _, ok := s.check(v); ok {
		t.Fatal("an expired session was accepted")
	}
	if _, err := newSessions([]byte("short"), time.Hour, time.Now); err == nil {
		t.Fatal("a short key was accepted")
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	j := strings.Index(s, b)
	if j < 0 {
		return ""
	}
	return s[:j]
}

// sse reads server-sent events.
type sse struct {
	t    *testing.T
	resp *http.Response
	sc   *bufio.Scanner
}

type sseEvent struct {
	name string
	data struct {
		Seq   uint64    `json:"seq"`
		Nodes []Summary `json:"nodes"`
	}
}

func openEvents(t *testing.T, c *http.Client, u string) *sse {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { resp.Body.Close() })
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	return &sse{t: t, resp: resp, sc: sc}
}

func (s *sse) next() sseEvent {
	s.t.Helper()
	var ev sseEvent
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
				s.t.Fatalf("event data: %v", err)
			}
		case line == "" && ev.name != "":
			return ev
		}
	}
	s.t.Fatalf("event stream ended: %v", s.sc.Err())
	return ev
}

func TestEventsStreamSummariesThatChange(t *testing.T) {
	e := newEnv(t, nil)
	e.createNode("a", nil)
	s := openEvents(t, e.client(), e.srv.URL+"/dashboard/api/events")
	ev := s.next()
	if ev.name != "snapshot" {
		t.Fatalf("first event: %+v", ev)
	}
	// a is in the snapshot, or follows if the view had not seen it yet.
	for len(ev.data.Nodes) == 0 {
		ev = s.next()
	}
	if len(ev.data.Nodes) != 1 || ev.data.Nodes[0].Name != "a" || ev.data.Nodes[0].ProvisionState != "enroll" {
		t.Fatalf("a: %+v", ev)
	}

	// A change that leaves a's summary as it is (a heartbeat's
	// bookkeeping) is not sent; b's creation is.
	e.update("a", func(n *store.Node) { n.SetInternal("agent_last_heartbeat", "2026-01-01T00:00:00") })
	b := e.createNode("b", nil)
	ev = s.next()
	// a's creation may come once more when the snapshot was read from the
	// store before the view had seen it: the same summary, not the
	// heartbeat's.
	// Once at most: a second would be the heartbeat's summary.
	if ev.name == "nodes" && len(ev.data.Nodes) == 1 && ev.data.Nodes[0].Name == "a" && ev.data.Nodes[0].ProvisionState == "enroll" {
		ev = s.next()
	}
	if ev.name != "nodes" || len(ev.data.Nodes) != 1 || ev.data.Nodes[0].UUID != b.UUID {
		t.Fatalf("after a heartbeat of a and b's creation: %+v", ev)
	}

	// A deploying node's write progress is in its summary.
	e.update("a", func(n *store.Node) {
		n.ProvisionState = statemachine.DeployWait
		n.TargetProvisionState = statemachine.Active
		n.DeployStep = map[string]any{"step": "write_image", "interface": "deploy"}
		n.SetInternal(keyProgress, map[string]any{"phase": "write", "bytes_read": 512.0, "bytes_written": 256.0,
			"total_bytes": 1024.0, "rate_bytes_per_sec": 100.0, "eta_seconds": 5.0, "updated_at": 1.7e9})
	})
	ev = s.next()
	got := ev.data.Nodes[0]
	if got.Name != "a" || got.DeployStep != "write_image" || got.Progress == nil || got.Progress.BytesRead != 512 ||
		got.Progress.TotalBytes != 1024 || got.Progress.ETASeconds != 5 {
		t.Fatalf("progress: %+v %+v", got, got.Progress)
	}

	// Deletion.
	if err := e.st.WithNodeLock(context.Background(), "b", func(tx store.Tx) error { return tx.DeleteNode(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	ev = s.next()
	if len(ev.data.Nodes) != 1 || !ev.data.Nodes[0].Deleted || ev.data.Nodes[0].UUID != b.UUID {
		t.Fatalf("deletion: %+v", ev)
	}

	// A stream of one node sees only that node.
	one := openEvents(t, e.client(), e.srv.URL+"/dashboard/api/events?node="+b.UUID)
	if ev := one.next(); ev.name != "snapshot" || len(ev.data.Nodes) != 0 {
		t.Fatalf("snapshot of a deleted node: %+v", ev)
	}
	c := e.createNode("c", nil)
	e.update("a", func(n *store.Node) { n.LastError = "boom" })
	ev = s.next()
	for ev.data.Nodes[len(ev.data.Nodes)-1].Name != "a" {
		ev = s.next()
	}
	oneC := openEvents(t, e.client(), e.srv.URL+"/dashboard/api/events?node="+c.UUID)
	if ev := oneC.next(); len(ev.data.Nodes) != 1 || ev.data.Nodes[0].Name != "c" {
		t.Fatalf("snapshot of c: %+v", ev)
	}
	e.update("a", func(n *store.Node) { n.LastError = "boom again" })
	e.update("c", func(n *store.Node) { n.Maintenance, n.MaintenanceReason = true, "probe" })
	if ev := oneC.next(); len(ev.data.Nodes) != 1 || ev.data.Nodes[0].Name != "c" || ev.data.Nodes[0].MaintenanceReason != "probe" {
		t.Fatalf("stream of c: %+v", ev)
	}
}

func TestNodeDetailShowsHistoryTimingsPortsInventoryAndNoSecrets(t *testing.T) {
	e := newEnv(t, nil)
	n := e.createNode("n1", func(n *store.Node) {
		n.DriverInfo = map[string]any{"ipmi_password": "hunter2"}
		n.InstanceInfo = map[string]any{"image_source": "http://user:pw@images.example/os.qcow2?token=abc"}
		n.Properties = map[string]any{"cpus": 8.0, "memory_mb": 16384.0}
		n.SetInternal("agent_secret_token", "tok-123")
		n.SetInternal(keyInventry, map[string]any{
			"cpu":           map[string]any{"model_name": "Xeon", "count": 8.0, "architecture": "x86_64"},
			"disks":         []any{map[string]any{"name": "/dev/sda", "size": 1e12, "rotational": false, "secret": "x"}},
			"interfaces":    []any{map[string]any{"name": "eth0", "mac_address": "52:54:00:00:00:01"}},
			"system_vendor": map[string]any{"manufacturer": "ACME"},
		})
	})
	if err := e.st.CreatePort(context.Background(), &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01", PXEEnabled: true}); err != nil {
		t.Fatal(err)
	}
	// Let the dashboard's view catch up with the first changes, then
	// drive a deploy through the states a real one passes.
	s := openEvents(t, e.client(), e.srv.URL+"/dashboard/api/events?node="+n.UUID)
	s.next()
	moves := []statemachine.State{statemachine.Manageable, statemachine.Available, statemachine.Deploying,
		statemachine.DeployWait, statemachine.Deploying, statemachine.DeployWait, statemachine.Deploying}
	for _, st := range moves {
		e.update("n1", func(n *store.Node) { n.ProvisionState = st; n.ProvisionUpdatedAt = time.Now() })
	}
	e.update("n1", func(n *store.Node) {
		n.ProvisionState, n.ProvisionUpdatedAt = statemachine.Active, time.Now()
		n.SetInternal(keyTimings, map[string]any{"total": 20.0, "download_write": 9.5, "boot_to_lookup": 7.0,
			"bootloader": 1.0, "power": 2.0, "agent_download": 8.0, "agent_write": 8.5, "agent_decode": 7.5,
			"agent_decode_cpu": 6.0, "agent_decode_input_wait": 0.25, "agent_decode_output_wait": 0.5, "agent_zz_new": 1.0})
	})
	for ev := s.next(); ev.data.Nodes[0].ProvisionState != "active"; ev = s.next() {
	}

	resp, err := http.Get(e.srv.URL + "/dashboard/api/nodes/n1")
	if err != nil {
		t.Fatal(err)
	}
	raw := body(t, resp)
	for _, secret := range []string{"hunter2", "tok-123", "token=abc", "pw@", `"secret"`} {
		if strings.Contains(raw, secret) {
			t.Fatalf("node detail leaks %q:\n%s", secret, raw)
		}
	}
	var d Detail
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	if d.Image != "http://images.example/os.qcow2" || d.Properties["cpus"] != 8.0 {
		t.Fatalf("image %q properties %v", d.Image, d.Properties)
	}
	if len(d.Ports) != 1 || d.Ports[0].Address != "52:54:00:00:00:01" || !d.Ports[0].PXEEnabled {
		t.Fatalf("ports %+v", d.Ports)
	}
	if cpu := d.Inventory["cpu"].(map[string]any); cpu["model_name"] != "Xeon" {
		t.Fatalf("inventory %v", d.Inventory)
	}
	if len(d.Deploys) != 1 || d.Deploys[0].FinishedAt.IsZero() {
		t.Fatalf("deploys %+v", d.Deploys)
	}
	var names []string
	for _, p := range d.Deploys[0].Phases {
		names = append(names, p.Name)
	}
	// The agent's phases in the write's order, the decode stage's own
	// beneath it; a name the conductor does not know comes after them.
	if got := strings.Join(names, ","); got != "boot_to_lookup,download_write,bootloader,power,agent_download,agent_decode,"+
		"agent_decode_input_wait,agent_decode_output_wait,agent_decode_cpu,agent_write,agent_zz_new,total" {
		t.Fatalf("phase order %s", got)
	}
	var events []string
	for _, h := range d.History {
		events = append(events, h.Event)
	}
	want := []string{"Node created in enroll", "enroll → manageable", "manageable → available", "available → deploying", "deploying → active"}
	if d.HistorySource != "feed" || strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("history (%s):\n%s\nwant\n%s", d.HistorySource, strings.Join(events, "\n"), strings.Join(want, "\n"))
	}

	resp, _ = http.Get(e.srv.URL + "/dashboard/api/nodes/nope")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing node: %d", resp.StatusCode)
	}
}

func TestFailuresAreErrorsInTheHistory(t *testing.T) {
	h := NewFeedHistory("c1")
	n := &store.Node{UUID: "u1", ProvisionState: statemachine.DeployWait}
	h.reset([]*store.Node{n})
	failed := *n
	failed.ProvisionState, failed.LastError = statemachine.DeployFailed, "Image failed to verify"
	failed.PowerState = "power off"
	moves := []changefeed.Move{{From: statemachine.DeployWait, To: statemachine.Deploying}, {From: statemachine.Deploying, To: statemachine.DeployFailed}}
	h.apply([]changefeed.Item[changefeed.Change]{{Value: changefeed.Change{Kind: changefeed.NodeChanged, NodeUUID: "u1", Node: &failed, Moves: moves}}})
	ev, _ := h.NodeHistory(context.Background(), "u1")
	if len(ev) != 2 || ev[0].Severity != "ERROR" || ev[0].Event != "deploying → deploy failed: Image failed to verify" || ev[0].Conductor != "c1" ||
		ev[1].EventType != "power" {
		t.Fatalf("history %+v", ev)
	}
	// Another conductor's change is known by its result only.
	again := failed
	again.ProvisionState, again.LastError = statemachine.Deleting, ""
	h.apply([]changefeed.Item[changefeed.Change]{{Value: changefeed.Change{Kind: changefeed.NodeChanged, NodeUUID: "u1", Node: &again, Remote: true}}})
	ev, _ = h.NodeHistory(context.Background(), "u1")
	if len(ev) != 3 || ev[2].Event != "deploy failed → deleting" {
		t.Fatalf("history after a remote change %+v", ev)
	}
}

func TestStaticAssetsAndPages(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.srv.URL + "/dashboard/static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	js := body(t, resp)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || etag == "" || !strings.Contains(js, "EventSource") {
		t.Fatalf("app.js: %d etag %q", resp.StatusCode, etag)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/dashboard/static/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: %d", resp.StatusCode)
	}
	for _, p := range []string{"/dashboard/static/nope.js", "/dashboard/static/vendor/README.md", "/dashboard/nowhere"} {
		resp, _ := http.Get(e.srv.URL + p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	resp, _ = http.Get(e.srv.URL + "/dashboard/nodes/n1")
	page := body(t, resp)
	if !strings.Contains(page, `data-node="n1"`) || !strings.Contains(page, `id="timing-chart"`) || !strings.Contains(page, `role="img"`) {
		t.Fatalf("node page:\n%s", page)
	}
}
