package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/store"
)

const historyColumns = `id, uuid, node_id, created_at, severity, event_type, event, user_name, conductor`

// insertHistory records a transaction's events, with a UUID and a time
// given to those without.
func insertHistory(ctx context.Context, tx pgx.Tx, nodeID int64, events []store.HistoryEvent, now time.Time) error {
	for _, ev := range events {
		if ev.UUID == "" {
			ev.UUID = uuid.NewString()
		} else if _, err := uuid.Parse(ev.UUID); err != nil {
			return fmt.Errorf("history event UUID %q: %w", ev.UUID, err)
		}
		if ev.CreatedAt.IsZero() {
			ev.CreatedAt = now
		}
		if _, err := tx.Exec(ctx, `INSERT INTO node_history (uuid, node_id, created_at, severity, event_type,
			event, user_name, conductor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			strings.ToLower(ev.UUID), nodeID, dbTime(ev.CreatedAt), ev.Severity, ev.EventType, ev.Event,
			ev.User, ev.Conductor); err != nil {
			return fmt.Errorf("record history: %w", err)
		}
	}
	return nil
}

func scanHistory(r pgx.Row) (*store.HistoryEvent, error) {
	var ev store.HistoryEvent
	if err := r.Scan(&ev.ID, &ev.UUID, &ev.NodeID, &ev.CreatedAt, &ev.Severity, &ev.EventType, &ev.Event,
		&ev.User, &ev.Conductor); err != nil {
		return nil, err
	}
	ev.CreatedAt = ev.CreatedAt.UTC()
	return &ev, nil
}

// NodeHistory implements store.HistoryStore.
func (s *Store) NodeHistory(ctx context.Context, nodeID int64, q store.HistoryQuery) ([]*store.HistoryEvent, error) {
	query := `SELECT ` + historyColumns + ` FROM node_history WHERE node_id = $1`
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
		args = append(args, m.ID)
		query += fmt.Sprintf(` AND id %s $%d`, cmp, len(args))
	}
	query += ` ORDER BY id ` + order
	if q.Limit > 0 {
		args = append(args, q.Limit)
		query += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	rows, err := s.pool.Query(ctx, query, args...)
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
	ev, err := scanHistory(s.pool.QueryRow(ctx,
		`SELECT `+historyColumns+` FROM node_history WHERE node_id = $1 AND uuid = $2`, nodeID, strings.ToLower(id)))
	if errors.Is(err, pgx.ErrNoRows) {
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
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM node_history WHERE id IN (
		SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY node_id ORDER BY id DESC) AS newer
			FROM node_history) AS ranked WHERE newer > $1 LIMIT $2)`, keep, lim)
	if err != nil {
		return 0, fmt.Errorf("prune node history: %w", err)
	}
	return tag.RowsAffected(), nil
}
