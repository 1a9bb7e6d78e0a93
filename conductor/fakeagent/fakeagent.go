// Package fakeagent is an in-process stand-in for the deploy ramdisk agent,
// for tests of the conductor: it looks its node up and heartbeats against a
// conductor API with rivet-agent's own clients (lookup, heartbeat), and
// looks the node up again when its token is refused, as IPA does; it serves
// the agent command API (wire shapes) on 127.0.0.1 — over auto-TLS with its
// own certificate when asked — with a write_image that really downloads and
// checksums the image (and decodes a gzip or zstd one) and reports progress
// while it runs, clean steps, install_bootloader, and system log collection.
package fakeagent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"

	"github.com/rivetmetal/rivet/heartbeat"
	"github.com/rivetmetal/rivet/lookup"
	"github.com/rivetmetal/rivet/wire"
)

// Config configures an agent. Zero values give a well-behaved agent.
type Config struct {
	// APIURL is the conductor API URL (ipa-api-url).
	APIURL string
	// Client makes the lookup and heartbeat requests (default: the
	// clients' own), e.g. one trusting a TLS conductor's CA.
	Client *http.Client
	// MACs are the node's NIC addresses sent on lookup.
	MACs []string
	// Version is the agent_version sent on heartbeats (default "9.0.0").
	Version string
	// HeartbeatInterval is the time between heartbeats, and between
	// lookup attempts (default 50 ms), overriding the heartbeat_timeout of
	// the lookup config.
	HeartbeatInterval time.Duration
	// Logger receives the lookup and heartbeat clients' logs (default:
	// discarded).
	Logger *slog.Logger
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

	// TLS serves the agent API over https with a fresh self-signed
	// certificate for 127.0.0.1 (IPA's auto-TLS) and sends it as
	// agent_verify_ca in every heartbeat.
	TLS bool
	// VerifyCAOverride, when set, is sent as agent_verify_ca instead of
	// the real certificate.
	VerifyCAOverride string

	// DeploySteps are get_deploy_steps' steps (default: IPA's
	// erase_devices_metadata and write_image, priority 0).
	DeploySteps []wire.Step
	// CleanSteps are get_clean_steps' steps (default: IPA's generic
	// hardware manager's).
	CleanSteps []wire.Step
	// CleanDuration is how long each clean step runs (default 20 ms).
	CleanDuration time.Duration
	// CleanError, when set, makes execute_clean_step fail with these
	// details.
	CleanError string
	// CleanMismatchOnce answers the first execute_clean_step with
	// CLEAN_VERSION_MISMATCH.
	CleanMismatchOnce bool
	// HardwareManagerVersion is the generic manager's version (default
	// "1.1").
	HardwareManagerVersion string

	// NoBootloader answers image.install_bootloader as an agent without
	// it does (400 Unknown command).
	NoBootloader bool
	// BootloaderDuration is how long install_bootloader runs (default
	// 30 ms); BootloaderError makes it fail with these details.
	BootloaderDuration time.Duration
	BootloaderError    string
}

// DefaultCleanSteps are the clean steps of IPA's generic hardware manager
// (from Ironic's cleaning transcript).
func DefaultCleanSteps() []wire.Step {
	t := true
	step := func(name, iface string, prio int) wire.Step {
		return wire.Step{Step: name, Interface: iface, Priority: prio, Abortable: &t}
	}
	return []wire.Step{
		step("erase_devices", "deploy", 10), step("erase_devices_metadata", "deploy", 99),
		step("erase_pstore", "deploy", 0), step("delete_configuration", "raid", 0),
		step("create_configuration", "raid", 0), step("burnin_cpu", "deploy", 0),
		step("burnin_disk", "deploy", 0), step("burnin_memory", "deploy", 0),
		step("burnin_network", "deploy", 0),
	}
}

// Agent is a running fake agent.
type Agent struct {
	cfg    Config
	srv    *http.Server
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	certPEM string
	log     agentLog

	mu         sync.Mutex
	apiURL     string
	cleanSteps []map[string]any
	bootloader []wire.InstallBootloaderParams
	mismatched bool
	token      string
	nodeUUID   string
	lookupCfg  wire.LookupConfig
	relookup   bool
	beater     *heartbeat.Beater
	stopRun    context.CancelFunc
	commands   []*wire.CommandResult
	calls      []string
	callers    []Caller
	heartbeats []int
	imageInfo  *wire.ImageInfo
	// writeImageRequest is the last write_image request's body.
	writeImageRequest []byte
	busyUsed          bool
	poweredOff        bool
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
	if cfg.CleanSteps == nil {
		cfg.CleanSteps = DefaultCleanSteps()
	}
	if cfg.DeploySteps == nil {
		cfg.DeploySteps = []wire.Step{
			{Step: "erase_devices_metadata", Interface: "deploy"},
			{Step: "write_image", Interface: "deploy"},
		}
	}
	if cfg.CleanDuration <= 0 {
		cfg.CleanDuration = 20 * time.Millisecond
	}
	if cfg.BootloaderDuration <= 0 {
		cfg.BootloaderDuration = 30 * time.Millisecond
	}
	if cfg.HardwareManagerVersion == "" {
		cfg.HardwareManagerVersion = "1.1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakeagent: listen: %w", err)
	}
	a := &Agent{cfg: cfg, ln: ln, apiURL: cfg.APIURL}
	if cfg.TLS {
		cert, pemText, err := selfSigned()
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("fakeagent: certificate: %w", err)
		}
		a.certPEM = pemText
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		a.ln = ln
	}
	a.ctx, a.cancel = context.WithCancel(ctx)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/commands/{$}", a.handlePost)
	mux.HandleFunc("GET /v1/commands/{$}", a.handleList)
	mux.HandleFunc("GET "+wire.AgentLogPath, a.handleLog)
	a.srv = &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
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

// URL is the agent's callback URL (https with TLS).
func (a *Agent) URL() string {
	if a.cfg.TLS {
		return "https://" + a.ln.Addr().String()
	}
	return "http://" + a.ln.Addr().String()
}

// CertificatePEM is the agent's own certificate ("" without TLS).
func (a *Agent) CertificatePEM() string { return a.certPEM }

// CleanStepsRun lists the steps execute_clean_step received, in order.
func (a *Agent) CleanStepsRun() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.cleanSteps...)
}

// BootloaderCalls lists the params install_bootloader received.
func (a *Agent) BootloaderCalls() []wire.InstallBootloaderParams {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]wire.InstallBootloaderParams(nil), a.bootloader...)
}

// SetAPIURL points the agent at another conductor URL (a restarted one):
// the lookup or the heartbeats under way start again there.
func (a *Agent) SetAPIURL(u string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.apiURL = u
	if a.stopRun != nil {
		a.stopRun()
	}
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

// Caller is a command received and who sent it.
type Caller struct {
	Command string
	// UserAgent is the request's User-Agent (a conductor names itself).
	UserAgent string
}

// ListCommands is how Callers names a read of the command list.
const ListCommands = "GET /v1/commands"

// Callers lists the requests received (commands, and reads of the
// command list as ListCommands) with their senders, in order.
func (a *Agent) Callers() []Caller {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Caller(nil), a.callers...)
}

// HeartbeatStatuses lists the HTTP statuses of the heartbeats sent.
func (a *Agent) HeartbeatStatuses() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.heartbeats...)
}

// WriteImageRequest is the whole request body of the last write_image
// step received (execute_deploy_step), or nil.
func (a *Agent) WriteImageRequest() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.writeImageRequest
}

// ImageInfo is the image_info of the write_image step received, or nil.
func (a *Agent) ImageInfo() *wire.ImageInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.imageInfo
}

// loop looks the node up (lookup.Lookup), then heartbeats
// (heartbeat.Beater) until stopped or powered off; a refused token or an
// unknown node makes it look the node up again, a new API URL makes it
// start over there.
func (a *Agent) loop() {
	for {
		a.mu.Lock()
		if a.poweredOff || a.ctx.Err() != nil {
			a.mu.Unlock()
			return
		}
		ctx, stop := context.WithCancel(a.ctx)
		a.stopRun = stop
		apiURL := a.apiURL
		needLookup := a.nodeUUID == "" || a.relookup
		a.mu.Unlock()
		if needLookup {
			a.lookup(ctx, apiURL)
		} else {
			a.heartbeat(ctx, apiURL)
		}
		stop()
	}
}

// lookup finds the node with the real client, retrying every
// HeartbeatInterval or so until it is handed a token.
func (a *Agent) lookup(ctx context.Context, apiURL string) {
	res, err := lookup.Lookup(ctx, lookup.Config{APIURLs: []string{apiURL}, MACs: a.cfg.MACs, Client: a.cfg.Client,
		Interval: a.cfg.HeartbeatInterval, MaxInterval: a.cfg.HeartbeatInterval, Timeout: 24 * time.Hour,
		Logger: a.cfg.Logger})
	if err != nil {
		return // stopped, or pointed elsewhere
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nodeUUID, a.lookupCfg, a.token, a.relookup = res.Node.UUID, res.Config, res.Token(), false
}

// heartbeat beats with the real client every HeartbeatInterval (its
// jitter pinned to the middle of IPA's range) until ctx ends or the
// conductor refuses the token or the node.
func (a *Agent) heartbeat(ctx context.Context, apiURL string) {
	a.mu.Lock()
	tok := a.token
	if a.cfg.TokenOverride != "" {
		tok = a.cfg.TokenOverride
	}
	cfg := heartbeat.Config{APIURL: apiURL, NodeUUID: a.nodeUUID, CallbackURL: a.URL(), Token: tok, Client: a.cfg.Client,
		AgentVersion: a.cfg.Version, Logger: a.cfg.Logger,
		// Beats come Timeout × (0.3 + 0.3 × 0.5) apart, retries
		// ErrorInterval × 1.5: both HeartbeatInterval.
		Timeout: a.cfg.HeartbeatInterval * 100 / 45, ErrorInterval: a.cfg.HeartbeatInterval * 2 / 3,
		ForcedInterval: time.Millisecond, Rand: func() float64 { return 0.5 },
		OnBeat: func(status int, _ error) {
			if status != 0 {
				a.mu.Lock()
				a.heartbeats = append(a.heartbeats, status)
				a.mu.Unlock()
			}
		}}
	if a.cfg.TLS {
		cfg.VerifyCA = a.certPEM
		if a.cfg.VerifyCAOverride != "" {
			cfg.VerifyCA = a.cfg.VerifyCAOverride
		}
	}
	a.beater = heartbeat.New(cfg)
	b := a.beater
	a.mu.Unlock()
	err := b.Run(ctx)
	if errors.Is(err, heartbeat.ErrTokenRejected) || errors.Is(err, heartbeat.ErrNodeNotFound) {
		a.mu.Lock()
		a.relookup = true
		a.mu.Unlock()
	}
}

// sleep waits d unless the agent stops first.
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

// forceHeartbeat asks for a heartbeat now, as IPA does when an async
// command ends.
func (a *Agent) forceHeartbeat() {
	a.mu.Lock()
	b := a.beater
	a.mu.Unlock()
	if b != nil {
		b.Trigger()
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
	a.callers = append(a.callers, Caller{Command: ListCommands, UserAgent: r.UserAgent()})
	list := wire.CommandList{Commands: []wire.CommandResult{}}
	for _, c := range a.commands {
		list.Commands = append(list.Commands, *c)
	}
	writeJSON(w, list)
}

func (a *Agent) handlePost(w http.ResponseWriter, r *http.Request) {
	var req wire.CommandRequest
	// The real agent's cap: a 64 MiB config drive in base64 and the node.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 96<<20))
	if err != nil || json.Unmarshal(body, &req) != nil || len(req.Params) == 0 {
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
	a.callers = append(a.callers, Caller{Command: req.Name, UserAgent: r.UserAgent()})
	a.log.printf("fakeagent: command %s", req.Name)
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

	err = nil
	switch req.Name {
	case "deploy.get_deploy_steps":
		err = a.finish(res, wire.DeploySteps{
			DeploySteps:            map[string][]wire.Step{"GenericHardwareManager": a.cfg.DeploySteps},
			HardwareManagerVersion: wire.HardwareManagerVersion{"generic_hardware_manager": a.cfg.HardwareManagerVersion},
		}, nil)
	case "clean.get_clean_steps":
		err = a.finish(res, wire.CleanSteps{
			CleanSteps:             map[string][]wire.Step{"GenericHardwareManager": a.cfg.CleanSteps},
			HardwareManagerVersion: wire.HardwareManagerVersion{"generic_hardware_manager": a.cfg.HardwareManagerVersion},
		}, nil)
	case "clean.execute_clean_step":
		var p struct {
			Step         map[string]any    `json:"step"`
			Node         map[string]any    `json:"node"`
			CleanVersion map[string]string `json:"clean_version"`
		}
		if json.Unmarshal(req.Params, &p) != nil || p.Step["step"] == nil || p.Node["uuid"] == nil {
			writeFault(w, http.StatusBadRequest, "Invalid command parameters: step and node are required")
			return
		}
		a.mu.Lock()
		a.cleanSteps = append(a.cleanSteps, p.Step)
		a.commands = append(a.commands, res)
		mismatch := a.cfg.CleanMismatchOnce && !a.mismatched
		a.mismatched = a.mismatched || mismatch
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.cleanStep(res, p.Step, mismatch || p.CleanVersion["generic_hardware_manager"] != a.cfg.HardwareManagerVersion)
		}()
	case "standby.get_partition_uuids":
		err = a.finish(res, a.partitionUUIDs(), nil)
	case "image.install_bootloader":
		if a.cfg.NoBootloader {
			writeFault(w, http.StatusBadRequest, "Invalid command: Unknown command: install_bootloader")
			return
		}
		var p wire.InstallBootloaderParams
		if json.Unmarshal(req.Params, &p) != nil || wire.StringValue(p.RootUUID) == "" {
			writeFault(w, http.StatusBadRequest, "Invalid command parameters: root_uuid is required")
			return
		}
		a.mu.Lock()
		a.bootloader = append(a.bootloader, p)
		a.commands = append(a.commands, res)
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.runAsync(res, a.cfg.BootloaderDuration, nil, a.cfg.BootloaderError)
		}()
	case "log.collect_system_logs":
		err = a.finish(res, map[string]string{"system_logs": systemLogs()}, nil)
	case "deploy.execute_deploy_step":
		var p wire.ExecuteStepParams
		if json.Unmarshal(req.Params, &p) != nil || p.Step.Step != wire.WriteImageStep {
			writeFault(w, http.StatusBadRequest, "Invalid command parameters: unknown deploy step")
			return
		}
		var args wire.WriteImageArgs
		if err := json.Unmarshal(p.Step.Args, &args); err != nil {
			writeFault(w, http.StatusBadRequest, "Invalid command parameters: write_image args: "+err.Error())
			return
		}
		if err := args.ImageInfo.Validate(); err != nil {
			writeFault(w, http.StatusBadRequest, "Invalid command parameters: "+err.Error())
			return
		}
		// As the agent does: the step's configdrive argument wins over
		// image_info's.
		if args.Configdrive != nil {
			args.ImageInfo.Configdrive = args.Configdrive
		}
		a.mu.Lock()
		a.imageInfo = &args.ImageInfo
		a.writeImageRequest = body
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
			if a.stopRun != nil {
				a.stopRun()
			}
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

// partitionUUIDs answers get_partition_uuids for the image last written:
// a disk identifier for a whole-disk image, file system and ESP UUIDs for
// a partition image.
func (a *Agent) partitionUUIDs() wire.PartitionUUIDs {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.imageInfo != nil && a.imageInfo.IsPartitionImage() {
		pu := wire.PartitionUUIDs{RootUUID: "6f4c3e9a-1b2d-4c5e-8f70-1a2b3c4d5e6f",
			Partitions: map[string]string{"root": "/dev/vda2"}}
		if a.imageInfo.DeployBootMode == "uefi" {
			pu.EFISystemPartUUID = "2d9e6a1b-3c4f-4a5b-9c6d-7e8f9a0b1c2d"
			pu.Partitions["efi system partition"] = "/dev/vda1"
		}
		return pu
	}
	return wire.PartitionUUIDs{RootUUID: "0x1a2b3c4d"}
}

// runAsync ends an asynchronous command after d with result, or fails it
// with errText, then forces a heartbeat.
func (a *Agent) runAsync(res *wire.CommandResult, d time.Duration, result any, errText string) {
	defer a.forceHeartbeat()
	if !a.sleep(d) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if errText != "" {
		res.CommandStatus = wire.StatusFailed
		res.CommandError = &wire.CommandError{Type: "CommandExecutionError", Code: 500,
			Message: "Command execution failed", Details: errText}
		return
	}
	if result != nil {
		res.CommandResult, _ = json.Marshal(result)
	}
	res.CommandStatus = wire.StatusSucceeded
}

// cleanStep runs a clean step: a version mismatch, a failure, or the echo
// of the step as IPA's clean extension returns it.
func (a *Agent) cleanStep(res *wire.CommandResult, step map[string]any, mismatch bool) {
	if mismatch {
		defer a.forceHeartbeat()
		a.mu.Lock()
		res.CommandStatus = wire.StatusVersionMismatch
		res.CommandError = &wire.CommandError{Type: "VersionMismatch", Code: 409,
			Message: "Hardware managers version mismatch", Details: "generic_hardware_manager"}
		a.mu.Unlock()
		return
	}
	a.runAsync(res, a.cfg.CleanDuration, map[string]any{"clean_result": nil, "clean_step": step}, a.cfg.CleanError)
}

// systemLogs is a small gzipped tarball, base64-encoded, like IPA's.
func systemLogs() string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := []byte("fake agent journal\n")
	tw.WriteHeader(&tar.Header{Name: "journal", Mode: 0o644, Size: int64(len(body)), ModTime: time.Now()})
	tw.Write(body)
	tw.Close()
	zw.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// selfSigned makes a certificate like IPA's auto-TLS one: self-signed,
// P-256, one IP SAN (127.0.0.1), no basic constraints.
func selfSigned() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "fakeagent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemText, nil
}

// writeImage downloads the image, verifies its checksum and reports
// progress, like a streamed raw write to a disk that is then discarded.
func (a *Agent) writeImage(res *wire.CommandResult, step wire.PlannedStep, info wire.ImageInfo) {
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
	decoded, decodeSeconds, err := a.decode(data)
	if err != nil {
		fail(fmt.Sprintf("Error writing image %s: %v", info.ID, err))
		return
	}
	progress.Phase, progress.BytesWritten, progress.ETASeconds = "done", decoded, 0
	progress.UpdatedAt = unix(time.Now())
	el := progress.UpdatedAt - progress.StartedAt
	progress.Timings = map[string]float64{"download": el * 0.9, "verify": el * 0.1}
	if decodeSeconds > 0 {
		// Decoded from memory, the stage waited for neither input nor
		// disks; it had no thread of its own, so no CPU figure.
		progress.Timings["decode"] = decodeSeconds
		progress.Timings[wire.TimingDecodeInputWait] = 0
		progress.Timings[wire.TimingDecodeOutputWait] = 0
	}
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

// maxDecoded bounds what a compressed image may decode to: the fake agent
// has no disk to fill, and a small image must not keep it busy for long.
const maxDecoded = 1 << 30

// decode decodes a gzip or zstd image, as the real agent's decode stage
// does, to nowhere, and returns the decoded size and the time it took;
// any other image is raw: its own size, no time.
func (a *Agent) decode(data []byte) (int64, float64, error) {
	var (
		r   io.Reader
		err error
	)
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b, 0x08}):
		r, err = gzip.NewReader(bytes.NewReader(data))
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var z *zstd.Decoder
		z, err = zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
		if err == nil {
			defer z.Close()
			r = z
		}
	default:
		return int64(len(data)), 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("decoding the image: %w", err)
	}
	start := time.Now()
	n, err := io.Copy(io.Discard, io.LimitReader(r, maxDecoded+1))
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("decoding the image: %w", err)
	case n > maxDecoded:
		return 0, 0, fmt.Errorf("the image decodes to more than the fake agent's %d bytes", int64(maxDecoded))
	}
	return n, time.Since(start).Seconds(), nil
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
