package loadtest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/wire"
)

// agentServer serves the command API of every simulated agent on one
// listener: agent i is http://<addr>/agent/<i>, so the conductor's
// "<agent_url>/v1/commands/" reaches /agent/<i>/v1/commands/.
type agentServer struct {
	agents []*simAgent
	// writeDuration is how long a simulated image write runs.
	writeDuration time.Duration
	polls, posts  atomic.Int64
	// writesStarted counts agents whose first write_image has started.
	writesStarted atomic.Int64
}

// simAgent is the command-side state of one simulated agent.
type simAgent struct {
	mu       sync.Mutex
	token    string
	commands []*wire.CommandResult
	writing  time.Time // start of the running write, zero if none
	written  *wire.CommandResult
	poweroff bool
	// stop, when set, stops the agent's heartbeats at power off.
	stop func()
}

func newAgentServer(n int, writeDuration time.Duration) *agentServer {
	s := &agentServer{agents: make([]*simAgent, n), writeDuration: writeDuration}
	for i := range s.agents {
		s.agents[i] = &simAgent{}
	}
	return s
}

func (s *agentServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agent/{id}/v1/commands/{$}", s.list)
	mux.HandleFunc("POST /agent/{id}/v1/commands/{$}", s.post)
	return mux
}

func (s *agentServer) agent(w http.ResponseWriter, r *http.Request) *simAgent {
	i, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || i < 0 || i >= len(s.agents) {
		http.NotFound(w, r)
		return nil
	}
	return s.agents[i]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// list answers GET /v1/commands/ (the conductor's command polling), with
// the running write's progress computed from the elapsed time.
func (s *agentServer) list(w http.ResponseWriter, r *http.Request) {
	a := s.agent(w, r)
	if a == nil {
		return
	}
	s.polls.Add(1)
	a.mu.Lock()
	a.refresh(s.writeDuration)
	out := wire.CommandList{Commands: make([]wire.CommandResult, len(a.commands))}
	for i, c := range a.commands {
		out.Commands[i] = *c
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// refresh updates the running write's result; a.mu is held.
func (a *simAgent) refresh(d time.Duration) {
	if a.writing.IsZero() || a.written == nil {
		return
	}
	const total = 4 << 30
	el := time.Since(a.writing)
	done := int64(float64(total) * min(1, el.Seconds()/d.Seconds()))
	p := &wire.Progress{Phase: "write", BytesRead: done, BytesWritten: done, TotalBytes: total,
		StartedAt: unixSec(a.writing), UpdatedAt: unixSec(time.Now()), ETASeconds: (d - el).Seconds()}
	if el.Seconds() > 0 {
		p.RateBytesPerSec = float64(done) / el.Seconds()
	}
	if el >= d {
		p.Phase, p.ETASeconds = "done", 0
		b, _ := json.Marshal(map[string]any{
			"deploy_result": wire.ImageResult{Result: "image written", Progress: p},
			"deploy_step":   map[string]any{"interface": "deploy", "step": "write_image"},
		})
		a.written.CommandResult, a.written.CommandStatus = b, wire.StatusSucceeded
		a.writing = time.Time{}
		return
	}
	b, _ := json.Marshal(wire.ProgressResult{Progress: p})
	a.written.CommandResult = b
}

func unixSec(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// post runs a command: the deploy steps and the partition UUIDs answer at
// once, write_image runs for writeDuration, anything else succeeds.
func (s *agentServer) post(w http.ResponseWriter, r *http.Request) {
	a := s.agent(w, r)
	if a == nil {
		return
	}
	s.posts.Add(1)
	var req wire.CommandRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, wire.Fault{FaultCode: wire.FaultClient, FaultString: "Invalid request body"})
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == "" || r.URL.Query().Get("agent_token") != a.token {
		writeJSON(w, http.StatusUnauthorized, wire.Fault{FaultCode: wire.FaultClient, FaultString: "401 Unauthorized: Token invalid."})
		return
	}
	a.refresh(s.writeDuration)
	if n := len(a.commands); n > 0 && a.commands[n-1].CommandStatus == wire.StatusRunning {
		writeJSON(w, http.StatusConflict, wire.Fault{FaultCode: wire.FaultClient,
			FaultString: "Agent is busy: executing command " + a.commands[n-1].CommandName})
		return
	}
	short := req.Name[strings.IndexByte(req.Name, '.')+1:]
	res := &wire.CommandResult{ID: uuid.NewString(), CommandName: short, CommandStatus: wire.StatusSucceeded}
	switch req.Name {
	case "deploy.get_deploy_steps":
		res.CommandResult, _ = json.Marshal(wire.DeploySteps{
			DeploySteps: map[string][]wire.Step{"GenericHardwareManager": {
				{Step: "write_image", Interface: "deploy"},
			}},
			HardwareManagerVersion: wire.HardwareManagerVersion{"generic_hardware_manager": "1.1"},
		})
	case "deploy.execute_deploy_step":
		res.CommandStatus = wire.StatusRunning
		if a.written == nil {
			s.writesStarted.Add(1)
		}
		a.writing, a.written = time.Now(), res
		a.refresh(s.writeDuration)
	case "standby.get_partition_uuids":
		res.CommandResult, _ = json.Marshal(wire.PartitionUUIDs{RootUUID: "0x1a2b3c4d"})
	case "standby.power_off":
		a.poweroff = true
		if a.stop != nil {
			a.stop()
		}
	default:
		res.CommandResult = json.RawMessage(`{}`)
	}
	a.commands = append(a.commands, res)
	writeJSON(w, http.StatusOK, res)
}

func (a *simAgent) setToken(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = tok
}

// onPowerOff sets what stops the agent's heartbeats when it powers off.
func (a *simAgent) onPowerOff(stop func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stop = stop
	if a.poweroff {
		stop()
	}
}

func (a *simAgent) poweredOff() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.poweroff
}
