package provision

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Ramdisk answers the deploy ramdisk's two calls, lookup and heartbeat
// (contract §3.3, §3.4), and processes the heartbeats of the nodes this
// conductor owns.
type Ramdisk struct {
	nodes  *nodes
	runner *runner
	jobs   *jobs
	beats  *beats
	certs  *certificates
	cfg    *Config
	log    *slog.Logger
}

// HeartbeatTimeout is the heartbeat timeout given to agents in the lookup
// config.
func (r *Ramdisk) HeartbeatTimeout() time.Duration { return r.cfg.HeartbeatTimeout }

// errLookupNotFound is the one answer for an unknown node and a node in a
// state that forbids lookup, so the two cannot be told apart.
func errLookupNotFound() error { return errdefs.NotFound("Resource could not be found.") }

// nodeByUUIDOrMACs finds the node an inspecting ramdisk speaks for: by
// its UUID when the ramdisk knows it, else by the MACs of its ports.
func nodeByUUIDOrMACs(ctx context.Context, st store.NodeReader, nodeUUID string, macs []string) (*store.Node, error) {
	if nodeUUID != "" {
		return st.GetNode(ctx, nodeUUID)
	}
	return st.NodeByMACs(ctx, macs)
}

// lookupNode finds the node a deploy ramdisk looks up, by the MAC
// addresses it reports: the one node with a port of one of them. The
// node's UUID, when given as well, picks that node among the nodes the
// addresses match, and must be one of them: a UUID alone, or with
// addresses none of which is a port of that node, finds nothing, so the
// node's document and its agent token go only to a caller that knows the
// node's MACs.
func lookupNode(ctx context.Context, st store.NodeReader, macs []string, nodeUUID string) (*store.Node, error) {
	if len(macs) == 0 {
		return nil, errLookupNotFound()
	}
	if nodeUUID == "" {
		return st.NodeByMACs(ctx, macs)
	}
	n, err := st.GetNode(ctx, nodeUUID)
	if err != nil {
		return nil, err
	}
	ports, err := st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		return nil, fmt.Errorf("node %s: list ports: %w", n.UUID, err)
	}
	for _, p := range ports {
		if slices.ContainsFunc(macs, func(m string) bool { return strings.EqualFold(m, p.Address) }) {
			return n, nil
		}
	}
	return nil, errLookupNotFound()
}

// lookupUUID is lookupNode answering with the node's UUID, without
// reading the node when the store can name it (store.NodeNamer).
func lookupUUID(ctx context.Context, st store.NodeReader, macs []string, nodeUUID string) (string, error) {
	if len(macs) == 0 {
		return "", errLookupNotFound()
	}
	if nodeUUID == "" {
		return store.NodeUUIDByMACs(ctx, st, macs)
	}
	n, err := lookupNode(ctx, st, macs, nodeUUID)
	if err != nil {
		return "", err
	}
	return n.UUID, nil
}

// lookupFailed is the answer to a lookup that found no node, or failed.
func (r *Ramdisk) lookupFailed(macs []string, nodeUUID string, err error) error {
	if errors.Is(err, errdefs.ErrNotFound) {
		r.log.Warn("lookup found no node", "addresses", macs, "node_uuid", nodeUUID)
		return errLookupNotFound()
	}
	return err
}

// lookupRefused is the answer to a lookup of a node in a state that does
// not allow one: an unknown node's.
func (r *Ramdisk) lookupRefused(n *store.Node) error {
	r.log.Warn("lookup refused: provision state does not allow it", "node", n.UUID,
		"provision_state", string(n.ProvisionState))
	return errLookupNotFound()
}

// lookupAllowed reports whether the ramdisk may look a node up in its
// current state (contract §3.3; with fast-track also enroll, manageable
// and available).
func (r *Ramdisk) lookupAllowed(n *store.Node) bool {
	return statemachine.LookupAllowed[n.ProvisionState] ||
		(statemachine.FastTrackLookupAllowed[n.ProvisionState] && fastTrackEnabled(r.cfg, n))
}

// Lookup finds the node a deploy ramdisk runs on by the MACs of its
// ports (lookupNode: node_uuid narrows a match, never makes one),
// provided the node is in a lookup-allowed state; any other lookup is
// answered as an unknown node and writes nothing. With withToken (the
// agent declared API >= 1.62), the first lookup of an operation generates
// the agent token and returns it; later lookups get "******" (contract
// §4.6). A lookup never resets the token: only a power off or reboot of
// the node by the conductor, or the end of the operation, does. The
// returned node is the committed one. A lookup during a deploy records
// the boot_to_lookup timing.
func (r *Ramdisk) Lookup(ctx context.Context, macs []string, nodeUUID string, withToken bool) (*store.Node, *string, error) {
	if !withToken {
		n, err := lookupNode(ctx, r.nodes.st, macs, nodeUUID)
		if err != nil {
			return nil, nil, r.lookupFailed(macs, nodeUUID, err)
		}
		if !r.lookupAllowed(n) {
			return nil, nil, r.lookupRefused(n)
		}
		return n, nil, nil
	}
	// The node is read once, in the write that hands out the token.
	uuid, err := lookupUUID(ctx, r.nodes.st, macs, nodeUUID)
	if err != nil {
		return nil, nil, r.lookupFailed(macs, nodeUUID, err)
	}
	var token string
	n, _, err := r.nodes.update(ctx, uuid, "", func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if !r.lookupAllowed(n) {
			return r.lookupRefused(n)
		}
		now := r.nodes.now()
		if info.Agent.Token != "" {
			if !r.tokenUnused(info, now) {
				r.log.Warn("agent token already handed out for this operation; answering with a masked token", "node", n.UUID)
				token = wire.Masked
				return nil
			}
			r.log.Warn("agent token handed out and never used within the heartbeat timeout; handing out a new one",
				"node", n.UUID, "handed_out", info.Agent.TokenHandedOut, "heartbeat_timeout", r.cfg.HeartbeatTimeout)
		}
		t, err := newToken()
		if err != nil {
			return fmt.Errorf("node %s: generate agent token: %w", n.UUID, err)
		}
		info.Agent.Token, token = t, t
		info.Agent.TokenHandedOut = agentTimestamp(now)
		if n.ProvisionState == statemachine.DeployWait || n.ProvisionState == statemachine.Deploying {
			if _, done := info.Image.Timings[PhaseBootToLookup]; !done {
				timePhase(info, PhaseBootToLookup, markRamdiskOn, now)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if token != wire.Masked {
		r.log.Info("agent token generated", "node", n.UUID)
	}
	return n, &token, nil
}

// tokenUnused reports whether the node's agent token is void: handed out
// by a lookup more than the heartbeat timeout ago and never heartbeated
// with since. Its agent, if it got it at all, missed the first heartbeat
// by the deadline every later one is held to; most likely the lookup's
// answer was lost (the agent gave up waiting for it), and the agent,
// answered "******" at every lookup since, can never heartbeat. A
// pre-generated token is never void.
func (r *Ramdisk) tokenUnused(info *internalinfo.Info, now time.Time) bool {
	a := &info.Agent
	if a.TokenPregenerated || a.TokenHandedOut == "" || a.TokenUsed() {
		return false
	}
	at, err := time.Parse(agentTimeLayout, a.TokenHandedOut)
	return err == nil && now.UTC().Sub(at) > r.cfg.HeartbeatTimeout
}

// ReleaseToken takes back an agent token that Lookup generated but whose
// answer never reached the agent (its client gave up, or the answer could
// not be written): the node's token is cleared, so that the agent's next
// lookup is handed a new one instead of "******" for the rest of the
// operation. Nothing changes unless the node still holds exactly that
// token and no heartbeat has been accepted since it was handed out (on
// record, or a first heartbeat this conductor accepted and has yet to
// record): a token an agent has used, or a pre-generated one, is never
// taken back.
func (r *Ramdisk) ReleaseToken(ctx context.Context, nodeUUID, token string) error {
	if token == "" || token == wire.Masked {
		return nil
	}
	released := false
	_, _, err := r.nodes.update(ctx, nodeUUID, "", func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if info.Agent.TokenPregenerated || info.Agent.TokenUsed() || r.beats.firstWith(n.UUID, token) ||
			subtle.ConstantTimeCompare([]byte(info.Agent.Token), []byte(token)) != 1 {
			return nil
		}
		info.Agent.Token, info.Agent.TokenHandedOut, released = "", "", true
		return nil
	})
	if err != nil {
		return fmt.Errorf("node %s: release the undelivered agent token: %w", nodeUUID, err)
	}
	if released {
		r.log.Warn("agent token released: the lookup's answer did not reach the agent; its next lookup gets a new token", "node", nodeUUID)
	}
	return nil
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
func tokenValid(info *internalinfo.Info, presented string) bool {
	stored := info.Agent.Token
	if stored == "" || stored == wire.Masked || presented == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(stored), []byte(presented)) == 1
}

// checkHeartbeat validates a heartbeat against the node: the callback URL
// pinned since the last power off, the token, the agent's version.
func (r *Ramdisk) checkHeartbeat(n *store.Node, info *internalinfo.Info, hb wire.HeartbeatRequest) error {
	if url := info.Agent.URL; url != "" && url != hb.CallbackURL {
		r.log.Error("heartbeat with a different callback URL; not processed", "node", n.UUID,
			"callback_url", hb.CallbackURL, "agent_url", url)
		return errdefs.InvalidArgument(`Detected change in ramdisk provided "callback_url"`)
	}
	if hb.AgentToken == "" {
		r.log.Error("heartbeat without an agent token", "node", n.UUID)
		return errdefs.InvalidArgument("Agent token is required for heartbeat processing.")
	}
	if hb.AgentVersion == "" && hb.AgentStatus == "" {
		return errdefs.InvalidArgument("Agent did not transmit a version, and a version is required. Please update the agent being used.")
	}
	if !tokenValid(info, hb.AgentToken) {
		r.log.Error("heartbeat with an invalid or missing agent token", "node", n.UUID)
		return errdefs.InvalidArgument("Invalid or missing agent token received.")
	}
	if r.cfg.RequireAgentTLS && hb.CallbackURL != "" && !strings.HasPrefix(strings.ToLower(hb.CallbackURL), "https://") {
		r.log.Error("heartbeat refused: its callback URL does not use TLS", "node", n.UUID, "callback_url", hb.CallbackURL)
		return errdefs.InvalidArgument("TLS is required by configuration")
	}
	return nil
}

// pinAgentCA records the certificate a heartbeat carries and refuses a
// different one until the next power off (contract §1.7): Ironic's 400
// "Detected change in ramdisk provided "agent_verify_ca"".
func (r *Ramdisk) pinAgentCA(n *store.Node, info *internalinfo.Info, pemText string) error {
	if pemText == "" {
		return nil
	}
	if old := info.Agent.VerifyCAPEM; old != "" {
		if strings.TrimSpace(old) != strings.TrimSpace(pemText) {
			r.log.Error("heartbeat with a different agent certificate; not processed", "node", n.UUID)
			return errdefs.InvalidArgument(`Detected change in ramdisk provided "agent_verify_ca"`)
		}
		return nil
	}
	if err := checkAgentCA(pemText); err != nil {
		return err
	}
	info.Agent.VerifyCAPEM = pemText
	info.Agent.VerifyCA = r.certs.path(n.UUID)
	return nil
}

// checkAgentCA refuses an agent_verify_ca that is not one PEM certificate.
func checkAgentCA(pemText string) error {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "CERTIFICATE" {
		return errdefs.InvalidArgument("Invalid agent_verify_ca: not a PEM certificate")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return errdefs.InvalidArgument("Invalid agent_verify_ca: %v", err)
	}
	return nil
}

// knownAgent reports whether a heartbeat comes from the agent already on
// record (callback URL, version, certificate unchanged, nothing else to
// record) for a node waiting for it: such a heartbeat needs no write of
// its own.
func knownAgent(n *store.Node, info *internalinfo.Info, hb wire.HeartbeatRequest) bool {
	return waitingForAgent(n, hb) && info.Agent.URL == hb.CallbackURL &&
		info.Agent.Version == hb.AgentVersion &&
		strings.TrimSpace(hb.AgentVerifyCA) == strings.TrimSpace(info.Agent.VerifyCAPEM)
}

// firstHeartbeat reports whether a heartbeat is the first of an agent
// that a lookup handed the node's token to, for a node waiting for it,
// with no agent or certificate on record yet. Such a heartbeat is
// recorded by the job that processes it, in that job's first write; a
// pre-generated token, which survives power offs and so cannot tell the
// agent of one boot from the next, is recorded at once.
func firstHeartbeat(n *store.Node, info *internalinfo.Info, hb wire.HeartbeatRequest) bool {
	return waitingForAgent(n, hb) && info.Agent.URL == "" && info.Agent.VerifyCAPEM == "" &&
		info.Agent.Token != "" && !info.Agent.TokenPregenerated
}

// waitingForAgent reports whether a heartbeat carries nothing but the
// agent's address, version and certificate, for a node in a wait state.
func waitingForAgent(n *store.Node, hb wire.HeartbeatRequest) bool {
	if n.ProvisionState != statemachine.DeployWait && n.ProvisionState != statemachine.CleanWait &&
		n.ProvisionState != statemachine.ServiceWait {
		return false
	}
	return hb.CallbackURL != "" && hb.AgentStatus == "" && hb.AgentStatusMessage == ""
}

// processedStates are the states whose heartbeats drive work (marked
// pending until the owning conductor processes them).
var processedStates = map[statemachine.State]bool{statemachine.DeployWait: true,
	statemachine.Deploying: true, statemachine.CleanWait: true, statemachine.Cleaning: true,
	statemachine.ServiceWait: true, statemachine.Servicing: true}

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
// The common heartbeats — from the agent already on record, or the first
// of an agent for a node waiting for it, for a node this conductor owns —
// are validated from a read and recorded by the job that processes them,
// in that job's first update.
func (r *Ramdisk) Heartbeat(ctx context.Context, ident string, hb wire.HeartbeatRequest) error {
	// The check reads the store's snapshot of the node, not a copy (a
	// failed read goes on to the update below, which reports it).
	var (
		accepted string
		arriving *arrivingAgent
		refused  error
	)
	_ = store.ViewNode(ctx, r.nodes.st, ident, func(n *store.Node) error {
		info, err := internalinfo.Decode(n)
		if err != nil {
			return nil
		}
		known := knownAgent(n, info, hb)
		if !known && !firstHeartbeat(n, info, hb) || !r.jobs.owns(ctx, n.UUID) {
			return nil
		}
		if refused = r.checkHeartbeat(n, info, hb); refused != nil {
			return nil
		}
		if !known {
			if hb.AgentVerifyCA != "" {
				if refused = checkAgentCA(hb.AgentVerifyCA); refused != nil {
					return nil
				}
			}
			arriving = &arrivingAgent{url: hb.CallbackURL, version: hb.AgentVersion,
				caPEM: hb.AgentVerifyCA, token: hb.AgentToken}
			if hb.AgentVerifyCA != "" {
				arriving.caPath = r.certs.path(n.UUID)
			}
		}
		accepted = n.UUID
		return nil
	})
	if refused != nil {
		return refused
	}
	if accepted != "" {
		if err := r.beats.put(accepted, hb.AgentToken, arriving); err != nil {
			r.log.Error("heartbeat of another agent than the one accepted before; not processed", "node", accepted,
				"callback_url", hb.CallbackURL)
			return err
		}
		r.log.Debug("heartbeat accepted", "node", accepted, "first", arriving != nil)
		r.jobs.submit(accepted, jobHeartbeat)
		return nil
	}
	var (
		pemText string
		process bool
	)
	errIgnored := errors.New("heartbeat ignored")
	n, _, err := r.nodes.update(ctx, ident, "", func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if err := r.checkHeartbeat(n, info, hb); err != nil {
			return err
		}
		recordOnly := statemachine.FastTrackLookupAllowed[n.ProvisionState] && fastTrackEnabled(r.cfg, n)
		if !statemachine.HeartbeatAllowed[n.ProvisionState] && !recordOnly {
			r.log.Warn("heartbeat in a provision state that takes none; not taking any action",
				"node", n.UUID, "provision_state", string(n.ProvisionState))
			return errIgnored
		}
		if err := r.pinAgentCA(n, info, hb.AgentVerifyCA); err != nil {
			return err
		}
		pemText = info.Agent.VerifyCAPEM
		now := agentTimestamp(r.nodes.now())
		info.Agent.URL, info.Agent.Version, info.Agent.LastHeartbeat = hb.CallbackURL, hb.AgentVersion, now
		if hb.AgentStatus != "" {
			info.Agent.Status = hb.AgentStatus
		}
		if hb.AgentStatusMessage != "" {
			info.Agent.StatusMessage = hb.AgentStatusMessage
		}
		if processedStates[n.ProvisionState] {
			info.Agent.HeartbeatPending = now
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
		r.certs.ensure(n.UUID, pemText)
	}
	r.log.Debug("heartbeat recorded", "node", n.UUID, "process", process)
	if process && r.jobs.owns(ctx, n.UUID) {
		r.jobs.submit(n.UUID, jobHeartbeat)
	}
	return nil
}

// processHeartbeat processes the recorded heartbeat of a node waiting
// for its agent (a job). In a working state the heartbeat stays pending:
// the running job processes it when it waits again.
func (r *Ramdisk) processHeartbeat(ctx context.Context, uuid string) {
	n, info, err := r.nodes.read(ctx, uuid)
	if err != nil {
		r.jobs.logError(uuid, "heartbeat", err)
		return
	}
	if k := r.runner.waitingKind(n.ProvisionState); k != nil {
		// An agent whose first heartbeat was accepted without a write is
		// worked with as if on record; the job's first update records it.
		// One that is no longer the node's (errAgentGone) stays off, and
		// the heartbeat is dropped as stale.
		if a := r.beats.arriving(uuid); a != nil && info.Agent.URL == "" {
			_ = a.record(info)
		}
		r.runner.heartbeat(ctx, k, n, info)
		return
	}
	// A heartbeat accepted without a write while the node waited, whose
	// node has moved on since: record it as pending, for the job now
	// running to process when it waits again.
	if bt, ok := r.beats.take(uuid); ok && processedStates[n.ProvisionState] {
		_, _, err := r.nodes.update(ctx, uuid, n.ProvisionState, func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
			if err := recordBeat(info, bt, true); err != nil {
				return err
			}
			info.Agent.HeartbeatPending = agentTimestamp(bt.at)
			return nil
		})
		if errors.Is(err, errAgentGone) {
			r.log.Info("heartbeat of an agent replaced since; not recorded", "node", uuid)
		} else if err != nil && !isStateChanged(err) {
			r.jobs.logError(uuid, "heartbeat", err)
		}
	}
}
