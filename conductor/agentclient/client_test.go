package agentclient

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/agent/wire"
)

const token = "tok-0123456789abcdef0123456789abcdef012"

func newClient() *Client {
	return New(Config{Timeout: 2 * time.Second, RetryDelay: 10 * time.Millisecond})
}

func TestExecuteSendsIronicShape(t *testing.T) {
	var got struct {
		path, wait, tok, ctype string
		req                    wire.CommandRequest
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.path, got.ctype = r.URL.Path, r.Header.Get("Content-Type")
		got.wait, got.tok = r.URL.Query().Get("wait"), r.URL.Query().Get("agent_token")
		json.NewDecoder(r.Body).Decode(&got.req)
		json.NewEncoder(w).Encode(wire.CommandResult{ID: "1", CommandName: "get_partition_uuids",
			CommandStatus: wire.StatusSucceeded, CommandResult: json.RawMessage(`{"root uuid":"0x1a2b3c4d"}`)})
	}))
	defer srv.Close()

	res, err := newClient().Execute(context.Background(), srv.URL, token, "standby.get_partition_uuids", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if got.path != "/v1/commands/" || got.wait != "true" || got.tok != token || got.ctype != "application/json" {
		t.Errorf("request path=%q wait=%q token ok=%v ctype=%q", got.path, got.wait, got.tok == token, got.ctype)
	}
	if got.req.Name != "standby.get_partition_uuids" || string(got.req.Params) != "{}" {
		t.Errorf("body = %+v", got.req)
	}
	var pu wire.PartitionUUIDs
	if err := res.DecodeResult(&pu); err != nil || pu.RootUUID != "0x1a2b3c4d" {
		t.Errorf("result = %+v, %v", pu, err)
	}
}

func TestExecuteBusyAndAPIError(t *testing.T) {
	status, fault := http.StatusConflict, "Agent is busy: executing command execute_deploy_step"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(wire.Fault{FaultCode: "Client", FaultString: fault})
	}))
	defer srv.Close()
	c := newClient()

	_, err := c.Execute(context.Background(), srv.URL, token, "deploy.execute_deploy_step", map[string]any{}, false)
	if !errors.Is(err, ErrAgentBusy) {
		t.Fatalf("409: %v, want ErrAgentBusy", err)
	}
	status, fault = http.StatusBadRequest, "Invalid command: Unknown command: x"
	_, err = c.Execute(context.Background(), srv.URL, token, "deploy.x", nil, false)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || errors.Is(err, ErrAgentBusy) {
		t.Fatalf("400: %v", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestExecuteRetriesAndNeverLeaksToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused

	_, err = newClient().Execute(context.Background(), "http://"+addr, token, "standby.power_off", nil, false)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestExecuteDroppedPostButRunning(t *testing.T) {
	var mu sync.Mutex
	var posts int
	var running bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost {
			posts++
			running = true
			// The agent accepted the command, then the connection dropped.
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		list := wire.CommandList{}
		if running {
			list.Commands = []wire.CommandResult{{ID: "9", CommandName: "execute_deploy_step", CommandStatus: wire.StatusRunning}}
		}
		json.NewEncoder(w).Encode(list)
	}))
	defer srv.Close()

	res, err := newClient().Execute(context.Background(), srv.URL, token, "deploy.execute_deploy_step", map[string]any{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "9" || res.CommandStatus != wire.StatusRunning {
		t.Fatalf("result = %+v", res)
	}
	if posts != 1 {
		t.Fatalf("POSTed %d times, want 1 (the command was already running)", posts)
	}
}

func TestCommands(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/commands/" || r.URL.Query().Get("agent_token") != token {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"commands":[{"id":"1","command_name":"get_deploy_steps","command_status":"SUCCEEDED","command_error":null,"command_result":{}},
			{"id":"2","command_name":"execute_deploy_step","command_status":"RUNNING","command_error":null,"command_result":{"progress":{"phase":"write","bytes_written":1048576}}}]}`))
	}))
	defer srv.Close()
	list, err := newClient().Commands(context.Background(), srv.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	last := list.Last()
	var pr wire.ProgressResult
	if err := last.DecodeResult(&pr); err != nil || last.CommandName != "execute_deploy_step" || pr.Progress.BytesWritten != 1<<20 {
		t.Fatalf("last = %+v, progress %+v, %v", last, pr.Progress, err)
	}
}
