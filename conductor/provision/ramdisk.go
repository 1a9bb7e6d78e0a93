package provision

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// keyKernelParams records, while the deploy ramdisk boots for an
// operation, the kernel parameters it needs beyond ipa-api-url and BOOTIF
// (the inspection callback), for boot interfaces that build their own
// command line (conductor/boot's iPXE scripts).
const keyKernelParams = "ramdisk_kernel_params"

// nodeURL translates a URL the conductor reaches into the one the node
// reaches, for drivers that implement power.NodeView.
func (e *Engine) nodeURL(t *target, hostURL string) (string, error) {
	nv, ok := t.drv.(power.NodeView)
	if !ok {
		return hostURL, nil
	}
	u, err := nv.NodeURL(t.powerNode(), hostURL)
	if err != nil {
		return "", fmt.Errorf("node %s: map %s for the node: %w", t.node.UUID, hostURL, err)
	}
	return u, nil
}

// ramdisk describes the deploy ramdisk boot of a node: kernel and
// initramfs from driver_info or the conductor's defaults, and the kernel
// parameters the agent reads (extra ones last).
func (e *Engine) ramdisk(t *target, extra ...string) (power.Ramdisk, error) {
	files, err := e.ramdiskFiles(t.node)
	if err != nil {
		return power.Ramdisk{}, err
	}
	apiURL, err := e.nodeURL(t, e.cfg.APIURL)
	if err != nil {
		return power.Ramdisk{}, err
	}
	params := []string{"ipa-api-url=" + apiURL}
	if macs := t.powerNode().MACs; len(macs) > 0 {
		params = append(params, "BOOTIF="+macs[0])
	}
	params = append(params, "ipa-global-request-id=req-"+uuid.NewString())
	params = append(params, extra...)
	return power.Ramdisk{Kernel: files[0], Initramfs: files[1], Params: params}, nil
}

// errLookupNotFound is the one answer for an unknown node and a node in a
// state that forbids lookup, so the two cannot be told apart.
func errLookupNotFound() error { return errdefs.NotFound("Resource could not be found.") }

// lookupAllowed reports whether the ramdisk may look a node up in its
// current state (contract §3.3; with fast-track also enroll, manageable
// and available).
// nodeByUUIDOrMACs finds the node a ramdisk speaks for: by its UUID when
// the ramdisk knows it, else by the MACs of its ports.
func (e *Engine) nodeByUUIDOrMACs(ctx context.Context, nodeUUID string, macs []string) (*store.Node, error) {
	if nodeUUID != "" {
		return e.st.GetNode(ctx, nodeUUID)
	}
	return e.st.NodeByMACs(ctx, macs)
}

func (e *Engine) lookupAllowed(n *store.Node) bool {
	return statemachine.LookupAllowed[n.ProvisionState] ||
		(statemachine.FastTrackLookupAllowed[n.ProvisionState] && e.fastTrackEnabled(n))
}

// Lookup finds the node a deploy ramdisk runs on, by node UUID or by the
// MACs of its ports, provided the node is in a lookup-allowed state. With
// withToken (the agent declared API >= 1.62), the first lookup of an
// operation generates the agent token and returns it; later lookups get
// "******" (contract §4.6). The returned node is the committed one. A
// lookup during a deploy records the boot_to_lookup timing.
func (e *Engine) Lookup(ctx context.Context, macs []string, nodeUUID string, withToken bool) (*store.Node, *string, error) {
	n, err := e.nodeByUUIDOrMACs(ctx, nodeUUID, macs)
	if errors.Is(err, errdefs.ErrNotFound) {
		e.log.Warn("lookup found no node", "addresses", macs, "node_uuid", nodeUUID)
		return nil, nil, errLookupNotFound()
	}
	if err != nil {
		return nil, nil, err
	}
	if !e.lookupAllowed(n) {
		e.log.Warn("lookup refused: provision state does not allow it", "node", n.UUID,
			"provision_state", string(n.ProvisionState))
		return nil, nil, errLookupNotFound()
	}
	if !withToken {
		return n, nil, nil
	}
	var token string
	n, err = e.update(ctx, n.UUID, "", func(_ store.Tx, n *store.Node) error {
		if !e.lookupAllowed(n) {
			return errLookupNotFound()
		}
		if n.InternalString("agent_secret_token") != "" {
			e.log.Warn("agent token already handed out for this operation; answering with a masked token", "node", n.UUID)
			token = wire.Masked
			return nil
		}
		t, err := newToken()
		if err != nil {
			return fmt.Errorf("node %s: generate agent token: %w", n.UUID, err)
		}
		n.SetInternal("agent_secret_token", t)
		token = t
		if n.ProvisionState == statemachine.DeployWait || n.ProvisionState == statemachine.Deploying {
			tm, _ := n.DriverInternalInfo[keyTimings].(map[string]any)
			if _, done := tm[PhaseBootToLookup]; !done {
				timePhase(n, PhaseBootToLookup, markRamdiskOn, e.now())
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if token != wire.Masked {
		e.log.Info("agent token generated", "node", n.UUID)
	}
	return n, &token, nil
}

// newToken returns 32 random bytes as 43 URL-safe base64 characters
// (Python's secrets.token_urlsafe()).
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// tokenValid compares the presented token with the node's in constant time.
func tokenValid(n *store.Node, presented string) bool {
	stored := n.InternalString("agent_secret_token")
	if stored == "" || stored == wire.Masked || presented == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(stored), []byte(presented)) == 1
}

// checkHeartbeat validates a heartbeat against the node: the callback URL
// pinned since the last power off, the token, the agent's version.
func (e *Engine) checkHeartbeat(n *store.Node, hb wire.HeartbeatRequest) error {
	if url := n.InternalString("agent_url"); url != "" && url != hb.CallbackURL {
		e.log.Error("heartbeat with a different callback URL; not processed", "node", n.UUID,
			"callback_url", hb.CallbackURL, "agent_url", url)
		return errdefs.InvalidArgument(`Detected change in ramdisk provided "callback_url"`)
	}
	if hb.AgentToken == "" {
		e.log.Error("heartbeat without an agent token", "node", n.UUID)
		return errdefs.InvalidArgument("Agent token is required for heartbeat processing.")
	}
	if hb.AgentVersion == "" && hb.AgentStatus == "" {
		return errdefs.InvalidArgument("Agent did not transmit a version, and a version is required. Please update the agent being used.")
	}
	if !tokenValid(n, hb.AgentToken) {
		e.log.Error("heartbeat with an invalid or missing agent token", "node", n.UUID)
		return errdefs.InvalidArgument("Invalid or missing agent token received.")
	}
	if e.cfg.RequireAgentTLS && hb.CallbackURL != "" && !strings.HasPrefix(strings.ToLower(hb.CallbackURL), "https://") {
		e.log.Error("heartbeat refused: its callback URL does not use TLS", "node", n.UUID, "callback_url", hb.CallbackURL)
		return errdefs.InvalidArgument("TLS is required by configuration")
	}
	return nil
}

// knownAgent reports whether a heartbeat comes from the agent already on
// record (callback URL, version, certificate unchanged, nothing else to
// record) for a node waiting for it: such a heartbeat needs no write of
// its own.
func knownAgent(n *store.Node, hb wire.HeartbeatRequest) bool {
	if n.ProvisionState != statemachine.DeployWait && n.ProvisionState != statemachine.CleanWait {
		return false
	}
	return hb.CallbackURL != "" && n.InternalString("agent_url") == hb.CallbackURL &&
		n.InternalString("agent_version") == hb.AgentVersion &&
		hb.AgentStatus == "" && hb.AgentStatusMessage == "" &&
		strings.TrimSpace(hb.AgentVerifyCA) == strings.TrimSpace(n.InternalString(keyVerifyCAPEM))
}

// deferBeat remembers a heartbeat accepted without a write, for the job
// that processes it to record (takeBeat).
func (e *Engine) deferBeat(uuid string) {
	e.mu.Lock()
	e.beats[uuid] = e.now()
	e.mu.Unlock()
}

// takeBeat returns and forgets the time of a heartbeat accepted without a
// write, if there is one.
func (e *Engine) takeBeat(uuid string) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.beats[uuid]
	delete(e.beats, uuid)
	return t, ok
}

// requeueBeat puts back a deferred heartbeat whose recording update found
// the node in another state, and queues its processing again: the job then
// sees the new state and records it as pending.
func (e *Engine) requeueBeat(uuid string, at time.Time) {
	e.mu.Lock()
	if _, newer := e.beats[uuid]; !newer {
		e.beats[uuid] = at
	}
	e.mu.Unlock()
	e.submit(uuid, jobHeartbeat)
}

// recordBeat writes a deferred heartbeat into the node within an update.
func recordBeat(n *store.Node, at time.Time, ok bool) {
	if ok {
		n.SetInternal("agent_last_heartbeat", agentTimestamp(at))
	}
}

// processedStates are the states whose heartbeats drive work (marked
// pending until the owning conductor processes them).
var processedStates = map[statemachine.State]bool{statemachine.DeployWait: true,
	statemachine.Deploying: true, statemachine.CleanWait: true, statemachine.Cleaning: true}

// Heartbeat validates and records a heartbeat (contract §3.4): the
// callback URL is pinned until the next power off, the token is required
// and checked, the agent must send its version, and its certificate
// (agent_verify_ca) is stored and pinned like the URL. Any conductor may
// record a heartbeat; in the deploy and clean states it is marked pending
// and processed asynchronously by the conductor that owns the node. A
// heartbeat in a state that does not take heartbeats is accepted and only
// logged; with fast-track, heartbeats in enroll, manageable and available
// are recorded only.
//
// The common heartbeat — from the agent already on record, for a node in a
// wait state that this conductor owns — is validated from a read and
// recorded by the job that processes it, in that job's single update.
func (e *Engine) Heartbeat(ctx context.Context, ident string, hb wire.HeartbeatRequest) error {
	if n, err := e.st.GetNode(ctx, ident); err == nil && knownAgent(n, hb) && e.owns(ctx, n.UUID) {
		if err := e.checkHeartbeat(n, hb); err != nil {
			return err
		}
		e.deferBeat(n.UUID)
		e.log.Debug("heartbeat accepted", "node", n.UUID)
		e.submit(n.UUID, jobHeartbeat)
		return nil
	}
	var (
		uuid    string
		pemText string
		process bool
	)
	errIgnored := errors.New("heartbeat ignored")
	_, err := e.update(ctx, ident, "", func(_ store.Tx, n *store.Node) error {
		uuid = n.UUID
		if err := e.checkHeartbeat(n, hb); err != nil {
			return err
		}
		recordOnly := statemachine.FastTrackLookupAllowed[n.ProvisionState] && e.fastTrackEnabled(n)
		if !statemachine.HeartbeatAllowed[n.ProvisionState] && !recordOnly {
			e.log.Warn("heartbeat in a provision state that takes none; not taking any action",
				"node", n.UUID, "provision_state", string(n.ProvisionState))
			return errIgnored
		}
		if err := e.pinAgentCA(n, hb.AgentVerifyCA); err != nil {
			return err
		}
		pemText = n.InternalString(keyVerifyCAPEM)
		n.SetInternal("agent_url", hb.CallbackURL)
		n.SetInternal("agent_version", hb.AgentVersion)
		n.SetInternal("agent_last_heartbeat", agentTimestamp(e.now()))
		if hb.AgentStatus != "" {
			n.SetInternal("agent_status", hb.AgentStatus)
		}
		if hb.AgentStatusMessage != "" {
			n.SetInternal("agent_status_message", hb.AgentStatusMessage)
		}
		if processedStates[n.ProvisionState] {
			n.SetInternal(keyHeartbeatPending, agentTimestamp(e.now()))
			process = true
		}
		return nil
	})
	if errors.Is(err, errIgnored) {
		return nil
	}
	if err != nil {
		return err
	}
	if pemText != "" {
		e.ensureCAFile(uuid, pemText)
	}
	e.log.Debug("heartbeat recorded", "node", uuid, "process", process)
	if process && e.owns(ctx, uuid) {
		e.submit(uuid, jobHeartbeat)
	}
	return nil
}

// processHeartbeat processes the recorded heartbeat of a node waiting
// for its agent (a job). In a working state the heartbeat stays pending:
// the running job processes it when it waits again.
func (e *Engine) processHeartbeat(ctx context.Context, uuid string) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil {
		e.logJobError(uuid, "heartbeat", err)
		return
	}
	switch n.ProvisionState {
	case statemachine.DeployWait:
		e.heartbeatDeploy(ctx, n)
	case statemachine.CleanWait:
		e.heartbeatClean(ctx, uuid)
	default:
		// A heartbeat accepted without a write while the node waited,
		// whose node has moved on since: record it as pending, for the
		// job now running to process when it waits again.
		if at, ok := e.takeBeat(uuid); ok && processedStates[n.ProvisionState] {
			_, err := e.update(ctx, uuid, n.ProvisionState, func(_ store.Tx, n *store.Node) error {
				recordBeat(n, at, true)
				n.SetInternal(keyHeartbeatPending, agentTimestamp(at))
				return nil
			})
			if err != nil && !isStateChanged(err) {
				e.logJobError(uuid, "heartbeat", err)
			}
		}
	}
}

// agentTimestamp formats a time as Ironic's timestamp_driver_internal_info.
func agentTimestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000") }
