package loadtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// TestSimulatedAgent drives one simulated agent as the conductor does:
// steps, the write (running, with progress, then done), busy and token
// answers.
func TestSimulatedAgent(t *testing.T) {
	s := newAgentServer(2, 300*time.Millisecond)
	s.agents[1].setToken("tok")
	srv := httptest.NewServer(s.handler())
	defer srv.Close()
	post := func(name, token string) (int, wire.CommandResult) {
		t.Helper()
		body, _ := json.Marshal(wire.CommandRequest{Name: name, Params: json.RawMessage(`{}`)})
		resp, err := http.Post(srv.URL+"/agent/1/v1/commands/?agent_token="+token, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res wire.CommandResult
		json.NewDecoder(resp.Body).Decode(&res)
		return resp.StatusCode, res
	}
	list := func() *wire.CommandList {
		t.Helper()
		resp, err := http.Get(srv.URL + "/agent/1/v1/commands/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l wire.CommandList
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
		return &l
	}
	if st, _ := post("deploy.get_deploy_steps", "wrong"); st != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", st)
	}
	if st, res := post("deploy.get_deploy_steps", "tok"); st != http.StatusOK || res.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("get_deploy_steps: %d %+v", st, res)
	}
	if st, res := post("deploy.execute_deploy_step", "tok"); st != http.StatusOK || res.CommandStatus != wire.StatusRunning {
		t.Fatalf("write_image: %d %+v", st, res)
	}
	if st, _ := post("standby.get_partition_uuids", "tok"); st != http.StatusConflict {
		t.Fatalf("command while writing: %d, want 409", st)
	}
	var pr wire.ProgressResult
	if last := list().Last(); last.CommandStatus != wire.StatusRunning || last.DecodeResult(&pr) != nil || pr.Progress == nil || pr.Progress.TotalBytes == 0 {
		t.Fatalf("running write: %+v", last)
	}
	time.Sleep(350 * time.Millisecond)
	if last := list().Last(); last.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("write after its duration: %+v", last)
	}
	if st, res := post("standby.power_off", "tok"); st != http.StatusOK || !s.agents[1].poweredOff() {
		t.Fatalf("power_off: %d %+v", st, res)
	}
	if s.polls.Load() != 2 || s.posts.Load() != 5 {
		t.Fatalf("counted %d polls, %d posts", s.polls.Load(), s.posts.Load())
	}
	resp, err := http.Get(srv.URL + "/agent/7/v1/commands/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown agent: %d", resp.StatusCode)
	}
}
