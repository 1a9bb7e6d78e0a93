package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

const testToken = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

func TestAPIDocuments(t *testing.T) {
	_, base := startAgent(t, standaloneConfig(), &fakePower{})
	c := client{t: t, base: base}
	st, b := c.do("GET", "/", nil)
	var root map[string]any
	json.Unmarshal(b, &root)
	if st != 200 || root["name"] != "OpenStack Ironic Python Agent API" {
		t.Fatalf("GET /: %d %s", st, b)
	}
	dv := root["default_version"].(map[string]any)
	if dv["id"] != "v1" || !strings.HasSuffix(dv["links"].([]any)[0].(map[string]any)["href"].(string), "/v1") {
		t.Fatalf("default_version = %v", dv)
	}
	for _, p := range []string{"/v1", "/v1/"} {
		st, b = c.do("GET", p, nil)
		var v1 map[string]any
		json.Unmarshal(b, &v1)
		if st != 200 || v1["id"] != "v1" || v1["media_types"] == nil || v1["commands"] == nil {
			t.Fatalf("GET %s: %d %s", p, st, b)
		}
	}
	for _, p := range []string{"/v1/status", "/status"} {
		st, b = c.do("GET", p, nil)
		var s wire.Status
		json.Unmarshal(b, &s)
		if st != 200 || s.Version != Version || s.StartedAt < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Fatalf("GET %s: %d %s", p, st, b)
		}
	}
	for _, p := range []string{"/v1/commands", "/v1/commands/", "/commands", "/commands/"} {
		st, b = c.do("GET", p, nil)
		if st != 200 || strings.TrimSpace(string(b)) != `{"commands":[]}` {
			t.Fatalf("GET %s: %d %s", p, st, b)
		}
	}
	st, b = c.do("GET", "/metrics", nil)
	if st != 200 || !strings.Contains(string(b), "go_goroutines") || strings.Contains(string(b), "rivet_agent_image_write") {
		t.Fatalf("GET /metrics before any write: %d %s", st, b)
	}
	st, b = c.do("GET", "/v2/nothing", nil)
	if st != 404 || fault(t, b).FaultCode != "Client" {
		t.Fatalf("unknown path: %d %s", st, b)
	}
	st, b = c.do("DELETE", "/v1/commands/", nil)
	if st != 405 {
		t.Fatalf("DELETE commands: %d %s", st, b)
	}
}

func TestAPIBadRequests(t *testing.T) {
	_, base := startAgent(t, standaloneConfig(), &fakePower{})
	c := client{t: t, base: base}
	cases := []struct {
		body       any
		status     int
		faultsubst string
	}{
		{map[string]any{"name": "standby", "params": map[string]any{}}, 400, "Invalid command: Command name must be of the form <extension>.<name>"},
		{map[string]any{"name": "nothing.here", "params": map[string]any{}}, 404, "Not found: Extension with id nothing not found."},
		{map[string]any{"name": "standby.fly", "params": map[string]any{}}, 400, "Invalid command: Unknown command: standby.fly"},
		{map[string]any{"params": map[string]any{}}, 400, "Invalid command"},
		{map[string]any{"name": "standby.sync"}, 400, "params"},
		{map[string]any{"name": "standby.sync", "params": []int{1}}, 400, "params"},
		{map[string]any{"name": "standby.prepare_image", "params": map[string]any{"image_info": map[string]any{"id": "x"}}}, 400, "Invalid command parameters: image_info is missing urls"},
		{map[string]any{"name": "standby.prepare_image", "params": map[string]any{"image_info": map[string]any{"id": "x", "urls": []string{"http://h/x"}}}}, 400, "no checksum"},
		{map[string]any{"name": "standby.prepare_image", "params": map[string]any{"image_info": map[string]any{"id": "x", "urls": []string{"ftp://h/x"}, "checksum": "x"}}}, 400, "not an http(s) or file URL"},
		{map[string]any{"name": "standby.prepare_image", "params": map[string]any{"image_info": "nope"}}, 400, "Invalid command parameters"},
		{map[string]any{"name": "deploy.execute_deploy_step", "params": map[string]any{"step": map[string]any{"step": "write_image"}}}, 400, "interface"},
	}
	for _, tc := range cases {
		st, b := c.do("POST", "/v1/commands/", tc.body)
		if st != tc.status {
			t.Errorf("%v: HTTP %d, want %d: %s", tc.body, st, tc.status, b)
			continue
		}
		mustContain(t, "faultstring", fault(t, b).FaultString, tc.faultsubst)
	}
	st, b := c.do("POST", "/v1/commands/", "not an object")
	if st != 400 || !strings.Contains(fault(t, b).FaultString, "Invalid request body") {
		t.Fatalf("bad JSON: %d %s", st, b)
	}
	// Rejected commands leave no result behind.
	if l := c.list(); len(l) != 0 {
		t.Fatalf("rejected commands recorded: %+v", l)
	}
}

func TestAPITokenRules(t *testing.T) {
	cfg := standaloneConfig()
	cfg.AgentToken = testToken
	_, base := startAgent(t, cfg, &fakePower{})
	c := client{t: t, base: base}
	st, b := c.post("standby.sync", map[string]any{}, true)
	if st != 401 || fault(t, b).FaultString != "401 Unauthorized: Token invalid." {
		t.Fatalf("POST without token: %d %s", st, b)
	}
	c.token = "wrong" + testToken[5:]
	if st, _ := c.post("standby.sync", map[string]any{}, true); st != 401 {
		t.Fatalf("POST with a wrong token: %d", st)
	}
	c.token = testToken
	if r := c.run("standby.sync", map[string]any{}, true); r.CommandStatus != wire.StatusSucceeded || r.CommandName != "sync" {
		t.Fatalf("POST with the token: %+v", r)
	}
	// GETs are open (Ironic 21.x polls without a token) ...
	if st, _ := c.do("GET", "/v1/commands/", nil); st != 200 {
		t.Fatalf("GET without token before any tokened GET: %d", st)
	}
	// ... until a GET arrives with one; then every GET needs it.
	if st, _ := c.do("GET", "/v1/commands/?agent_token="+testToken, nil); st != 200 {
		t.Fatalf("tokened GET: %d", st)
	}
	if st, _ := c.do("GET", "/v1/commands/", nil); st != 401 {
		t.Fatalf("GET without token after a tokened GET: %d", st)
	}
	if st, _ := c.do("GET", "/v1/commands/?agent_token=bad", nil); st != 401 {
		t.Fatalf("GET with a bad token: %d", st)
	}
}

// blockingExt is a test extension whose async command runs until released.
type blockingExt struct{ release chan struct{} }

func (blockingExt) Name() string { return "test" }
func (e blockingExt) Commands() []Command {
	return []Command{
		{Name: "block", Mode: Async, Prepare: noParams(func(ctx context.Context, job *Job) (any, error) {
			job.SetProgress(wire.Progress{Phase: "write", BytesWritten: 42})
			select {
			case <-e.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return "done", nil
		})},
		{Name: "text", Mode: Async, Prepare: noParams(func(context.Context, *Job) (any, error) { return asyncText("it worked"), nil })},
		{Name: "boom", Mode: Async, Prepare: noParams(func(context.Context, *Job) (any, error) { panic("kaboom") })},
	}
}

func TestRunnerBusyProgressAndWait(t *testing.T) {
	ext := blockingExt{release: make(chan struct{})}
	triggered := make(chan struct{}, 10)
	r, err := newRunner(context.Background(), testLogger(t), []Extension{ext}, func() { triggered <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	srv := (&api{runner: r, version: Version, started: time.Now(), tokens: &tokenGate{}}).handler()
	hs := newLoopbackServer(t, srv)
	c := client{t: t, base: hs}

	first := c.run("test.block", map[string]any{}, false)
	if first.CommandStatus != wire.StatusRunning || first.CommandName != "block" {
		t.Fatalf("async start: %+v", first)
	}
	st, b := c.post("test.text", map[string]any{}, false)
	if st != http.StatusConflict || fault(t, b).FaultString != "Agent is busy: executing command block" {
		t.Fatalf("busy: %d %s", st, b)
	}
	l := c.list()
	var p wire.ProgressResult
	if err := l[0].DecodeResult(&p); err != nil || p.Progress == nil || p.Progress.BytesWritten != 42 {
		t.Fatalf("running command shows no progress: %s", l[0].CommandResult)
	}
	// GET one command with wait=true returns once it ends.
	got := make(chan []byte)
	go func() {
		_, b := c.do("GET", "/v1/commands/"+first.ID+"?wait=true", nil)
		got <- b
	}()
	time.Sleep(50 * time.Millisecond)
	close(ext.release)
	var done wire.CommandResult
	json.Unmarshal(<-got, &done)
	if done.CommandStatus != wire.StatusSucceeded || string(done.CommandResult) != `{"result":"done"}` {
		t.Fatalf("waited result: %+v %s", done, done.CommandResult)
	}
	<-triggered // the forced heartbeat after an async command
	txt := c.run("test.text", map[string]any{}, true)
	if string(txt.CommandResult) != `{"result":"text: it worked"}` {
		t.Fatalf("async text result = %s", txt.CommandResult)
	}
	boom := c.run("test.boom", map[string]any{}, true)
	if boom.CommandStatus != wire.StatusFailed || boom.CommandError.Type != "CommandExecutionError" ||
		boom.CommandError.Code != 500 || !strings.Contains(boom.CommandError.Details, "kaboom") {
		t.Fatalf("panicking command: %+v", boom.CommandError)
	}
	if st, _ := c.do("GET", "/v1/commands/nope", nil); st != 404 {
		t.Fatalf("unknown command id: %d", st)
	}
	if l := c.list(); len(l) != 3 || l[0].ID != first.ID {
		t.Fatalf("results not kept oldest first: %+v", l)
	}
}
