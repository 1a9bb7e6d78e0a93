package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PeerChannel is the LISTEN/NOTIFY channel on which the conductors sharing
// a database tell each other what they committed (conductor/changefeed).
const PeerChannel = "rivet_changes"

// NotifyPeers sends payload to every conductor listening on PeerChannel
// (pg_notify; PostgreSQL delivers it once the sending transaction — here
// the statement — commits).
func (s *Store) NotifyPeers(ctx context.Context, payload string) error {
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, PeerChannel, payload); err != nil {
		return fmt.Errorf("notify %s: %w", PeerChannel, err)
	}
	return nil
}

// ListenPeers listens on PeerChannel over a connection of its own (not one
// of the pool's), calls ready once listening, then fn with each payload,
// until ctx ends (nil) or the connection fails (the error).
func (s *Store) ListenPeers(ctx context.Context, ready func(), fn func(payload string)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("listen %s: connect: %w", PeerChannel, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+PeerChannel); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("listen %s: %w", PeerChannel, err)
	}
	if ready != nil {
		ready()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listen %s: %w", PeerChannel, err)
		}
		fn(n.Payload)
	}
}
