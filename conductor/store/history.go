package store

import (
	"context"
	"time"
)

// HistoryEvent is one entry of a node's history, the row of Ironic's
// node_history table: what happened to the node, when, how bad it was,
// who asked for it and which conductor recorded it.
type HistoryEvent struct {
	// ID is the store's internal key; events of one node are ordered by
	// it (the order they were recorded in).
	ID int64
	// UUID identifies the event in the API; the store makes one when it
	// is empty.
	UUID string
	// NodeID is the node's ID (filled in by Tx.AddHistory).
	NodeID int64
	// CreatedAt is when the event happened; the store sets it (in its
	// precision) when zero.
	CreatedAt time.Time
	// Severity is SeverityInfo or SeverityError.
	Severity string
	// EventType is the activity the event belongs to ("provisioning",
	// "deploying", "cleaning", "power", "maintenance", ...).
	EventType string
	// Event is the text.
	Event string
	// User is the authenticated user who asked for the change, "" when
	// none did (the conductor's own work, or an API without
	// authentication).
	User string
	// Conductor is the name of the conductor that recorded the event.
	Conductor string
}

// Severities of history events (Ironic's).
const (
	SeverityInfo  = "INFO"
	SeverityError = "ERROR"
)

// HistoryQuery selects a page of one node's history.
type HistoryQuery struct {
	// Marker is the UUID of the event the page starts after ("" for the
	// first page); an unknown marker is errdefs.ErrNotFound.
	Marker string
	// Limit bounds the events returned (0: no bound).
	Limit int
	// Descending returns the newest events first.
	Descending bool
}

// HistoryStore keeps node history: events are added in node transactions
// (Tx.AddHistory), read by node, pruned to a number per node, and deleted
// with their node.
type HistoryStore interface {
	// NodeHistory returns a page of the node's events, in the order they
	// were recorded (or the reverse).
	NodeHistory(ctx context.Context, nodeID int64, q HistoryQuery) ([]*HistoryEvent, error)
	// NodeHistoryEvent returns one event of the node by UUID
	// (errdefs.ErrNotFound when the node has no such event).
	NodeHistoryEvent(ctx context.Context, nodeID int64, uuid string) (*HistoryEvent, error)
	// PruneHistory deletes the events of each node beyond its newest
	// keep, at most limit events in all (limit <= 0: no bound), and
	// returns how many it deleted.
	PruneHistory(ctx context.Context, keep, limit int) (int64, error)
}
