// Package postgres is the conductor's shared store: nodes, ports and node
// history in a PostgreSQL database (jackc/pgx), for fleets run by several
// conductors.
// It has the semantics of the embedded SQLite store (conductor/store/sqlite,
// checked by the same conformance suite): versioned schema migrations that
// refuse a newer database, and per-node exclusive locks — here row locks
// (SELECT … FOR UPDATE), which hold across conductor processes — around
// one transaction per change. It also keeps the cluster's membership and
// node leases (cluster.go) for conductor/cluster.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/internal/jsoncol"
)

// DefaultMaxConns is the connection pool size when the DSN sets no
// pool_max_conns. A node transaction holds one connection while it runs.
const DefaultMaxConns = 16

// IdleInTransactionTimeout is the server-side bound on a transaction
// left idle (PostgreSQL's idle_in_transaction_session_timeout, set on
// every connection unless the DSN sets it): a node transaction does no
// I/O between its statements, so only a paused or stuck conductor idles
// that long, and the server then ends its session, which releases the
// node's row lock and lease for the conductor taking it over and fails
// the paused one's commit.
const IdleInTransactionTimeout = "20s"

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.PortUpdater = (*Store)(nil)
)

// IsDSN reports whether s names a PostgreSQL database (a postgres:// or
// postgresql:// URL) rather than a file.
func IsDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open connects to the database named by dsn (a libpq URL or key=value
// string; pgxpool's pool_* parameters are honoured) and brings its schema
// up to date.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password: never echo it.
		return nil, fmt.Errorf("open postgres store: parse DSN: %w", errors.New(Redact(err.Error())))
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if _, set := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = IdleInTransactionTimeout
	}
	where := cfg.ConnConfig.Host + "/" + cfg.ConnConfig.Database
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	return &Store{pool: pool, now: time.Now}, nil
}

// Redact drops the user information (which may hold a password) of the
// first URL in msg.
func Redact(msg string) string {
	i := strings.Index(msg, "://")
	if i < 0 {
		return msg
	}
	rest := msg[i+3:]
	end := strings.IndexAny(rest, "/? \t\n")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		return msg[:i+3] + "…@" + rest[at+1:]
	}
	return msg
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

const nodeColumns = `id, uuid, name, driver, provision_state, target_provision_state,
	provision_updated_at, power_state, target_power_state, maintenance, maintenance_reason,
	last_error, instance_uuid, resource_class, description, owner, instance_info, driver_info,
	driver_internal_info, properties, extra, deploy_step, attributes, created_at, updated_at`

// nodeSets is "col = $1, …" for every node column but id, in nodeColumns
// order, for UPDATE.
var nodeSets = func() string {
	cols := strings.Split(strings.TrimPrefix(nodeColumns, "id, "), ",")
	for i, c := range cols {
		cols[i] = fmt.Sprintf("%s = $%d", strings.TrimSpace(c), i+1)
	}
	return strings.Join(cols, ", ")
}()

const portColumns = `p.id, p.uuid, p.node_id, n.uuid, p.address, p.pxe_enabled, p.physical_network,
	p.extra, p.local_link_connection, p.internal_info, p.attributes, p.created_at, p.updated_at`

func scanNode(r pgx.Row) (*store.Node, error) {
	var (
		n                               store.Node
		name                            *string
		ps, tps                         string
		pua, updated                    *time.Time
		ii, di, dii, props, extra, step []byte
		attrs                           []byte
	)
	err := r.Scan(&n.ID, &n.UUID, &name, &n.Driver, &ps, &tps, &pua, &n.PowerState,
		&n.TargetPowerState, &n.Maintenance, &n.MaintenanceReason, &n.LastError, &n.InstanceUUID,
		&n.ResourceClass, &n.Description, &n.Owner, &ii, &di, &dii, &props, &extra, &step,
		&attrs, &n.CreatedAt, &updated)
	if err != nil {
		return nil, err
	}
	if name != nil {
		n.Name = *name
	}
	n.ProvisionState = statemachine.State(ps)
	n.TargetProvisionState = statemachine.State(tps)
	n.ProvisionUpdatedAt = timeOf(pua)
	n.CreatedAt = n.CreatedAt.UTC()
	n.UpdatedAt = timeOf(updated)
	if err := jsoncol.DecodeAll([][]byte{ii, di, dii, props, extra, step}, jsoncol.NodeMaps(&n)); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.UUID, err)
	}
	if err := jsoncol.DecodeAttributes(attrs, &n.NodeAttributes); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.UUID, err)
	}
	return &n, nil
}

func scanPort(r pgx.Row) (*store.Port, error) {
	var (
		p                     store.Port
		extra, llc, ii, attrs []byte
		updated               *time.Time
	)
	if err := r.Scan(&p.ID, &p.UUID, &p.NodeID, &p.NodeUUID, &p.Address, &p.PXEEnabled, &p.PhysicalNetwork,
		&extra, &llc, &ii, &attrs, &p.CreatedAt, &updated); err != nil {
		return nil, err
	}
	if err := jsoncol.DecodeAttributes(attrs, &p.PortAttributes); err != nil {
		return nil, fmt.Errorf("port %s: %w", p.UUID, err)
	}
	p.CreatedAt = p.CreatedAt.UTC()
	p.UpdatedAt = timeOf(updated)
	if err := jsoncol.DecodeAll([][]byte{extra, llc, ii}, jsoncol.PortMaps(&p)); err != nil {
		return nil, fmt.Errorf("port %s: %w", p.UUID, err)
	}
	return &p, nil
}

// normalizeTimes truncates the node's times to the database's precision
// (microseconds, UTC), so that the node a caller holds after a save equals
// the node read back.
func normalizeTimes(n *store.Node) {
	n.ProvisionUpdatedAt = dbTime(n.ProvisionUpdatedAt)
	n.CreatedAt = dbTime(n.CreatedAt)
	n.UpdatedAt = dbTime(n.UpdatedAt)
}

// nodeValues returns the values of every column but id, in nodeColumns
// order.
func nodeValues(n *store.Node) ([]any, error) {
	var name any
	if n.Name != "" {
		name = n.Name
	}
	vals := []any{n.UUID, name, n.Driver, string(n.ProvisionState), string(n.TargetProvisionState),
		timeArg(n.ProvisionUpdatedAt), n.PowerState, n.TargetPowerState, n.Maintenance,
		n.MaintenanceReason, n.LastError, n.InstanceUUID, n.ResourceClass, n.Description, n.Owner}
	maps, err := jsoncol.EncodeAll(jsoncol.NodeMaps(n))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.UUID, err)
	}
	vals = append(vals, maps...)
	attrs, err := jsoncol.EncodeAttributes(n.NodeAttributes)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.UUID, err)
	}
	return append(vals, attrs, timeArg(n.CreatedAt), timeArg(n.UpdatedAt)), nil
}

// CreateNode implements store.Store.
func (s *Store) CreateNode(ctx context.Context, n *store.Node) error {
	n.InitNew(s.now())
	normalizeTimes(n)
	vals, err := nodeValues(n)
	if err != nil {
		return err
	}
	err = s.pool.QueryRow(ctx, `INSERT INTO nodes (`+strings.TrimPrefix(nodeColumns, "id, ")+
		`) VALUES (`+placeholders(1, len(vals))+`) RETURNING id`, vals...).Scan(&n.ID)
	if err != nil {
		return fmt.Errorf("create node %s: %w", n.UUID, constraintErr(err, n.UUID, n.Name))
	}
	return nil
}

// identWhere is the column a node identifier selects on (uuid or name)
// and the identifier as stored.
func identWhere(ident string) (col, val string) {
	if _, err := uuid.Parse(ident); err == nil {
		return "uuid", strings.ToLower(ident)
	}
	return "name", ident
}

// GetNode implements store.NodeReader.
func (s *Store) GetNode(ctx context.Context, ident string) (*store.Node, error) {
	col, val := identWhere(ident)
	return getNode(ctx, s.pool, `SELECT `+nodeColumns+` FROM nodes WHERE `+col+` = $1`, ident, val)
}

// querier is what the pool and a transaction share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func getNode(ctx context.Context, q querier, sql, ident string, args ...any) (*store.Node, error) {
	n, err := scanNode(q.QueryRow(ctx, sql, args...))
	if errors.Is(err, pgx.ErrNoRows) {
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
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.ProvisionState != "" {
		add("provision_state = $%d", string(f.ProvisionState))
	}
	if f.Driver != "" {
		add("driver = $%d", f.Driver)
	}
	if f.Maintenance != nil {
		add("maintenance = $%d", *f.Maintenance)
	}
	if !f.ProvisionUpdatedBefore.IsZero() {
		add("(provision_updated_at IS NULL OR provision_updated_at < $%d)", f.ProvisionUpdatedBefore)
	}
	q := `SELECT ` + nodeColumns + ` FROM nodes`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.pool.Query(ctx, q+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Node, error) { return scanNode(r) })
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

// NodeByMACs implements store.NodeReader.
func (s *Store) NodeByMACs(ctx context.Context, macs []string) (*store.Node, error) {
	if len(macs) == 0 {
		return nil, errdefs.NotFound("Resource could not be found.")
	}
	lower := make([]string, len(macs))
	for i, m := range macs {
		lower[i] = strings.ToLower(m)
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT node_id FROM ports WHERE address = ANY($1)`, lower)
	if err != nil {
		return nil, fmt.Errorf("lookup node by MACs %v: %w", macs, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("lookup node by MACs %v: %w", macs, err)
	}
	if len(ids) != 1 {
		return nil, errdefs.NotFound("Resource could not be found.")
	}
	return getNode(ctx, s.pool, `SELECT `+nodeColumns+` FROM nodes WHERE id = $1`, strings.Join(macs, ","), ids[0])
}

// WithNodeLock implements store.NodeLocker. The lock is the node's row
// lock (SELECT … FOR UPDATE), held by the transaction, so it excludes
// every conductor sharing the database; waiting for it ends with ctx.
func (s *Store) WithNodeLock(ctx context.Context, ident string, fn func(store.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("lock node %s: begin: %w", ident, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	col, val := identWhere(ident)
	n, err := getNode(ctx, tx, `SELECT `+nodeColumns+` FROM nodes WHERE `+col+` = $1 FOR UPDATE`, ident, val)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("lock node %s: %w", ident, ctx.Err())
		}
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
	if t.deleted {
		// The node's history goes with it (ON DELETE CASCADE).
		if _, err := tx.Exec(ctx, `DELETE FROM nodes WHERE id = $1`, n.ID); err != nil {
			return fmt.Errorf("delete node %s: %w", n.UUID, err)
		}
	} else {
		if err := insertHistory(ctx, tx, n.ID, t.events, dbTime(s.now())); err != nil {
			return fmt.Errorf("save node %s: %w", n.UUID, err)
		}
		normalizeTimes(n)
		after, err := nodeValues(n)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(before, after) {
			n.UpdatedAt = dbTime(s.now())
			if after, err = nodeValues(n); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE nodes SET `+nodeSets+fmt.Sprintf(` WHERE id = $%d`, len(after)+1),
				append(after, n.ID)...); err != nil {
				return fmt.Errorf("save node %s: %w", n.UUID, constraintErr(err, n.UUID, n.Name))
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit node %s: %w", n.UUID, err)
	}
	return nil
}

type nodeTx struct {
	tx      pgx.Tx
	node    *store.Node
	deleted bool
	events  []store.HistoryEvent
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

// AddHistory implements store.Tx.
func (t *nodeTx) AddHistory(ev store.HistoryEvent) { t.events = append(t.events, ev) }

// CheckFence implements store.Tx: the node's lease row must name f's
// conductor with f's generation and be unexpired by the database's clock
// now. The row is then held FOR SHARE until the transaction ends, so a
// takeover (which updates it) waits for this transaction, and the new
// holder reads what it committed.
func (t *nodeTx) CheckFence(ctx context.Context, f store.Fence) error {
	var one int
	err := t.tx.QueryRow(ctx, `SELECT 1 FROM node_leases WHERE node_id = $1 AND owner = $2 AND generation = $3
		AND expires_at > clock_timestamp() FOR SHARE`, t.node.ID, f.Owner, f.Generation).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("node %s: lease of %s at generation %d: %w", t.node.UUID, f.Owner, f.Generation, store.ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("node %s: check lease: %w", t.node.UUID, err)
	}
	return nil
}

// CreatePort implements store.Store.
func (s *Store) CreatePort(ctx context.Context, p *store.Port) error {
	p.InitNew(dbTime(s.now()))
	vals, err := portValues(p)
	if err != nil {
		return fmt.Errorf("create port %s: %w", p.Address, err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO ports (uuid, node_id, address, pxe_enabled,
		physical_network, extra, local_link_connection, internal_info, attributes, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, p.UUID, p.NodeID, p.Address, p.PXEEnabled,
		p.PhysicalNetwork, vals[0], vals[1], vals[2], vals[3], p.CreatedAt)
	if err != nil {
		return fmt.Errorf("create port %s: %w", p.Address, constraintErr(err, p.UUID, p.Address))
	}
	got, err := s.GetPort(ctx, p.UUID)
	if err != nil {
		return err
	}
	*p = *got
	return nil
}

// portValues are the port's JSON columns: extra, local_link_connection,
// internal_info, attributes.
func portValues(p *store.Port) ([]any, error) {
	vals, err := jsoncol.EncodeAll(jsoncol.PortMaps(p))
	if err != nil {
		return nil, err
	}
	attrs, err := jsoncol.EncodeAttributes(p.PortAttributes)
	if err != nil {
		return nil, err
	}
	return append(vals, attrs), nil
}

// UpdatePort implements store.PortUpdater.
func (s *Store) UpdatePort(ctx context.Context, p *store.Port) error {
	p.Address = strings.ToLower(p.Address)
	vals, err := portValues(p)
	if err != nil {
		return fmt.Errorf("update port %s: %w", p.UUID, err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE ports SET address = $1, pxe_enabled = $2, physical_network = $3,
		extra = $4, local_link_connection = $5, internal_info = $6, attributes = $7, updated_at = $8, node_id = $9
		WHERE uuid = $10`, p.Address, p.PXEEnabled, p.PhysicalNetwork, vals[0], vals[1], vals[2], vals[3],
		dbTime(s.now()), p.NodeID, strings.ToLower(p.UUID))
	if err != nil {
		return fmt.Errorf("update port %s: %w", p.UUID, constraintErr(err, p.UUID, p.Address))
	}
	if tag.RowsAffected() == 0 {
		return errdefs.NotFound("Port %s could not be found.", p.UUID)
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
	p, err := scanPort(s.pool.QueryRow(ctx, `SELECT `+portColumns+
		` FROM ports p JOIN nodes n ON n.id = p.node_id WHERE p.uuid = $1`, strings.ToLower(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errdefs.NotFound("Port %s could not be found.", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get port %s: %w", id, err)
	}
	return p, nil
}

// ListPorts implements store.NodeReader.
func (s *Store) ListPorts(ctx context.Context, f store.PortFilter) ([]*store.Port, error) {
	return listPorts(ctx, s.pool, f)
}

func listPorts(ctx context.Context, q querier, f store.PortFilter) ([]*store.Port, error) {
	var (
		where []string
		args  []any
	)
	if f.NodeID != 0 {
		args = append(args, f.NodeID)
		where = append(where, fmt.Sprintf("p.node_id = $%d", len(args)))
	}
	if f.Address != "" {
		args = append(args, strings.ToLower(f.Address))
		where = append(where, fmt.Sprintf("p.address = $%d", len(args)))
	}
	query := `SELECT ` + portColumns + ` FROM ports p JOIN nodes n ON n.id = p.node_id`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := q.Query(ctx, query+" ORDER BY p.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Port, error) { return scanPort(r) })
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	return out, nil
}

// DeletePort implements store.Store.
func (s *Store) DeletePort(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM ports WHERE uuid = $1`, strings.ToLower(id))
	if err != nil {
		return fmt.Errorf("delete port %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return errdefs.NotFound("Port %s could not be found.", id)
	}
	return nil
}

// PostgreSQL error codes (SQLSTATE) the store translates.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

// constraintErr turns a unique violation into ErrAlreadyExists and a
// missing node of a port into ErrInvalidArgument, with Ironic's messages;
// other errors pass through.
func constraintErr(err error, id, second string) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case pe.Code == codeUniqueViolation && pe.ConstraintName == "nodes_uuid_unique":
		return errdefs.AlreadyExists("A node with UUID %s already exists.", id)
	case pe.Code == codeUniqueViolation && pe.ConstraintName == "nodes_name_unique":
		return errdefs.AlreadyExists("A node with name %s already exists.", second)
	case pe.Code == codeUniqueViolation && pe.ConstraintName == "ports_uuid_unique":
		return errdefs.AlreadyExists("A port with UUID %s already exists.", id)
	case pe.Code == codeUniqueViolation && pe.ConstraintName == "ports_address_unique":
		return errdefs.AlreadyExists("A port with MAC address %s already exists.", second)
	case pe.Code == codeForeignKeyViolation && pe.ConstraintName == "ports_node_fk":
		return errdefs.InvalidArgument("Node could not be found for port %s.", second)
	}
	return err
}

// placeholders is "$from, …, $(from+n-1)".
func placeholders(from, n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = fmt.Sprintf("$%d", from+i)
	}
	return strings.Join(p, ", ")
}

// dbTime is t as the database keeps it: UTC, microseconds, no monotonic
// reading.
func dbTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// timeArg is a time column's value: NULL for the zero time.
func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return dbTime(t)
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
