package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rivetmetal/rivet/conductor/cluster"
	"github.com/rivetmetal/rivet/conductor/statemachine"
)

// The store is the registry of the conductors sharing it.
var _ cluster.Registry = (*Store)(nil)

// micros is a duration as an integer of microseconds, for
// "$n * interval '1 microsecond'".
func micros(d time.Duration) int64 { return d.Microseconds() }

// Heartbeat implements cluster.Registry.
func (s *Store) Heartbeat(ctx context.Context, name, apiURL string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO conductors (name, api_url, started_at, heartbeat_at)
		VALUES ($1, $2, now(), now())
		ON CONFLICT (name) DO UPDATE SET api_url = EXCLUDED.api_url, heartbeat_at = now()`, name, apiURL)
	if err != nil {
		return fmt.Errorf("conductor %s: heartbeat: %w", name, err)
	}
	return nil
}

// LiveConductors implements cluster.Registry.
func (s *Store) LiveConductors(ctx context.Context, within time.Duration) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT name FROM conductors
		WHERE heartbeat_at >= now() - $1 * interval '1 microsecond' ORDER BY name`, micros(within))
	if err != nil {
		return nil, fmt.Errorf("list live conductors: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list live conductors: %w", err)
	}
	return names, nil
}

// Leave implements cluster.Registry: the conductor's row goes, and the
// leases of this process are marked free (keeping their generation).
func (s *Store) Leave(ctx context.Context, h cluster.Holder) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE node_leases SET owner = '', incarnation = '', expires_at = now()
			WHERE owner = $1 AND incarnation = $2`, h.Name, h.Incarnation); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM conductors WHERE name = $1`, h.Name)
		return err
	})
	if err != nil {
		return fmt.Errorf("conductor %s: leave: %w", h.Name, err)
	}
	return nil
}

// NodeLeases implements cluster.Registry.
func (s *Store) NodeLeases(ctx context.Context) ([]cluster.NodeLease, error) {
	rows, err := s.pool.Query(ctx, `SELECT n.uuid, n.provision_state, COALESCE(l.owner, ''),
		COALESCE(l.expires_at < now(), false)
		FROM nodes n LEFT JOIN node_leases l ON l.node_id = n.id ORDER BY n.id`)
	if err != nil {
		return nil, fmt.Errorf("list node leases: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cluster.NodeLease, error) {
		var (
			l  cluster.NodeLease
			ps string
		)
		err := r.Scan(&l.NodeUUID, &ps, &l.Owner, &l.Expired)
		l.ProvisionState = statemachine.State(ps)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("list node leases: %w", err)
	}
	return out, nil
}

// LeaseHolder implements cluster.Registry.
func (s *Store) LeaseHolder(ctx context.Context, nodeUUID string) (string, error) {
	var owner string
	err := s.pool.QueryRow(ctx, `SELECT l.owner FROM node_leases l JOIN nodes n ON n.id = l.node_id
		WHERE n.uuid = $1 AND l.expires_at >= now()`, nodeUUID).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("node %s: lease holder: %w", nodeUUID, err)
	}
	return owner, nil
}

// acquireLockTimeout bounds AcquireLease's wait for the lease row. The
// row is held FOR SHARE by the holder's node transactions while they run
// (CheckFence); a holder paused in the middle of one must not stall the
// cluster loop of the conductor taking the lease over, which tries again
// on its next round.
const acquireLockTimeout = "2s"

// AcquireLease implements cluster.Registry with one conditional upsert:
// the row is written only when it is new, h's own, free or expired. A
// change of holder (name or incarnation) bumps the lease's generation.
func (s *Store) AcquireLease(ctx context.Context, nodeUUID string, h cluster.Holder, ttl time.Duration) (int64, bool, error) {
	var gens []int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+acquireLockTimeout+`'`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `INSERT INTO node_leases AS l (node_id, owner, incarnation, acquired_at, expires_at)
			SELECT id, $2, $3, now(), now() + $4 * interval '1 microsecond' FROM nodes WHERE uuid = $1
			ON CONFLICT (node_id) DO UPDATE SET
				owner       = EXCLUDED.owner,
				incarnation = EXCLUDED.incarnation,
				expires_at  = EXCLUDED.expires_at,
				acquired_at = CASE WHEN l.owner = EXCLUDED.owner AND l.incarnation = EXCLUDED.incarnation
					THEN l.acquired_at ELSE EXCLUDED.acquired_at END,
				generation  = CASE WHEN l.owner = EXCLUDED.owner AND l.incarnation = EXCLUDED.incarnation
					THEN l.generation ELSE l.generation + 1 END
			WHERE (l.owner = EXCLUDED.owner AND l.incarnation = EXCLUDED.incarnation) OR l.owner = '' OR l.expires_at < now()
			RETURNING l.generation`, nodeUUID, h.Name, h.Incarnation, micros(ttl))
		if err != nil {
			return err
		}
		gens, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("node %s: acquire lease for %s: %w", nodeUUID, h.Name, err)
	}
	if len(gens) != 1 {
		return 0, false, nil
	}
	return gens[0], true, nil
}

// RenewLeases implements cluster.Registry. Adopting the leases of an
// earlier incarnation changes their holder, so their generation goes up.
func (s *Store) RenewLeases(ctx context.Context, h cluster.Holder, ttl time.Duration, adopt bool) ([]cluster.HeldLease, error) {
	if adopt {
		if _, err := s.pool.Exec(ctx, `UPDATE node_leases SET incarnation = $2, generation = generation + 1,
			acquired_at = now() WHERE owner = $1 AND incarnation <> $2 AND expires_at >= now()`,
			h.Name, h.Incarnation); err != nil {
			return nil, fmt.Errorf("adopt leases of %s: %w", h.Name, err)
		}
	}
	rows, err := s.pool.Query(ctx, `UPDATE node_leases l SET expires_at = now() + $3 * interval '1 microsecond'
		FROM nodes n WHERE l.owner = $1 AND l.incarnation = $2 AND n.id = l.node_id
		RETURNING n.uuid, l.generation`, h.Name, h.Incarnation, micros(ttl))
	if err != nil {
		return nil, fmt.Errorf("renew leases of %s: %w", h.Name, err)
	}
	leases, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cluster.HeldLease, error) {
		var l cluster.HeldLease
		err := r.Scan(&l.NodeUUID, &l.Generation)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases of %s: %w", h.Name, err)
	}
	return leases, nil
}

// ReleaseLease implements cluster.Registry. The node row is read FOR SHARE:
// a node transaction in flight (holding the row lock) is waited for, and
// the state it commits is the one checked.
func (s *Store) ReleaseLease(ctx context.Context, nodeUUID string, h cluster.Holder, states []statemachine.State) (bool, error) {
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = string(st)
	}
	var released bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM nodes WHERE uuid = $1 AND provision_state = ANY($2) FOR SHARE`,
			nodeUUID, names).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE node_leases SET owner = '', incarnation = '', expires_at = now()
			WHERE node_id = $1 AND owner = $2 AND incarnation = $3`, id, h.Name, h.Incarnation)
		released = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("node %s: release lease of %s: %w", nodeUUID, h.Name, err)
	}
	return released, nil
}
