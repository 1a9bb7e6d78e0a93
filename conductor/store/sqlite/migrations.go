package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migration is one versioned schema change. Versions are consecutive from 1
// and never edited once released: a change is a new entry.
type migration struct {
	version int
	sql     string
}

var migrations = []migration{
	{1, `
CREATE TABLE nodes (
	id                     INTEGER PRIMARY KEY AUTOINCREMENT,
	uuid                   TEXT NOT NULL UNIQUE,
	name                   TEXT UNIQUE,
	driver                 TEXT NOT NULL,
	provision_state        TEXT NOT NULL,
	target_provision_state TEXT NOT NULL DEFAULT '',
	provision_updated_at   TEXT NOT NULL DEFAULT '',
	power_state            TEXT NOT NULL DEFAULT '',
	target_power_state     TEXT NOT NULL DEFAULT '',
	maintenance            INTEGER NOT NULL DEFAULT 0,
	maintenance_reason     TEXT NOT NULL DEFAULT '',
	last_error             TEXT NOT NULL DEFAULT '',
	instance_uuid          TEXT NOT NULL DEFAULT '',
	resource_class         TEXT NOT NULL DEFAULT '',
	description            TEXT NOT NULL DEFAULT '',
	owner                  TEXT NOT NULL DEFAULT '',
	instance_info          TEXT NOT NULL DEFAULT '{}',
	driver_info            TEXT NOT NULL DEFAULT '{}',
	driver_internal_info   TEXT NOT NULL DEFAULT '{}',
	properties             TEXT NOT NULL DEFAULT '{}',
	extra                  TEXT NOT NULL DEFAULT '{}',
	deploy_step            TEXT NOT NULL DEFAULT '{}',
	created_at             TEXT NOT NULL,
	updated_at             TEXT NOT NULL DEFAULT ''
);
CREATE INDEX nodes_provision_state ON nodes (provision_state);

CREATE TABLE ports (
	id                    INTEGER PRIMARY KEY AUTOINCREMENT,
	uuid                  TEXT NOT NULL UNIQUE,
	node_id               INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
	address               TEXT NOT NULL UNIQUE,
	pxe_enabled           INTEGER NOT NULL DEFAULT 1,
	physical_network      TEXT NOT NULL DEFAULT '',
	extra                 TEXT NOT NULL DEFAULT '{}',
	local_link_connection TEXT NOT NULL DEFAULT '{}',
	internal_info         TEXT NOT NULL DEFAULT '{}',
	created_at            TEXT NOT NULL,
	updated_at            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ports_node_id ON ports (node_id);
`},
	// observe: node history (Ironic's node_history table, API 1.78).
	{2, `
CREATE TABLE node_history (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	uuid       TEXT NOT NULL UNIQUE,
	node_id    INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
	created_at TEXT NOT NULL,
	severity   TEXT NOT NULL,
	event_type TEXT NOT NULL,
	event      TEXT NOT NULL,
	user_name  TEXT NOT NULL DEFAULT '',
	conductor  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX node_history_node_id ON node_history (node_id, id);
`},
	migrationMetal3,
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// migrate applies every migration newer than the database's version, each
// in its own transaction. A database newer than this build is refused.
func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var current int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if current > SchemaVersion() {
		return fmt.Errorf("migrate: database schema version %d is newer than this conductor's %d", current, SchemaVersion())
	}
	for _, m := range migrations {
		if m.version <= current {
			continue
		}
		if err := apply(ctx, db, m); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate to %d: %w", m.version, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("migrate to %d: %w", m.version, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.version, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("migrate to %d: record version: %w", m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate to %d: commit: %w", m.version, err)
	}
	return nil
}
