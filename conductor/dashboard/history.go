package dashboard

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// HistoryEvent is one entry of a node's history, in the shape of Ironic's
// node history (API 1.78, GET /v1/nodes/{node}/history).
type HistoryEvent struct {
	UUID      string    `json:"uuid"`
	CreatedAt time.Time `json:"created_at"`
	// Severity is "INFO" or "ERROR".
	Severity string `json:"severity"`
	// EventType is the activity: "provisioning", "deploying", "cleaning",
	// "power", "maintenance", ...
	EventType string `json:"event_type"`
	Event     string `json:"event"`
	// User is who asked for the change ("" when unknown).
	User      string `json:"user,omitempty"`
	Conductor string `json:"conductor,omitempty"`
}

// History answers a node's history, oldest first. StoreHistory reads the
// node history the conductor records (conductor/history: every state
// change, failure and operator action with its user); FeedHistory is
// what the dashboard's change feed saw, for a dashboard without it.
type History interface {
	NodeHistory(ctx context.Context, nodeUUID string) ([]HistoryEvent, error)
}

// HistoryReader reads recorded node history (store.HistoryStore).
type HistoryReader interface {
	GetNode(ctx context.Context, ident string) (*store.Node, error)
	NodeHistory(ctx context.Context, nodeID int64, q store.HistoryQuery) ([]*store.HistoryEvent, error)
}

// DefaultStoreHistoryLength is the number of newest events StoreHistory
// shows.
const DefaultStoreHistoryLength = 100

// StoreHistory is the History the conductor records in its store (the
// same as GET /v1/nodes/{node}/history): a node's newest Limit events
// (default DefaultStoreHistoryLength).
type StoreHistory struct {
	Store HistoryReader
	Limit int
}

var _ History = StoreHistory{}

// NodeHistory implements History.
func (h StoreHistory) NodeHistory(ctx context.Context, nodeUUID string) ([]HistoryEvent, error) {
	n, err := h.Store.GetNode(ctx, nodeUUID)
	if err != nil {
		return nil, err
	}
	limit := h.Limit
	if limit <= 0 {
		limit = DefaultStoreHistoryLength
	}
	evs, err := h.Store.NodeHistory(ctx, n.ID, store.HistoryQuery{Limit: limit, Descending: true})
	if err != nil {
		return nil, fmt.Errorf("history of node %s: %w", n.UUID, err)
	}
	out := make([]HistoryEvent, len(evs))
	for i, e := range evs {
		out[len(evs)-1-i] = HistoryEvent{UUID: e.UUID, CreatedAt: e.CreatedAt, Severity: e.Severity,
			EventType: e.EventType, Event: e.Event, User: e.User, Conductor: e.Conductor}
	}
	return out, nil
}

// Severities.
const (
	severityInfo  = "INFO"
	severityError = "ERROR"
)

// DefaultHistoryLength is the number of events and of deploys FeedHistory
// keeps per node.
const DefaultHistoryLength = 20

// FeedHistory is a History made from the changes the change feed
// publishes: provision-state changes (with the error of a failure), power
// state changes, maintenance set and cleared, and the timings of each
// deploy seen ending. It is in memory, so it starts empty with each
// conductor, it sees only what the feed sees, and it knows no users. The
// moves heartbeat processing makes on every heartbeat (a wait state and
// its working state, both ways) are left out. Each node keeps its last
// DefaultHistoryLength events and deploys.
type FeedHistory struct {
	conductor string
	max       int
	now       func() time.Time

	mu    sync.Mutex
	nodes map[string]*nodeRecord
}

type nodeRecord struct {
	last    Summary
	timings *Deploy
	events  []HistoryEvent
	deploys []Deploy
}

// NewFeedHistory returns an empty history; conductor names the events'
// conductor.
func NewFeedHistory(conductor string) *FeedHistory {
	return &FeedHistory{conductor: conductor, max: DefaultHistoryLength, now: time.Now, nodes: map[string]*nodeRecord{}}
}

var _ History = (*FeedHistory)(nil)

// waitCycle are the moves heartbeat processing makes on every heartbeat.
var waitCycle = map[[2]statemachine.State]bool{
	{statemachine.DeployWait, statemachine.Deploying}:   true,
	{statemachine.Deploying, statemachine.DeployWait}:   true,
	{statemachine.CleanWait, statemachine.Cleaning}:     true,
	{statemachine.Cleaning, statemachine.CleanWait}:     true,
	{statemachine.InspectWait, statemachine.Inspecting}: true,
	{statemachine.Inspecting, statemachine.InspectWait}: true,
}

// NodeHistory implements History.
func (h *FeedHistory) NodeHistory(_ context.Context, nodeUUID string) ([]HistoryEvent, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.nodes[nodeUUID]
	if r == nil {
		return nil, nil
	}
	return append([]HistoryEvent(nil), r.events...), nil
}

// Deploys returns the timings of the node's deploys seen ending, oldest
// first.
func (h *FeedHistory) Deploys(nodeUUID string) []Deploy {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.nodes[nodeUUID]
	if r == nil {
		return nil
	}
	return append([]Deploy(nil), r.deploys...)
}

// reset takes the nodes' states as the starting point (no events).
func (h *FeedHistory) reset(nodes []*store.Node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		seen[n.UUID] = true
		if r, ok := h.nodes[n.UUID]; ok {
			// A reload: what changed while the feed was behind is one step.
			h.observeLocked(r, n, nil, false)
			continue
		}
		h.nodes[n.UUID] = &nodeRecord{last: summarize(n), timings: deployOf(n)}
	}
	for id := range h.nodes {
		if !seen[id] {
			delete(h.nodes, id)
		}
	}
}

// apply records the feed's changes.
func (h *FeedHistory) apply(items []changefeed.Item[changefeed.Change]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, it := range items {
		c := it.Value
		switch c.Kind {
		case changefeed.NodeChanged:
			if c.Node == nil {
				continue
			}
			r, ok := h.nodes[c.NodeUUID]
			if !ok {
				r = &nodeRecord{}
				h.nodes[c.NodeUUID] = r
			}
			h.observeLocked(r, c.Node, c.Moves, !c.Remote)
		case changefeed.NodeDeleted:
			delete(h.nodes, c.NodeUUID)
		}
	}
}

// observeLocked records what changed from r's last state to n: the
// provision-state moves the feed reported when exact, else the one move
// from the last state seen to n's.
func (h *FeedHistory) observeLocked(r *nodeRecord, n *store.Node, moves []changefeed.Move, exact bool) {
	s := summarize(n)
	old := r.last
	at := h.now().UTC()
	if !n.ProvisionUpdatedAt.IsZero() {
		at = n.ProvisionUpdatedAt
	}
	if !exact && statemachine.State(old.ProvisionState) != n.ProvisionState || old.UUID == "" && len(moves) == 0 {
		moves = []changefeed.Move{{From: statemachine.State(old.ProvisionState), To: n.ProvisionState, At: at}}
	}
	for i, m := range moves {
		if m.From == m.To || waitCycle[[2]statemachine.State{m.From, m.To}] {
			continue
		}
		// A change published before a reload may already be in it.
		if exact && old.UUID != "" && (m.From == statemachine.NoState ||
			!old.ProvisionUpdatedAt.IsZero() && !m.At.After(old.ProvisionUpdatedAt)) {
			continue
		}
		last := i == len(moves)-1
		ev := HistoryEvent{EventType: "provisioning", Severity: severityInfo, CreatedAt: m.At}
		if ev.CreatedAt.IsZero() {
			ev.CreatedAt = at
		}
		switch {
		case m.From == statemachine.NoState && old.UUID == "" && i == 0:
			ev.Event = fmt.Sprintf("Node created in %s", m.To)
		default:
			ev.Event = fmt.Sprintf("%s → %s", displayState(m.From), displayState(m.To))
		}
		if last && n.TargetProvisionState != statemachine.NoState {
			ev.Event += fmt.Sprintf(" (target %s)", n.TargetProvisionState)
		}
		if statemachine.Failure[m.To] {
			ev.Severity = severityError
			if last && n.LastError != "" {
				ev.Event += ": " + n.LastError
			}
		}
		h.addLocked(r, ev)
	}
	if old.UUID != "" && old.PowerState != s.PowerState && s.PowerState != "" {
		h.addLocked(r, HistoryEvent{EventType: "power", Severity: severityInfo, CreatedAt: h.now().UTC(),
			Event: fmt.Sprintf("%s → %s", displayState(statemachine.State(old.PowerState)), s.PowerState)})
	}
	if old.UUID != "" && old.Maintenance != s.Maintenance {
		ev := HistoryEvent{EventType: "maintenance", Severity: severityInfo, CreatedAt: h.now().UTC(), Event: "Maintenance cleared"}
		if s.Maintenance {
			ev.Event = "Maintenance set"
			if s.MaintenanceReason != "" {
				ev.Event += ": " + s.MaintenanceReason
			}
		}
		h.addLocked(r, ev)
	}
	if d := deployOf(n); d != nil && !sameDeploy(d, r.timings) && hasTotal(d) {
		d.FinishedAt = at
		r.deploys = append(r.deploys, *d)
		if len(r.deploys) > h.max {
			r.deploys = append([]Deploy(nil), r.deploys[len(r.deploys)-h.max:]...)
		}
	}
	r.timings = deployOf(n)
	r.last = s
}

func (h *FeedHistory) addLocked(r *nodeRecord, ev HistoryEvent) {
	ev.UUID = uuid.NewString()
	ev.Conductor = h.conductor
	r.events = append(r.events, ev)
	if len(r.events) > h.max {
		r.events = append([]HistoryEvent(nil), r.events[len(r.events)-h.max:]...)
	}
}

// hasTotal reports whether d is a finished deploy (its total is timed).
func hasTotal(d *Deploy) bool {
	for _, p := range d.Phases {
		if p.Name == "total" {
			return true
		}
	}
	return false
}

func displayState(s statemachine.State) string {
	if s == statemachine.NoState {
		return "none"
	}
	return string(s)
}
