// Package provision drives nodes through the provision state machine. It
// is a set of small services over shared seams:
//
//   - Provisioning takes provision actions (manage, provide, clean,
//     inspect, adopt, active, rebuild, deleted, abort) and validates nodes;
//   - Power changes power states and boot devices on request;
//   - Ramdisk answers the deploy ramdisk's lookup and heartbeats;
//   - Inspection takes the inventory an inspecting ramdisk posts.
//
// Behind them, one step runner drives every kind of step operation —
// deploy and cleaning now, servicing next — the way Ironic's
// conductor/steps.py does: the conductor's own steps and the agent's,
// ordered by priority, each followed on the agent's heartbeats. The seams
// every service goes through are written once: node transactions (nodes,
// where transitions are logged), power-driver calls (machines), agent
// calls (agents), timings (timings.go) and the per-node job queue (jobs).
//
// Work for one node runs serially, one job at a time, and always starts
// after the transition that asked for it was committed. Every provision
// state change goes through the state machine (store.Node.Advance) under
// the node lock, in one transaction, and every transaction reads and
// writes the node's typed driver_internal_info once (internalinfo). Only
// nodes this conductor owns (Ownership) are driven; a heartbeat that
// reaches a conductor which does not own the node is recorded in the store
// and processed by the owner.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/hostpath"
	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/inspectdata"
	"github.com/rivetmetal/rivet/conductor/metrics"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Agent is what the engine needs of an agent API client
// (agentclient.Client).
type Agent interface {
	// Execute runs a command; with wait the result is final.
	Execute(ctx context.Context, ep agentclient.Endpoint, name string, params any, wait bool) (*wire.CommandResult, error)
	// Commands lists the agent's commands, oldest first.
	Commands(ctx context.Context, ep agentclient.Endpoint) (*wire.CommandList, error)
	// Wait polls until the last command named short has ended.
	Wait(ctx context.Context, ep agentclient.Endpoint, short string, interval time.Duration, attempts int) (*wire.CommandResult, error)
}

// Log collection policies (Ironic's [agent]deploy_logs_collect).
const (
	LogsOnFailure = "on_failure"
	LogsAlways    = "always"
	LogsNever     = "never"
)

// Config configures the engine. Zero durations and counts take the
// documented defaults.
type Config struct {
	// APIURL is the conductor's API URL as the conductor reaches it; a
	// node is given it through power.NodeView when its driver has one.
	APIURL string
	// DeployKernel and DeployRamdisk are the deploy ramdisk files used
	// when driver_info has no deploy_kernel / deploy_ramdisk.
	DeployKernel, DeployRamdisk string
	// StateDir holds the agents' certificates (certificates/), the agent
	// logs collected from ramdisks (agent-logs/) and scratch files; empty
	// means a directory under the system temporary directory.
	StateDir string
	// HeartbeatTimeout is given to agents in the lookup config
	// ([api]ramdisk_heartbeat_timeout, default 300 s).
	HeartbeatTimeout time.Duration
	// CallbackTimeout fails a deploy whose node sat in "wait call-back"
	// without a processed heartbeat this long
	// ([conductor]deploy_callback_timeout, default 1800 s).
	CallbackTimeout time.Duration
	// CleanCallbackTimeout is the same for "clean wait" (default 1800 s).
	CleanCallbackTimeout time.Duration
	// InspectWaitTimeout is the same for "inspect wait" (default 1800 s).
	InspectWaitTimeout time.Duration
	// ServiceCallbackTimeout is the same for "service wait" (default
	// 1800 s).
	ServiceCallbackTimeout time.Duration
	// InspectionAddPorts says which NICs inspection adds as ports
	// (Ironic's [inspector]add_ports: pxe, the default; all; active;
	// disabled).
	InspectionAddPorts inspectdata.AddPorts
	// ParseLLDP turns the LLDP data of an inspection into
	// plugin_data.parsed_lldp (default inspectdata.ParseLLDP, Ironic's
	// parse_lldp through conductor/lldp).
	ParseLLDP inspectdata.LLDPParser
	// CheckInterval is the period of the timeout checks (default 60 s).
	CheckInterval time.Duration
	// ProgressPollInterval is how often the agent's command list is read
	// while an image write runs, between heartbeats, to keep the progress
	// live (default 5 s; negative disables). A heartbeat that brought the
	// progress counts as a poll.
	ProgressPollInterval time.Duration
	// ProgressPollRate caps the progress polls of all nodes together, per
	// second (default 50): with thousands of nodes writing at once each
	// is polled less often rather than all at the same instant.
	ProgressPollRate int
	// PendingPollInterval is how often nodes this conductor owns are
	// searched for heartbeats recorded by other conductors and for work
	// committed elsewhere (default 2 s). Unused with SingleConductor.
	PendingPollInterval time.Duration
	// PowerOffRetries and PowerOffInterval bound the wait for a node to
	// power itself off at the end of a deploy before a hard power off
	// ([agent]post_deploy_get_power_state_retries, default 6 × 5 s); the
	// power state is read from 500 ms on, backing off to the interval.
	PowerOffRetries  int
	PowerOffInterval time.Duration
	// PowerStateTimeout bounds the wait for a requested power state to be
	// reached (default 60 s), polled every PowerStateInterval (default 1 s).
	PowerStateTimeout  time.Duration
	PowerStateInterval time.Duration
	// CommandWaitInterval and CommandWaitAttempts bound the polling of
	// image.install_bootloader ([agent]command_wait_interval and
	// command_wait_attempts, default 6 s × 100); polls start 250 ms apart
	// and back off to the interval.
	CommandWaitInterval time.Duration
	CommandWaitAttempts int
	// DisableAutomatedClean turns off the automated cleaning that runs
	// on provide and after undeploy (Ironic's [conductor]automated_clean,
	// on by default there too, so that one tenant's data never reaches
	// the next): nodes then go from cleaning to available at once.
	DisableAutomatedClean bool
	// CleanStepPriorities overrides the priorities of agent clean steps
	// for automated cleaning, keyed "<interface>.<step>" (Ironic's
	// [deploy]erase_devices_priority and friends); 0 disables a step. Nil
	// means DefaultCleanStepPriorities: erase_devices_metadata only.
	CleanStepPriorities map[string]int
	// LogsCollect says when the agent's system logs are collected
	// (LogsOnFailure, the default; LogsAlways; LogsNever).
	LogsCollect string
	// FastTrack reuses a running agent for the next deploy or cleaning
	// instead of rebooting the node ([deploy]fast_track; per node also
	// driver_info.fast_track). Off by default.
	FastTrack bool
	// FastTrackTimeout is how recent the agent's last heartbeat must be
	// for fast-track (default and maximum 300 s).
	FastTrackTimeout time.Duration
	// DefaultBootMode is the boot mode of nodes that set none ("uefi",
	// the default, or "bios").
	DefaultBootMode string
	// RequireAgentTLS refuses heartbeats whose callback_url is not
	// https:// ([agent]require_tls), with Ironic's 400 "TLS is required
	// by configuration". Off by default.
	RequireAgentTLS bool
	// HostFiles opens the host files nodes name (driver_info
	// deploy_kernel/deploy_ramdisk, file:// image sources), confined to
	// the allowed directories; nil allows none (the DeployKernel and
	// DeployRamdisk defaults, the operator's, are used as they are).
	HostFiles *hostpath.Confiner
	// ImageCache, when set, serves nodes the images they must not fetch
	// from the source themselves (file:// sources, image_download_source
	// "http"/"local"); nil refuses such images.
	ImageCache images.Resolver
	// JobStopTimeout bounds how long abort and delete wait for a node's
	// running job to stop once cancelled (default 10 s). Every job stops
	// at its next blocking call, so this bounds a driver or agent call
	// that ignores cancellation; a delete that waits in vain is refused.
	JobStopTimeout time.Duration
	// Ownership decides which nodes this conductor drives (default
	// SingleConductor: all of them).
	Ownership Ownership
	// Conductor is this conductor's host name (shown in node documents).
	Conductor string
	// Metrics receives the phases of deploys and cleanings as they end
	// and failed agent calls (default metrics.Nop{}).
	Metrics metrics.Recorder
	// Logger receives the engine's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultCleanStepPriorities runs erase_devices_metadata (IPA's 99) and
// not the full erase_devices shred in automated cleaning.
var DefaultCleanStepPriorities = map[string]int{
	"deploy.erase_devices":          0,
	"deploy.erase_devices_metadata": 99,
}

func (c *Config) setDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, 300*time.Second)
	def(&c.CallbackTimeout, 1800*time.Second)
	def(&c.CleanCallbackTimeout, 1800*time.Second)
	def(&c.InspectWaitTimeout, 1800*time.Second)
	def(&c.ServiceCallbackTimeout, 1800*time.Second)
	switch c.InspectionAddPorts {
	case "":
		c.InspectionAddPorts = inspectdata.AddPXE
	case inspectdata.AddPXE, inspectdata.AddAll, inspectdata.AddActive, inspectdata.AddDisabled:
	default:
		return fmt.Errorf("provision: inspection add_ports %q is none of pxe, all, active, disabled", c.InspectionAddPorts)
	}
	if c.ParseLLDP == nil {
		c.ParseLLDP = inspectdata.ParseLLDP
	}
	def(&c.CheckInterval, 60*time.Second)
	def(&c.ProgressPollInterval, 5*time.Second)
	if c.ProgressPollRate <= 0 {
		c.ProgressPollRate = 50
	}
	def(&c.PendingPollInterval, 2*time.Second)
	def(&c.PowerOffInterval, 5*time.Second)
	def(&c.PowerStateTimeout, 60*time.Second)
	def(&c.PowerStateInterval, time.Second)
	def(&c.CommandWaitInterval, 6*time.Second)
	def(&c.FastTrackTimeout, 300*time.Second)
	def(&c.JobStopTimeout, 10*time.Second)
	if c.FastTrackTimeout > 300*time.Second {
		c.FastTrackTimeout = 300 * time.Second
	}
	if c.PowerOffRetries <= 0 {
		c.PowerOffRetries = 6
	}
	if c.CommandWaitAttempts <= 0 {
		c.CommandWaitAttempts = 100
	}
	if c.CleanStepPriorities == nil {
		c.CleanStepPriorities = DefaultCleanStepPriorities
	}
	switch c.LogsCollect {
	case "":
		c.LogsCollect = LogsOnFailure
	case LogsOnFailure, LogsAlways, LogsNever:
	default:
		return fmt.Errorf("provision: logs collection %q is none of %s, %s, %s", c.LogsCollect, LogsOnFailure, LogsAlways, LogsNever)
	}
	switch c.DefaultBootMode {
	case "":
		c.DefaultBootMode = string(power.BootModeUEFI)
	case string(power.BootModeUEFI), string(power.BootModeBIOS):
	default:
		return fmt.Errorf("provision: default boot mode %q is neither uefi nor bios", c.DefaultBootMode)
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(os.TempDir(), "rivet-conductor")
	}
	if c.Ownership == nil {
		c.Ownership = SingleConductor{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Nop{}
	}
	return nil
}

// Engine is the provision engine: its services, the seams they share, and
// the background work (Start, Close).
type Engine struct {
	cfg      Config
	log      *slog.Logger
	nodes    *nodes
	machines *machines
	agents   *agents
	jobs     *jobs
	runner   *runner

	provisioning *Provisioning
	power        *Power
	ramdisk      *Ramdisk
	inspection   *Inspection
	agentLogs    *AgentLogs
	hardware     *Hardware

	mu      sync.Mutex
	started bool
	closed  bool
}

// New returns an engine over the store, the power drivers (by name) and
// an agent client. Call Start to run background work.
func New(st store.Store, drivers []power.Driver, agent Agent, cfg Config) (*Engine, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	byName := map[string]power.Driver{}
	for _, d := range drivers {
		if _, dup := byName[d.Name()]; dup {
			return nil, fmt.Errorf("provision: driver %q listed twice", d.Name())
		}
		byName[d.Name()] = d
	}
	e := &Engine{cfg: cfg, log: cfg.Logger}
	e.nodes = &nodes{st: st, own: cfg.Ownership, log: cfg.Logger, now: func() time.Time { return cfg.Now().UTC() }, phases: newPhaseMetrics(cfg.Metrics)}
	certs := &certificates{dir: filepath.Join(cfg.StateDir, "certificates"), log: cfg.Logger}
	e.machines = &machines{drivers: byName, nodes: e.nodes, certs: certs, cfg: &e.cfg, log: cfg.Logger}
	e.agents = &agents{client: agent, nodes: e.nodes, certs: certs, cfg: &e.cfg, log: cfg.Logger}
	e.jobs = newJobs(e.nodes, &e.cfg)
	e.runner = &runner{nodes: e.nodes, machines: e.machines, agents: e.agents, jobs: e.jobs, cfg: &e.cfg, log: cfg.Logger,
		beats: &beats{jobs: e.jobs, now: e.nodes.now, at: map[string]beat{}}}
	deploy := newDeployKind(e.runner)
	clean := newCleanKind(e.runner)
	service := newServiceKind(e.runner)
	e.runner.kinds = map[wire.StepKind]*kind{wire.DeployStepKind: deploy.k, wire.CleanStepKind: clean.k,
		wire.ServiceStepKind: service.k}
	e.provisioning = &Provisioning{nodes: e.nodes, machines: e.machines, deploy: deploy, clean: clean, jobs: e.jobs, cfg: &e.cfg, log: cfg.Logger}
	e.power = &Power{nodes: e.nodes, machines: e.machines, jobs: e.jobs, log: cfg.Logger}
	e.ramdisk = &Ramdisk{nodes: e.nodes, runner: e.runner, jobs: e.jobs, beats: e.runner.beats, certs: certs, cfg: &e.cfg, log: cfg.Logger}
	e.inspection = &Inspection{nodes: e.nodes, machines: e.machines, jobs: e.jobs, cfg: &e.cfg, log: cfg.Logger}
	e.agentLogs = &AgentLogs{nodes: e.nodes, agents: e.agents, dir: filepath.Join(cfg.StateDir, "agent-logs"), log: cfg.Logger}
	e.hardware = &Hardware{machines: e.machines, log: cfg.Logger}

	e.jobs.handle(jobVerify, e.provisioning.verify)
	e.jobs.handle(jobAdopt, e.provisioning.adopt)
	e.jobs.handle(jobTeardown, e.provisioning.teardown)
	e.jobs.handle(jobAbort, e.provisioning.afterAbort)
	e.jobs.handle(jobDeploy, deploy.start)
	e.jobs.handle(jobClean, clean.start)
	e.jobs.handle(jobHeartbeat, e.ramdisk.processHeartbeat)
	e.jobs.handle(jobPoll, e.runner.pollProgress)
	e.jobs.handle(jobTimeout, e.callbackTimeout)
	e.jobs.handle(jobInspect, e.inspection.inspect)
	e.jobs.handle(jobPower, e.power.changePower)
	e.jobs.handle(jobService, service.start)
	return e, nil
}

// Provisioning is the service that takes provision actions.
func (e *Engine) Provisioning() *Provisioning { return e.provisioning }

// Power is the service that changes power states and boot devices.
func (e *Engine) Power() *Power { return e.power }

// Ramdisk is the service that answers the ramdisk's lookup and heartbeats.
func (e *Engine) Ramdisk() *Ramdisk { return e.ramdisk }

// Inspection is the service that takes inspection data.
func (e *Engine) Inspection() *Inspection { return e.inspection }

// AgentLogs is the service that serves nodes' agent logs.
func (e *Engine) AgentLogs() *AgentLogs { return e.agentLogs }

// Hardware is the service that reads and changes what a node's BMC keeps
// beyond power: BIOS settings, firmware versions, virtual media, event
// subscriptions.
func (e *Engine) Hardware() *Hardware { return e.hardware }

// HasDriver reports whether a driver of that name is enabled.
func (e *Engine) HasDriver(name string) bool {
	_, ok := e.machines.drivers[name]
	return ok
}

// DriverNames lists the enabled drivers (the hardware types the API
// reports).
func (e *Engine) DriverNames() []string { return slices.Sorted(maps.Keys(e.machines.drivers)) }

// Start resumes the work of owned nodes left in transient states by a
// previous run, and starts the periodic work (timeouts, progress polls,
// heartbeats recorded by other conductors, nodes gained from them). It
// returns at once.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.started || e.closed {
		e.mu.Unlock()
		return errors.New("provision: engine already started or closed")
	}
	e.started = true
	e.mu.Unlock()
	for _, sub := range []string{"certificates", "agent-logs"} {
		if err := os.MkdirAll(filepath.Join(e.cfg.StateDir, sub), 0o750); err != nil {
			return fmt.Errorf("provision: state dir: %w", err)
		}
	}
	return e.jobs.start(ctx)
}

// Close stops all background work and waits for it. Nodes are left in
// their current, persisted state; Start on the next run (or the conductor
// that takes them over) resumes them.
func (e *Engine) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.jobs.close()
}

// callbackTimeout fails an operation whose agent did not call back in
// time (a job).
func (e *Engine) callbackTimeout(ctx context.Context, uuid string) {
	n, info, err := e.nodes.read(ctx, uuid)
	if err != nil || !e.jobs.timedOut(n) {
		return
	}
	if k := e.runner.waitingKind(n.ProvisionState); k != nil {
		k.fail(ctx, uuid, n.ProvisionState, k.timeoutMessage(n, info))
		return
	}
	if n.ProvisionState == statemachine.InspectWait {
		e.inspection.fail(ctx, uuid, statemachine.InspectWait, "Timeout reached while inspecting the node")
	}
}
