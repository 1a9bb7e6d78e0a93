// Package fakeagent is an in-process stand-in for the deploy ramdisk agent,
// for tests of the conductor: it looks its node up and heartbeats against a
// conductor API exactly as IPA does, and serves the agent command API
// (agent/wire shapes) on 127.0.0.1, with a write_image that really downloads
// and checksums the image and reports progress while it runs.
package fakeagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/agent/wire"
)

// Config configures an agent. Zero values give a well-behaved agent.
type Config struct {
	// APIURL is the conductor API URL (ipa-api-url).
	APIURL string
	// MACs are the node's NIC addresses sent on lookup.
	MACs []string
	// Version is the agent_version sent on heartbeats (default "9.0.0").
	Version string
	// HeartbeatInterval is the time between heartbeats (default 50 ms),
	// overriding the heartbeat_timeout of the lookup config.
	HeartbeatInterval time.Duration
	// WriteDuration is the minimum time an image write takes (default 0);
	// WriteChunks is the number of progress updates (default 4).
	WriteDuration time.Duration
	WriteChunks   int
	// WriteError, when set, makes write_image fail with these details.
	WriteError string
	// BusyOnce answers the first execute_deploy_step with 409 (agent busy).
	BusyOnce bool
	// TokenOverride, when set, is sent on heartbeats instead of the token.
	TokenOverride string
	// OnPowerOff runs when the agent executes standby.power_off (the
	// machine turning itself off).
	OnPowerOff func()
}

// Agent is a running fake agent.
type Agent struct {
	cfg    Config
	srv    *http.Server
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	beat   chan struct{}

	mu         sync.Mutex
	apiURL     string
	token      string
	nodeUUID   string
	lookupCfg  wire.LookupConfig
	commands   []*wire.CommandResult
	calls      []string
	heartbeats []int
	imageInfo  *wire.ImageInfo
	busyUsed   bool
	poweredOff bool
}

// Start boots an agent: it listens on 127.0.0.1, then looks up and
// heartbeats in the background until Stop or ctx ends.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Version == "" {
		cfg.Version = "9.0.0"
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 50 * time.Millisecond
	}
	if cfg.WriteChunks <= 0 {
		cfg.WriteChunks = 4
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakeagent: listen: %w", err)
	}
	a := &Agent{cfg: cfg, ln: ln, apiURL: cfg.APIURL, beat: make(chan struct{}, 1)}
	a.ctx, a.cancel = context.WithCancel(ctx)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/commands/{$}", a.handlePost)
	mux.HandleFunc("GET /v1/commands/{$}", a.handleList)
	a.srv = &http.Server{Handler: mux}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		_ = a.srv.Serve(ln)
	}()
	go func() {
		defer a.wg.Done()
		a.loop()
	}()
	return a, nil
}

// Stop stops the agent (the machine losing power) and waits for it.
func (a *Agent) Stop() {
	a.cancel()
	a.srv.Close()
	a.wg.Wait()
}

// URL is the agent's callback URL.
func (a *Agent) URL() string { return "http://" + a.ln.Addr().String() }

// SetAPIURL points the agent at another conductor URL (a restarted one).
func (a *Agent) SetAPIURL(u string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.apiURL = u
}

// Token is the agent token received on lookup ("" before).
func (a *Agent) Token() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token
}

// NodeUUID is the node found on lookup.
func (a *Agent) NodeUUID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nodeUUID
}

// LookupConfig is the config part of the lookup answer.
func (a *Agent) LookupConfig() wire.LookupConfig {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lookupCfg
}

// Calls lists the commands received, in order ("deploy.get_deploy_steps", ...).
func (a *Agent) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// HeartbeatStatuses lists the HTTP statuses of the heartbeats sent.
func (a *Agent) HeartbeatStatuses() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.heartbeats...)
}

// ImageInfo is the image_info of the write_image step received, or nil.
func (a *Agent) ImageInfo() *wire.ImageInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.imageInfo
}

// loop looks the node up, then heartbeats until stopped or powered off.
func (a *Agent) loop() {
	for {
		ok, err := a.lookup()
		if ok {
			break
		}
		_ = err
		if !a.sleep(a.cfg.HeartbeatInterval) {
			return
		}
	}
	for {
		a.mu.Lock()
		off := a.poweredOff
		a.mu.Unlock()
		if off {
			return
		}
		a.heartbeat()
		t := time.NewTimer(a.cfg.HeartbeatInterval)
		select {
		case <-a.ctx.Done():
			t.Stop()
			return
		case <-a.beat:
			t.Stop()
		case <-t.C:
		}
	}
}

func (a *Agent) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (a *Agent) api() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.TrimSuffix(a.apiURL, "/")
}

func (a *Agent) lookup() (bool, error) {
	q := url.Values{"addresses": {strings.Join(a.cfg.MACs, ",")}}
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, a.api()+"/v1/lookup?"+q.Encode(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set(wire.APIVersionHeader, wire.LookupAPIVersion)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return false, fmt.Errorf("lookup: HTTP %d", resp.StatusCode)
	}
	var lr wire.LookupResponse
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nodeUUID = lr.Node.UUID
	a.lookupCfg = lr.Config
	if lr.Config.AgentToken != nil && *lr.Config.AgentToken != wire.Masked {
		a.token = *lr.Config.AgentToken
	}
	return true, nil
}

func (a *Agent) heartbeat() {
	a.mu.Lock()
	tok, node := a.token, a.nodeUUID
	a.mu.Unlock()
	if a.cfg.TokenOverride != "" {
		tok = a.cfg.TokenOverride
	}
	body, _ := json.Marshal(wire.HeartbeatRequest{CallbackURL: a.URL(), AgentToken: tok, AgentVersion: a.cfg.Version})
	req, err := http.NewRequestWithContext(a.ctx, http.MethodPost, a.api()+"/v1/heartbeat/"+node, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set(wire.APIVersionHeader, wire.HeartbeatAPIVersion)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	a.mu.Lock()
	a.heartbeats = append(a.heartbeats, resp.StatusCode)
	a.mu.Unlock()
}

// forceHeartbeat wakes the heartbeat loop, as IPA does when an async
// command ends.
func (a *Agent) forceHeartbeat() {
	select {
	case a.beat <- struct{}{}:
	default:
	}
}

func writeFault(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	code := wire.FaultClient
	if status >= 500 {
		code = wire.FaultServer
	}
	json.NewEncoder(w).Encode(wire.Fault{FaultCode: code, FaultString: text})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (a *Agent) handleList(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	list := wire.CommandList{Commands: []wire.CommandResult{}}
	for _, c := range a.commands {
		list.Commands = append(list.Commands, *c)
	}
	writeJSON(w, list)
}

func (a *Agent) handlePost(w http.ResponseWriter, r *http.Request) {
	var req wire.CommandRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || len(req.Params) == 0 {
		writeFault(w, http.StatusBadRequest, "Invalid request body")
		return
	}
	a.mu.Lock()
	tokenOK := a.token != "" && r.URL.Query().Get("agent_token") == a.token
	if !tokenOK {
		a.mu.Unlock()
		writeFault(w, http.StatusUnauthorized, "401 Unauthorized: Token invalid.")
		return
	}
	a.calls = append(a.calls, req.Name)
	if n := len(a.commands); n > 0 && a.commands[n-1].CommandStatus == wire.StatusRunning {
		name := a.commands[n-1].CommandName
		a.mu.Unlock()
		writeFault(w, http.StatusConflict, "Agent is busy: executing command "+name)
		return
	}
	if req.Name == "deploy.execute_deploy_step" && a.cfg.BusyOnce && !a.busyUsed {
		a.busyUsed = true
		a.mu.Unlock()
		writeFault(w, http.StatusConflict, "Agent is busy: executing command inject_files")
		return
	}
	short := req.Name[strings.IndexByte(req.Name, '.')+1:]
	res := &wire.CommandResult{ID: uuid.NewString(), CommandName: short, CommandStatus: wire.StatusRunning}
	a.mu.Unlock()

	var err error
	switch req.Name {
	case "deploy.get_deploy_steps":
		err = a.finish(res, wire.DeploySteps{
			DeploySteps: map[string][]wire.Step{"GenericHardwareManager": {
				{Step: "erase_devices_metadata", Interface: "deploy"},
				{Step: "write_image", Interface: "deploy"},
			}},
			HardwareManagerVersion: wire.HardwareManagerVersion{"generic_hardware_manager": "1.1"},
		}, nil)
	case "standby.get_partition_uuids":
		err = a.finish(res, wire.PartitionUUIDs{RootUUID: "0x1a2b3c4d"}, nil)
	case "deploy.execute_deploy_step":
		var p wire.ExecuteStepParams
		if json.Unmarshal(req.Params, &p) != nil || p.Step.Step != "write_image" {
			writeFault(w, http.StatusBadRequest, "Invalid command parameters: unknown deploy step")
			return
		}
		var args wire.WriteImageArgs
		b, _ := json.Marshal(p.Step.Args)
		if json.Unmarshal(b, &args) != nil || len(args.ImageInfo.URLs) == 0 {
			writeFault(w, http.StatusBadRequest, "Invalid command parameters: image_info")
			return
		}
		a.mu.Lock()
		a.imageInfo = &args.ImageInfo
		a.commands = append(a.commands, res)
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.writeImage(res, p.Step, args.ImageInfo)
		}()
	case "standby.power_off":
		a.mu.Lock()
		a.commands = append(a.commands, res)
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.sleep(10 * time.Millisecond)
			a.mu.Lock()
			res.CommandStatus = wire.StatusSucceeded
			a.poweredOff = true
			a.mu.Unlock()
			if a.cfg.OnPowerOff != nil {
				a.cfg.OnPowerOff()
			}
		}()
	default:
		writeFault(w, http.StatusBadRequest, "Invalid command: Unknown command: "+short)
		return
	}
	if err != nil {
		writeFault(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.mu.Lock()
	out := *res
	a.mu.Unlock()
	writeJSON(w, out)
}

// finish records a synchronous command's final result.
func (a *Agent) finish(res *wire.CommandResult, result any, cmdErr *wire.CommandError) error {
	b, err := json.Marshal(result)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	res.CommandResult = b
	res.CommandError = cmdErr
	res.CommandStatus = wire.StatusSucceeded
	if cmdErr != nil {
		res.CommandStatus = wire.StatusFailed
	}
	a.commands = append(a.commands, res)
	return nil
}

// writeImage downloads the image, verifies its checksum and reports
// progress, like a streamed raw write to a disk that is then discarded.
func (a *Agent) writeImage(res *wire.CommandResult, step wire.Step, info wire.ImageInfo) {
	defer a.forceHeartbeat()
	start := time.Now()
	progress := &wire.Progress{Phase: "download", StartedAt: unix(start), ETASeconds: -1}
	set := func() {
		b, _ := json.Marshal(wire.ProgressResult{Progress: progress})
		a.mu.Lock()
		res.CommandResult = b
		a.mu.Unlock()
	}
	fail := func(details string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		res.CommandStatus = wire.StatusFailed
		res.CommandResult = nil
		res.CommandError = &wire.CommandError{Type: "ImageDownloadError", Code: 500,
			Message: "Command execution failed", Details: details}
	}
	set()
	data, err := a.download(info.URLs[0], progress, set)
	if err != nil {
		fail(fmt.Sprintf("Error downloading image %s: %v", info.ID, err))
		return
	}
	if a.cfg.WriteError != "" {
		fail(a.cfg.WriteError)
		return
	}
	sum := sha256.Sum256(data)
	want := info.OSHashVal
	if want == "" {
		want = info.Checksum
	}
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, want) {
		fail(fmt.Sprintf("Image failed to verify against checksum. location: %s; image ID: %s; image checksum: %s; verification checksum: %s",
			info.URLs[0], info.ID, got, want))
		return
	}
	progress.Phase, progress.BytesWritten, progress.ETASeconds = "done", int64(len(data)), 0
	progress.UpdatedAt = unix(time.Now())
	b, _ := json.Marshal(map[string]any{
		"deploy_result": map[string]any{
			"result":   fmt.Sprintf("prepare_image: image (%s) written to device /dev/vda root_uuid=0x1a2b3c4d", info.ID),
			"progress": progress,
		},
		"deploy_step": step,
	})
	a.mu.Lock()
	res.CommandResult = b
	res.CommandStatus = wire.StatusSucceeded
	a.mu.Unlock()
}

// download reads the image in WriteChunks steps spread over WriteDuration,
// updating progress after each.
func (a *Agent) download(u string, p *wire.Progress, update func()) ([]byte, error) {
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	total := resp.ContentLength
	p.TotalBytes = total
	chunk := int64(64 << 10)
	if total > 0 {
		chunk = max(total/int64(a.cfg.WriteChunks), 1)
	}
	var buf bytes.Buffer
	for {
		n, err := io.CopyN(&buf, resp.Body, chunk)
		p.Phase = "write"
		p.BytesRead, p.BytesWritten = int64(buf.Len()), int64(buf.Len())
		now := time.Now()
		p.UpdatedAt = unix(now)
		if el := now.Sub(time.Unix(0, int64(p.StartedAt*1e9))).Seconds(); el > 0 {
			p.RateBytesPerSec = float64(buf.Len()) / el
			if total > 0 && p.RateBytesPerSec > 0 {
				p.ETASeconds = float64(total-int64(buf.Len())) / p.RateBytesPerSec
			}
		}
		update()
		if errors.Is(err, io.EOF) || n == 0 {
			break
		}
		if err != nil {
			return nil, err
		}
		if !a.sleep(a.cfg.WriteDuration / time.Duration(a.cfg.WriteChunks)) {
			return nil, a.ctx.Err()
		}
	}
	if total > 0 && int64(buf.Len()) != total {
		return nil, io.ErrUnexpectedEOF
	}
	return buf.Bytes(), nil
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
