package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
)

const historyColumns = `id, uuid, node_id, created_at, severity, event_type, event, user_name, conductor`

// insertHistory records one event (prepared on the writer at Open).
const insertHistory = `INSERT INTO node_history (uuid, node_id, created_at, severity, event_type, event,
	user_name, conductor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

// historyRows are the insertHistory arguments of a transaction's events,
// with a UUID and a time given to those without.
func historyRows(nodeID int64, events []store.HistoryEvent, now time.Time) ([][]any, error) {
	rows := make([][]any, 0, len(events))
	for _, ev := range events {
		if ev.UUID == "" {
			ev.UUID = uuid.NewString()
		} else if _, err := uuid.Parse(ev.UUID); err != nil {
			return nil, fmt.Errorf("history event UUID %q: %w", ev.UUID, err)
		}
		if ev.CreatedAt.IsZero() {
			ev.CreatedAt = now
		}
		rows = append(rows, []any{strings.ToLower(ev.UUID), nodeID, formatTime(ev.CreatedAt), ev.Severity,
			ev.EventType, ev.Event, ev.User, ev.Conductor})
	}
	return rows, nil
}

func scanHistory(r rowScanner) (*store.HistoryEvent, error) {
	var (
		ev store.HistoryEvent
		at string
	)
	if err := r.Scan(&ev.ID, &ev.UUID, &ev.NodeID, &at, &ev.Severity, &ev.EventType, &ev.Event,
		&ev.User, &ev.Conductor); err != nil {
		return nil, err
	}
	ev.CreatedAt = parseTime(at)
	return &ev, nil
}

// NodeHistory implements store.HistoryStore.
func (s *Store) NodeHistory(ctx context.Context, nodeID int64, q store.HistoryQuery) ([]*store.HistoryEvent, error) {
	query := `SELECT ` + historyColumns + ` FROM node_history WHERE node_id = ?`
	args := []any{nodeID}
	order, cmp := "ASC", ">"
	if q.Descending {
		order, cmp = "DESC", "<"
	}
	if q.Marker != "" {
		m, err := s.NodeHistoryEvent(ctx, nodeID, q.Marker)
		if err != nil {
			return nil, err
		}
		query += ` AND id ` + cmp + ` ?`
		args = append(args, m.ID)
	}
	query += ` ORDER BY id ` + order
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := s.reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("node history: %w", err)
	}
	defer rows.Close()
	var out []*store.HistoryEvent
	for rows.Next() {
		ev, err := scanHistory(rows)
		if err != nil {
			return nil, fmt.Errorf("node history: %w", err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("node history: %w", err)
	}
	return out, nil
}

// NodeHistoryEvent implements store.HistoryStore.
func (s *Store) NodeHistoryEvent(ctx context.Context, nodeID int64, id string) (*store.HistoryEvent, error) {
	ev, err := scanHistory(s.reader().QueryRowContext(ctx,
		`SELECT `+historyColumns+` FROM node_history WHERE node_id = ? AND uuid = ?`, nodeID, strings.ToLower(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.NotFound("Node history record %s could not be found.", id)
	}
	if err != nil {
		return nil, fmt.Errorf("node history event %s: %w", id, err)
	}
	return ev, nil
}

// PruneHistory implements store.HistoryStore.
func (s *Store) PruneHistory(ctx context.Context, keep, limit int) (int64, error) {
	if keep < 0 {
		keep = 0
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var deleted int64
	err := s.do(ctx, func(tx *sql.Tx) error {
		res, err := s.inTx(tx).ExecContext(context.Background(), `DELETE FROM node_history WHERE id IN (
			SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY node_id ORDER BY id DESC) AS newer
				FROM node_history) WHERE newer > ? LIMIT ?)`, keep, limit)
		if err != nil {
			return err
		}
		deleted, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune node history: %w", err)
	}
	return deleted, nil
}
