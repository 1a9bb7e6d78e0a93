package provision

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/rivetmetal/rivet/agent/wire"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// errLookupNotFound is the one answer for an unknown node and a node in a
// state that forbids lookup, so the two cannot be told apart.
func errLookupNotFound() error { return errdefs.NotFound("Resource could not be found.") }

// Lookup finds the node a deploy ramdisk runs on, by node UUID or by the
// MACs of its ports, provided the node is in a lookup-allowed state. With
// withToken (the agent declared API >= 1.62), the first lookup of an
// operation generates the agent token and returns it; later lookups get
// "******" (contract §4.6). The returned node is the committed one.
func (e *Engine) Lookup(ctx context.Context, macs []string, nodeUUID string, withToken bool) (*store.Node, *string, error) {
	var (
		n   *store.Node
		err error
	)
	if nodeUUID != "" {
		n, err = e.st.GetNode(ctx, nodeUUID)
	} else {
		n, err = e.st.NodeByMACs(ctx, macs)
	}
	if errors.Is(err, errdefs.ErrNotFound) {
		e.log.Warn("lookup found no node", "addresses", macs, "node_uuid", nodeUUID)
		return nil, nil, errLookupNotFound()
	}
	if err != nil {
		return nil, nil, err
	}
	if !statemachine.LookupAllowed[n.ProvisionState] {
		e.log.Warn("lookup refused: provision state does not allow it", "node", n.UUID,
			"provision_state", string(n.ProvisionState))
		return nil, nil, errLookupNotFound()
	}
	if !withToken {
		return n, nil, nil
	}
	var token string
	n, err = e.update(ctx, n.UUID, "", func(_ store.Tx, n *store.Node) error {
		if !statemachine.LookupAllowed[n.ProvisionState] {
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

// Heartbeat validates and records a heartbeat (contract §3.4): the
// callback URL is pinned until the next power off, the token is required
// and checked, and the agent must send its version. Processing happens
// afterwards, asynchronously; a heartbeat in a state that does not take
// heartbeats is accepted and only logged.
func (e *Engine) Heartbeat(ctx context.Context, ident string, hb wire.HeartbeatRequest) error {
	var uuid string
	errIgnored := errors.New("heartbeat ignored")
	_, err := e.update(ctx, ident, "", func(_ store.Tx, n *store.Node) error {
		uuid = n.UUID
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
		if !statemachine.HeartbeatAllowed[n.ProvisionState] {
			e.log.Warn("heartbeat in a provision state that takes none; not taking any action",
				"node", n.UUID, "provision_state", string(n.ProvisionState))
			return errIgnored
		}
		n.SetInternal("agent_url", hb.CallbackURL)
		n.SetInternal("agent_version", hb.AgentVersion)
		n.SetInternal("agent_last_heartbeat", agentTimestamp(e.now()))
		if hb.AgentStatus != "" {
			n.SetInternal("agent_status", hb.AgentStatus)
		}
		if hb.AgentStatusMessage != "" {
			n.SetInternal("agent_status_message", hb.AgentStatusMessage)
		}
		return nil
	})
	if errors.Is(err, errIgnored) {
		return nil
	}
	if err != nil {
		return err
	}
	e.log.Debug("heartbeat recorded", "node", uuid)
	e.submit(uuid, jobHeartbeat)
	return nil
}

// agentTimestamp formats a time as Ironic's timestamp_driver_internal_info.
func agentTimestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000") }
