// Package sqlite is the conductor's embedded store: nodes and ports in one
// SQLite file (modernc.org/sqlite, pure Go), WAL mode, versioned schema
// migrations, and per-node exclusive locks around write transactions.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Store is a store.Store on an SQLite file.
type Store struct {
	db    *sql.DB
	now   func() time.Time
	mu    sync.Mutex
	locks map[int64]chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and brings its
// schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db, now: time.Now, locks: map[int64]chan struct{}{}}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

const nodeColumns = `id, uuid, name, driver, provision_state, target_provision_state,
	provision_updated_at, power_state, target_power_state, maintenance, maintenance_reason,
	last_error, instance_uuid, resource_class, description, owner, instance_info, driver_info,
	driver_internal_info, properties, extra, deploy_step, created_at, updated_at`

const portColumns = `p.id, p.uuid, p.node_id, n.uuid, p.address, p.pxe_enabled, p.physical_network,
	p.extra, p.local_link_connection, p.internal_info, p.created_at, p.updated_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanNode(r rowScanner) (*store.Node, error) {
	var (
		n                               store.Node
		name                            sql.NullString
		ps, tps, pua, created, updated  string
		ii, di, dii, props, extra, step string
		maint                           int
	)
	err := r.Scan(&n.ID, &n.UUID, &name, &n.Driver, &ps, &tps, &pua, &n.PowerState,
		&n.TargetPowerState, &maint, &n.MaintenanceReason, &n.LastError, &n.InstanceUUID,
		&n.ResourceClass, &n.Description, &n.Owner, &ii, &di, &dii, &props, &extra, &step,
		&created, &updated)
	if err != nil {
		return nil, err
	}
	n.Name = name.String
	n.ProvisionState = statemachine.State(ps)
	n.TargetProvisionState = statemachine.State(tps)
	n.Maintenance = maint != 0
	n.ProvisionUpdatedAt = parseTime(pua)
	n.CreatedAt = parseTime(created)
	n.UpdatedAt = parseTime(updated)
	for _, f := range []struct {
		raw string
		dst *map[string]any
	}{{ii, &n.InstanceInfo}, {di, &n.DriverInfo}, {dii, &n.DriverInternalInfo},
		{props, &n.Properties}, {extra, &n.Extra}, {step, &n.DeployStep}} {
		if err := decodeMap(f.raw, f.dst); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.UUID, err)
		}
	}
	return &n, nil
}

func scanPort(r rowScanner) (*store.Port, error) {
	var (
		p                store.Port
		pxe              int
		extra, llc, ii   string
		created, updated string
	)
	if err := r.Scan(&p.ID, &p.UUID, &p.NodeID, &p.NodeUUID, &p.Address, &pxe, &p.PhysicalNetwork,
		&extra, &llc, &ii, &created, &updated); err != nil {
		return nil, err
	}
	p.PXEEnabled = pxe != 0
	p.CreatedAt = parseTime(created)
	p.UpdatedAt = parseTime(updated)
	for _, f := range []struct {
		raw string
		dst *map[string]any
	}{{extra, &p.Extra}, {llc, &p.LocalLinkConnection}, {ii, &p.InternalInfo}} {
		if err := decodeMap(f.raw, f.dst); err != nil {
			return nil, fmt.Errorf("port %s: %w", p.UUID, err)
		}
	}
	return &p, nil
}

// nodeValues returns the column values of every column but id, in
// nodeColumns order.
func nodeValues(n *store.Node) ([]any, error) {
	var name any
	if n.Name != "" {
		name = n.Name
	}
	vals := []any{n.UUID, name, n.Driver, string(n.ProvisionState), string(n.TargetProvisionState),
		formatTime(n.ProvisionUpdatedAt), n.PowerState, n.TargetPowerState, boolInt(n.Maintenance),
		n.MaintenanceReason, n.LastError, n.InstanceUUID, n.ResourceClass, n.Description, n.Owner}
	for _, m := range []map[string]any{n.InstanceInfo, n.DriverInfo, n.DriverInternalInfo,
		n.Properties, n.Extra, n.DeployStep} {
		s, err := encodeMap(m)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.UUID, err)
		}
		vals = append(vals, s)
	}
	return append(vals, formatTime(n.CreatedAt), formatTime(n.UpdatedAt)), nil
}

// CreateNode implements store.Store.
func (s *Store) CreateNode(ctx context.Context, n *store.Node) error {
	if n.UUID == "" {
		n.UUID = uuid.NewString()
	}
	n.ProvisionState = statemachine.Enroll
	n.TargetProvisionState = statemachine.NoState
	n.CreatedAt = s.now().UTC()
	n.UpdatedAt = time.Time{}
	vals, err := nodeValues(n)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO nodes (`+strings.TrimPrefix(nodeColumns, "id, ")+
		`) VALUES (`+placeholders(len(vals))+`)`, vals...)
	if err != nil {
		return fmt.Errorf("create node %s: %w", n.UUID, uniqueErr(err, n.UUID, n.Name))
	}
	n.ID, err = res.LastInsertId()
	if err != nil {
		return fmt.Errorf("create node %s: %w", n.UUID, err)
	}
	return nil
}

// GetNode implements store.NodeReader.
func (s *Store) GetNode(ctx context.Context, ident string) (*store.Node, error) {
	return getNode(ctx, s.db, ident)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func getNode(ctx context.Context, q querier, ident string) (*store.Node, error) {
	col := "name"
	if _, err := uuid.Parse(ident); err == nil {
		col = "uuid"
		ident = strings.ToLower(ident)
	}
	n, err := scanNode(q.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE `+col+` = ?`, ident))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.NotFound("Node %s could not be found.", ident)
	}
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", ident, err)
	}
	return n, nil
}

func getNodeByID(ctx context.Context, q querier, id int64, ident string) (*store.Node, error) {
	n, err := scanNode(q.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.NotFound("Node %s could not be found.", ident)
	}
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", ident, err)
	}
	return n, nil
}

// ListNodes implements store.NodeReader.
func (s *Store) ListNodes(ctx context.Context, f store.NodeFilter) ([]*store.Node, error) {
	var (
		where []string
		args  []any
	)
	if f.ProvisionState != "" {
		where = append(where, "provision_state = ?")
		args = append(args, string(f.ProvisionState))
	}
	if f.Driver != "" {
		where = append(where, "driver = ?")
		args = append(args, f.Driver)
	}
	if f.Maintenance != nil {
		where = append(where, "maintenance = ?")
		args = append(args, boolInt(*f.Maintenance))
	}
	q := `SELECT ` + nodeColumns + ` FROM nodes`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, q+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []*store.Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

// NodeByMACs implements store.NodeReader.
func (s *Store) NodeByMACs(ctx context.Context, macs []string) (*store.Node, error) {
	if len(macs) == 0 {
		return nil, errdefs.NotFound("Resource could not be found.")
	}
	args := make([]any, len(macs))
	for i, m := range macs {
		args[i] = strings.ToLower(m)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT node_id FROM ports WHERE address IN (`+
		placeholders(len(macs))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("lookup node by MACs %v: %w", macs, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("lookup node by MACs %v: %w", macs, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lookup node by MACs %v: %w", macs, err)
	}
	if len(ids) != 1 {
		return nil, errdefs.NotFound("Resource could not be found.")
	}
	return getNodeByID(ctx, s.db, ids[0], strings.Join(macs, ","))
}

// WithNodeLock implements store.NodeLocker.
func (s *Store) WithNodeLock(ctx context.Context, ident string, fn func(store.Tx) error) error {
	n, err := s.GetNode(ctx, ident)
	if err != nil {
		return err
	}
	unlock, err := s.lock(ctx, n.ID)
	if err != nil {
		return fmt.Errorf("lock node %s: %w", n.UUID, err)
	}
	defer unlock()

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("lock node %s: begin: %w", n.UUID, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	n, err = getNodeByID(ctx, tx, n.ID, ident)
	if err != nil {
		return err
	}
	before, err := nodeValues(n)
	if err != nil {
		return err
	}
	t := &nodeTx{tx: tx, node: n}
	if err := fn(t); err != nil {
		return err
	}
	switch {
	case t.deleted:
		if _, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, n.ID); err != nil {
			return fmt.Errorf("delete node %s: %w", n.UUID, err)
		}
	default:
		after, err := nodeValues(n)
		if err != nil {
			return err
		}
		if reflect.DeepEqual(before, after) {
			break
		}
		n.UpdatedAt = s.now().UTC()
		after, err = nodeValues(n)
		if err != nil {
			return err
		}
		sets := strings.Split(strings.TrimPrefix(nodeColumns, "id, "), ",")
		for i := range sets {
			sets[i] = strings.TrimSpace(sets[i]) + " = ?"
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET `+strings.Join(sets, ", ")+` WHERE id = ?`,
			append(after, n.ID)...); err != nil {
			return fmt.Errorf("save node %s: %w", n.UUID, uniqueErr(err, n.UUID, n.Name))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit node %s: %w", n.UUID, err)
	}
	return nil
}

// lock takes node id's in-process exclusive lock, waiting at most as long
// as ctx allows.
func (s *Store) lock(ctx context.Context, id int64) (func(), error) {
	s.mu.Lock()
	l, ok := s.locks[id]
	if !ok {
		l = make(chan struct{}, 1)
		s.locks[id] = l
	}
	s.mu.Unlock()
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type nodeTx struct {
	tx      *sql.Tx
	node    *store.Node
	deleted bool
}

// Node implements store.Tx.
func (t *nodeTx) Node() *store.Node { return t.node }

// Ports implements store.Tx.
func (t *nodeTx) Ports(ctx context.Context) ([]*store.Port, error) {
	return listPorts(ctx, t.tx, store.PortFilter{NodeID: t.node.ID})
}

// DeleteNode implements store.Tx.
func (t *nodeTx) DeleteNode(ctx context.Context) error {
	t.deleted = true
	return nil
}

// CreatePort implements store.Store.
func (s *Store) CreatePort(ctx context.Context, p *store.Port) error {
	if p.UUID == "" {
		p.UUID = uuid.NewString()
	}
	p.Address = strings.ToLower(p.Address)
	p.CreatedAt = s.now().UTC()
	var vals []any
	for _, m := range []map[string]any{p.Extra, p.LocalLinkConnection, p.InternalInfo} {
		v, err := encodeMap(m)
		if err != nil {
			return fmt.Errorf("create port %s: %w", p.Address, err)
		}
		vals = append(vals, v)
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO ports (uuid, node_id, address, pxe_enabled,
		physical_network, extra, local_link_connection, internal_info, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.UUID, p.NodeID, p.Address, boolInt(p.PXEEnabled),
		p.PhysicalNetwork, vals[0], vals[1], vals[2], formatTime(p.CreatedAt))
	if err != nil {
		if strings.Contains(err.Error(), "FOREIGN KEY") {
			return fmt.Errorf("create port %s: %w", p.Address, errdefs.InvalidArgument("Node %d could not be found.", p.NodeID))
		}
		return fmt.Errorf("create port %s: %w", p.Address, uniqueErr(err, p.UUID, p.Address))
	}
	p.ID, err = res.LastInsertId()
	if err != nil {
		return fmt.Errorf("create port %s: %w", p.Address, err)
	}
	got, err := s.GetPort(ctx, p.UUID)
	if err != nil {
		return err
	}
	*p = *got
	return nil
}

// GetPort implements store.NodeReader.
func (s *Store) GetPort(ctx context.Context, id string) (*store.Port, error) {
	p, err := scanPort(s.db.QueryRowContext(ctx, `SELECT `+portColumns+
		` FROM ports p JOIN nodes n ON n.id = p.node_id WHERE p.uuid = ?`, strings.ToLower(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.NotFound("Port %s could not be found.", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get port %s: %w", id, err)
	}
	return p, nil
}

// ListPorts implements store.NodeReader.
func (s *Store) ListPorts(ctx context.Context, f store.PortFilter) ([]*store.Port, error) {
	return listPorts(ctx, s.db, f)
}

func listPorts(ctx context.Context, q querier, f store.PortFilter) ([]*store.Port, error) {
	var (
		where []string
		args  []any
	)
	if f.NodeID != 0 {
		where = append(where, "p.node_id = ?")
		args = append(args, f.NodeID)
	}
	if f.Address != "" {
		where = append(where, "p.address = ?")
		args = append(args, strings.ToLower(f.Address))
	}
	query := `SELECT ` + portColumns + ` FROM ports p JOIN nodes n ON n.id = p.node_id`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := q.QueryContext(ctx, query+" ORDER BY p.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	defer rows.Close()
	var out []*store.Port
	for rows.Next() {
		p, err := scanPort(rows)
		if err != nil {
			return nil, fmt.Errorf("list ports: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	return out, nil
}

// DeletePort implements store.Store.
func (s *Store) DeletePort(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM ports WHERE uuid = ?`, strings.ToLower(id))
	if err != nil {
		return fmt.Errorf("delete port %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFound("Port %s could not be found.", id)
	}
	return nil
}

// uniqueErr turns a UNIQUE constraint failure into ErrAlreadyExists with
// Ironic's message; other errors pass through.
func uniqueErr(err error, id, second string) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "UNIQUE constraint failed: nodes.uuid"):
		return errdefs.AlreadyExists("A node with UUID %s already exists.", id)
	case strings.Contains(msg, "UNIQUE constraint failed: nodes.name"):
		return errdefs.AlreadyExists("A node with name %s already exists.", second)
	case strings.Contains(msg, "UNIQUE constraint failed: ports.uuid"):
		return errdefs.AlreadyExists("A port with UUID %s already exists.", id)
	case strings.Contains(msg, "UNIQUE constraint failed: ports.address"):
		return errdefs.AlreadyExists("A port with MAC address %s already exists.", second)
	}
	return err
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const timeLayout = time.RFC3339Nano

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func encodeMap(m map[string]any) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode JSON column: %w", err)
	}
	return string(b), nil
}

func decodeMap(s string, dst *map[string]any) error {
	m := map[string]any{}
	if s != "" {
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return fmt.Errorf("decode JSON column: %w", err)
		}
	}
	*dst = m
	return nil
}
