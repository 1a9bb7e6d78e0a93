package provision

import (
	"crypto/subtle"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
)

// beats holds the heartbeats accepted without a write, by node, until the
// job that processes them records them.
type beats struct {
	jobs *jobs
	now  func() time.Time

	mu sync.Mutex
	at map[string]beat
}

// beat is a heartbeat accepted without a write.
type beat struct {
	at time.Time
	// agent is the agent a first heartbeat introduced, to be put on
	// record with the heartbeat; nil when the agent is already on record.
	agent *arrivingAgent
}

// arrivingAgent is what the first heartbeat of an agent brings to the
// node's record: its callback URL, version and certificate, pinned from
// then on (contract §1.7), and the token it presented, checked again when
// the record is written.
type arrivingAgent struct {
	url, version  string
	caPEM, caPath string
	token         string
}

// errAgentGone is a deferred first heartbeat whose agent is no longer the
// node's when its job records it: the token was wiped or replaced (a power
// off, a new lookup) or another agent was recorded meanwhile.
var errAgentGone = errors.New("the agent of the accepted first heartbeat is no longer the node's (its token or callback URL changed since)")

// put remembers a heartbeat accepted now, which presented token. A first
// heartbeat (agent not nil) must name the same callback URL and
// certificate (if it sends one) as one accepted before it with the same
// token and not yet recorded: they are pinned from the first one on, as if
// it had been written, and a change is refused with Ironic's error. A
// pending agent that presented another token is of an earlier boot (its
// job never ran): it is dropped. A known agent's heartbeat keeps a pending
// record of its own token.
func (b *beats) put(uuid, token string, agent *arrivingAgent) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.at[uuid]
	if old.agent != nil && subtle.ConstantTimeCompare([]byte(old.agent.token), []byte(token)) != 1 {
		old.agent = nil
	}
	switch {
	case agent == nil:
		agent = old.agent
	case old.agent == nil:
	case old.agent.url != agent.url:
		return errdefs.InvalidArgument(`Detected change in ramdisk provided "callback_url"`)
	case agent.caPEM == "":
		// No certificate sent is no change (as for one on record).
		agent.caPEM, agent.caPath = old.agent.caPEM, old.agent.caPath
	case strings.TrimSpace(old.agent.caPEM) != strings.TrimSpace(agent.caPEM):
		return errdefs.InvalidArgument(`Detected change in ramdisk provided "agent_verify_ca"`)
	}
	b.at[uuid] = beat{at: b.now(), agent: agent}
	return nil
}

// arriving returns the agent a pending first heartbeat introduced, if any.
func (b *beats) arriving(uuid string) *arrivingAgent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.at[uuid].agent
}

// firstWith reports whether a pending first heartbeat presented token.
func (b *beats) firstWith(uuid, token string) bool {
	a := b.arriving(uuid)
	return a != nil && subtle.ConstantTimeCompare([]byte(a.token), []byte(token)) == 1
}

// take returns and forgets a heartbeat accepted without a write, if there
// is one.
func (b *beats) take(uuid string) (beat, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bt, ok := b.at[uuid]
	delete(b.at, uuid)
	return bt, ok
}

// requeue puts back a heartbeat whose recording update found the node in
// another state, and queues its processing again: the job then sees the
// new state and records it as pending. A heartbeat accepted since wins,
// keeping the agent to record if it has none.
func (b *beats) requeue(uuid string, bt beat) {
	b.mu.Lock()
	if newer, ok := b.at[uuid]; ok {
		if newer.agent == nil {
			newer.agent = bt.agent
		}
		bt = newer
	}
	b.at[uuid] = bt
	b.mu.Unlock()
	b.jobs.submit(uuid, jobHeartbeat)
}

// recordBeat writes a deferred heartbeat into the node within an update:
// its time and, for a first heartbeat, its agent. It fails with
// errAgentGone when that agent is no longer the node's.
func recordBeat(info *internalinfo.Info, bt beat, ok bool) error {
	if !ok {
		return nil
	}
	if bt.agent != nil {
		if err := bt.agent.record(info); err != nil {
			return err
		}
	}
	info.Agent.LastHeartbeat = agentTimestamp(bt.at)
	return nil
}

// record puts the agent on record in info, as the heartbeat's own write
// would have: only while the node still holds the token it presented and
// no other callback URL or certificate is pinned.
func (a *arrivingAgent) record(info *internalinfo.Info) error {
	rec := &info.Agent
	if subtle.ConstantTimeCompare([]byte(rec.Token), []byte(a.token)) != 1 ||
		rec.URL != "" && rec.URL != a.url ||
		a.caPEM != "" && rec.VerifyCAPEM != "" && strings.TrimSpace(rec.VerifyCAPEM) != strings.TrimSpace(a.caPEM) {
		return errAgentGone
	}
	rec.URL, rec.Version = a.url, a.version
	if a.caPEM != "" && rec.VerifyCAPEM == "" {
		rec.VerifyCAPEM, rec.VerifyCA = a.caPEM, a.caPath
	}
	return nil
}
