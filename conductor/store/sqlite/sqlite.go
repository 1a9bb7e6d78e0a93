// Package sqlite is the conductor's embedded store: nodes, ports and node
// history in one SQLite file (modernc.org/sqlite, pure Go), WAL mode,
// versioned schema migrations, and per-node exclusive locks around write
// transactions.
//
// SQLite runs one writer at a time, and with synchronous=FULL every commit
// waits for an fsync. The store therefore writes through one connection
// owned by a committer goroutine that groups the writes queued meanwhile
// into one transaction — each in its own savepoint, so each still commits
// or rolls back alone — and one fsync (group commit). Everything else runs
// on the callers' goroutines, in parallel: reads go through a separate pool
// that WAL lets run beside the writer, and a node transaction reads the
// node, runs its function and encodes the result before handing the one
// UPDATE to the committer. Writers never meet SQLite's busy handler, whose
// sleeps (1 to 100 ms) would otherwise set the tail latency under load.
// Statements are prepared once per connection and reused. The store
// assumes it is the file's only writer (the node locks are in-process);
// a write from elsewhere is detected and refused as a conflict. Because
// it is, the rows it last committed are kept in a bounded cache
// (rowCache: decoded, and as packed text once dropped from the decoded
// tier) that single-node reads and node transactions use instead of a
// read: a node row changed behind the store's back is therefore seen
// only once a write of it has been refused as a conflict.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/conductor/store/internal/jsoncol"
)

// Store is a store.Store on an SQLite file.
type Store struct {
	// db is the writer: one connection, used by the committer only.
	db *sql.DB
	// rdb is the read pool (query_only connections).
	rdb *sql.DB
	// ops queues writes for the committer, urgent those a client waits
	// for (store.Urgent), which it takes first; stop ends it.
	ops, urgent chan *writeOp
	stop        chan struct{}
	wg          sync.WaitGroup
	now         func() time.Time

	mu    sync.Mutex
	locks map[int64]chan struct{}
	stmts map[stmtKey]*sql.Stmt

	// ids remembers the row ID of each node UUID the store resolved or
	// created (string → int64), so that a node transaction makes one
	// query, not two. An entry is a hint: the row read under the lock
	// must carry the UUID, or the node is resolved again from the
	// database.
	ids sync.Map

	// uuids remembers the UUID of each node row ID the store has
	// resolved or created (int64 → string), so that a lookup by MAC names
	// its node without reading the row. Row IDs are never reused
	// (AUTOINCREMENT) and a node's UUID never changes, so an entry holds
	// until the node is deleted, when it is dropped (one conductor owns
	// a SQLite file).
	uuids sync.Map

	// memo holds the maps decoded from JSON column texts recently read
	// from the file by single-node reads and node transactions (those
	// the row cache did not answer).
	memo *jsoncol.Memo

	// rows holds node rows as last committed, for single-node reads and
	// node transactions (see rowCache).
	rows *rowCache

	// ports holds answers of port reads (see portCache).
	ports *portCache
}

// MemoBytes is the JSON column text the store's decode memo holds: at a
// few KiB per node, the nodes a deploy storm has in flight at once.
const MemoBytes = 4 << 20

type stmtKey struct {
	db    *sql.DB
	query string
}

// Readers is the size of the read pool.
const Readers = 32

// ProfileLabel is the pprof label key whose value "committer" marks the
// committer goroutine in profiles.
const ProfileLabel = "rivet"

// MaxBatch bounds the writes committed together.
const MaxBatch = 128

// ErrClosed is returned by writes on a closed store.
var ErrClosed = errors.New("store closed")

var (
	_ store.Store       = (*Store)(nil)
	_ store.PortUpdater = (*Store)(nil)
)

// Open opens (creating if needed) the database file at path and brings its
// schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	q.Add("_pragma", "query_only(1)")
	q.Del("_txlock")
	rdb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: readers: %w", path, err)
	}
	rdb.SetMaxOpenConns(Readers)
	rdb.SetMaxIdleConns(Readers)
	s := &Store{db: db, rdb: rdb, ops: make(chan *writeOp), urgent: make(chan *writeOp), stop: make(chan struct{}), now: time.Now,
		locks: map[int64]chan struct{}{}, stmts: map[stmtKey]*sql.Stmt{}, memo: jsoncol.NewMemo(MemoBytes),
		rows: newRowCache(RowCacheBytes, RowTextBytes), ports: newPortCache()}
	for _, q := range txStatements {
		if _, err := s.stmt(ctx, db, q); err != nil {
			s.closeDB()
			return nil, fmt.Errorf("open store %s: prepare: %w", path, err)
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// The label sets the committer apart in CPU and goroutine
		// profiles (pprof -tagfocus=rivet=committer).
		pprof.Do(context.Background(), pprof.Labels(ProfileLabel, "committer"), func(context.Context) { s.commitLoop() })
	}()
	return s, nil
}

// txStatements are prepared on the writer at Open, for node transactions.
var txStatements = append(updateNodes[:], deleteNode, insertHistory)

// Close stops the committer, after the batch it runs, and closes the
// database.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	s.wg.Wait()
	return s.closeDB()
}

func (s *Store) closeDB() error {
	s.mu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = map[stmtKey]*sql.Stmt{}
	s.mu.Unlock()
	return errors.Join(s.rdb.Close(), s.db.Close())
}

// stmt is query prepared on db, prepared on first use and kept.
func (s *Store) stmt(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	k := stmtKey{db, query}
	s.mu.Lock()
	st, ok := s.stmts[k]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.stmts[k]; ok {
		st.Close()
		return prev, nil
	}
	s.stmts[k] = st
	return st, nil
}

// writeOp is a write run by the committer inside a transaction.
type writeOp struct {
	// ctx is the caller's; the op is skipped when it has ended. The
	// statements themselves run under the committer's context: an
	// interrupted statement would roll back the whole batch.
	ctx  context.Context
	run  func(tx *sql.Tx) error
	done chan error
}

// do queues a write for the committer and waits for its outcome: nil once
// committed, run's error (its changes rolled back), or the commit's error.
// Once queued, the op is waited for even if ctx ends meanwhile.
func (s *Store) do(ctx context.Context, run func(tx *sql.Tx) error) error {
	op := &writeOp{ctx: ctx, run: run, done: make(chan error, 1)}
	queue := s.ops
	if store.IsUrgent(ctx) {
		queue = s.urgent
	}
	select {
	case queue <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return ErrClosed
	}
	return <-op.done
}

// GatherWindow is how long the committer waits for more writes before it
// commits a batch that found other writes already queued behind its
// first. Under concurrent load a commit, with its fsync, then serves
// more writes (in a 20,000-agent boot storm 6 instead of 4, for 10 % less
// of the conductor's CPU); a lone write is committed at once.
const GatherWindow = time.Millisecond

// commitLoop runs queued writes in batches until Close.
func (s *Store) commitLoop() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case op := <-s.urgent:
			s.commit(gather(op, s.urgent, s.ops, MaxBatch, GatherWindow, t))
		case op := <-s.ops:
			s.commit(gather(op, s.urgent, s.ops, MaxBatch, GatherWindow, t))
		case <-s.stop:
			return
		}
	}
}

// gather makes a batch of first and the writes queued behind it, up to
// limit, the urgent ones before the others. When there were any, it waits
// up to window (on t, a stopped timer) for more.
func gather(first *writeOp, urgent, ops <-chan *writeOp, limit int, window time.Duration, t *time.Timer) []*writeOp {
	batch := []*writeOp{first}
queued:
	for len(batch) < limit {
		// A select picks at random among ready cases: ask for an urgent
		// write alone first, so none waits behind a background one.
		select {
		case op := <-urgent:
			batch = append(batch, op)
			continue
		default:
		}
		select {
		case op := <-urgent:
			batch = append(batch, op)
		case op := <-ops:
			batch = append(batch, op)
		default:
			break queued
		}
	}
	if len(batch) == 1 || len(batch) >= limit || window <= 0 {
		return batch
	}
	t.Reset(window)
	defer t.Stop()
	for len(batch) < limit {
		select {
		case op := <-urgent:
			batch = append(batch, op)
		case op := <-ops:
			batch = append(batch, op)
		case <-t.C:
			return batch
		}
	}
	return batch
}

// commit runs a batch in one transaction, each op in a savepoint, and
// reports every op's outcome.
func (s *Store) commit(batch []*writeOp) {
	ctx := context.Background()
	results := make([]error, len(batch))
	finish := func(all error) {
		for i, op := range batch {
			if results[i] == nil {
				results[i] = all
			}
			op.done <- results[i]
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		finish(fmt.Errorf("begin: %w", err))
		return
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	single := len(batch) == 1
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if !single {
			if _, err := tx.ExecContext(ctx, `SAVEPOINT op`); err != nil {
				finish(fmt.Errorf("savepoint: %w", err))
				return
			}
		}
		results[i] = runOp(op, tx)
		switch {
		case single && results[i] != nil:
			finish(nil) // the deferred rollback undoes it
			return
		case single:
		case results[i] != nil:
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO op`); err != nil {
				finish(fmt.Errorf("roll back to savepoint: %w", err))
				return
			}
			fallthrough
		default:
			if _, err := tx.ExecContext(ctx, `RELEASE op`); err != nil {
				finish(fmt.Errorf("release savepoint: %w", err))
				return
			}
		}
	}
	if err := tx.Commit(); err != nil {
		finish(fmt.Errorf("commit: %w", err))
		return
	}
	finish(nil)
}

// runOp runs one op, turning a panic into its error so that the
// committer survives it.
func runOp(op *writeOp, tx *sql.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store write panicked: %v", r)
		}
	}()
	return op.run(tx)
}

const nodeColumns = `id, uuid, name, driver, provision_state, target_provision_state,
	provision_updated_at, power_state, target_power_state, maintenance, maintenance_reason,
	last_error, instance_uuid, resource_class, description, owner, instance_info, driver_info,
	driver_internal_info, properties, extra, deploy_step, attributes, created_at, updated_at`

const portColumns = `p.id, p.uuid, p.node_id, n.uuid, p.address, p.pxe_enabled, p.physical_network,
	p.extra, p.local_link_connection, p.internal_info, p.attributes, p.created_at, p.updated_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanNode(r rowScanner, memo *jsoncol.Memo) (*store.Node, error) {
	n, _, err := scanNodeRaw(r, memo)
	return n, err
}

// scanNodeRaw scans a node and also returns its columns (but id) as
// stored, which equal nodeValues of the node until it is changed: a node
// transaction compares against them instead of encoding the node twice.
// The JSON columns are decoded through memo (nil: parsed every time).
func scanNodeRaw(r rowScanner, memo *jsoncol.Memo) (*store.Node, []any, error) {
	n, raw, err := scanNodeScalars(r)
	if err != nil {
		return nil, nil, err
	}
	if err := memo.DecodeAll(mapTexts(raw), jsoncol.NodeMaps(n)); err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", n.UUID, err)
	}
	if err := jsoncol.DecodeAttributes(raw[attributesColumn].(string), &n.NodeAttributes); err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", n.UUID, err)
	}
	return n, raw, nil
}

// scanNodeScalars scans a node and returns it with its columns (but id)
// as stored; its JSON columns and attributes are left undecoded.
func scanNodeScalars(r rowScanner) (*store.Node, []any, error) {
	var (
		n                               store.Node
		name                            sql.NullString
		ps, tps, pua, created, updated  string
		ii, di, dii, props, extra, step string
		attrs                           string
		maint                           int
	)
	err := r.Scan(&n.ID, &n.UUID, &name, &n.Driver, &ps, &tps, &pua, &n.PowerState,
		&n.TargetPowerState, &maint, &n.MaintenanceReason, &n.LastError, &n.InstanceUUID,
		&n.ResourceClass, &n.Description, &n.Owner, &ii, &di, &dii, &props, &extra, &step,
		&attrs, &created, &updated)
	if err != nil {
		return nil, nil, err
	}
	var rawName any
	if name.Valid {
		rawName = name.String
	}
	raw := []any{n.UUID, rawName, n.Driver, ps, tps, pua, n.PowerState, n.TargetPowerState, maint,
		n.MaintenanceReason, n.LastError, n.InstanceUUID, n.ResourceClass, n.Description, n.Owner,
		ii, di, dii, props, extra, step, attrs, created, updated}
	n.Name = name.String
	n.ProvisionState = statemachine.State(ps)
	n.TargetProvisionState = statemachine.State(tps)
	n.Maintenance = maint != 0
	n.ProvisionUpdatedAt = parseTime(pua)
	n.CreatedAt = parseTime(created)
	n.UpdatedAt = parseTime(updated)
	return &n, raw, nil
}

// mapTexts are the texts of the JSON columns (jsoncol.NodeMaps order) in
// a node's column values.
func mapTexts(raw []any) []string {
	texts := make([]string, mapColumns)
	for i := range texts {
		texts[i] = raw[firstMapColumn+i].(string)
	}
	return texts
}

func scanPort(r rowScanner) (*store.Port, error) {
	var (
		p                     store.Port
		pxe                   int
		extra, llc, ii, attrs string
		created, updated      string
	)
	if err := r.Scan(&p.ID, &p.UUID, &p.NodeID, &p.NodeUUID, &p.Address, &pxe, &p.PhysicalNetwork,
		&extra, &llc, &ii, &attrs, &created, &updated); err != nil {
		return nil, err
	}
	if err := jsoncol.DecodeAttributes(attrs, &p.PortAttributes); err != nil {
		return nil, fmt.Errorf("port %s: %w", p.UUID, err)
	}
	p.PXEEnabled = pxe != 0
	p.CreatedAt = parseTime(created)
	p.UpdatedAt = parseTime(updated)
	if err := jsoncol.DecodeAll([]string{extra, llc, ii}, jsoncol.PortMaps(&p)); err != nil {
		return nil, fmt.Errorf("port %s: %w", p.UUID, err)
	}
	return &p, nil
}

// nodeValues returns the column values of every column but id, in
// nodeColumns order. A JSON column whose map is the same as in prev, the
// cached row the node was read from (nil: none), is not encoded again.
func nodeValues(n *store.Node, prev *cachedRow) ([]any, error) {
	var name any
	if n.Name != "" {
		name = n.Name
	}
	vals := []any{n.UUID, name, n.Driver, string(n.ProvisionState), string(n.TargetProvisionState),
		formatTime(n.ProvisionUpdatedAt), n.PowerState, n.TargetPowerState, boolInt(n.Maintenance),
		n.MaintenanceReason, n.LastError, n.InstanceUUID, n.ResourceClass, n.Description, n.Owner}
	var read []*map[string]any
	if prev != nil {
		read = jsoncol.NodeMaps(prev.node)
	}
	for i, m := range jsoncol.NodeMaps(n) {
		if read != nil && store.SameJSONMap(*m, *read[i]) {
			// Unchanged since read: its text as stored.
			vals = append(vals, prev.vals[firstMapColumn+i])
			continue
		}
		text, err := jsoncol.Encode(*m)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.UUID, err)
		}
		vals = append(vals, text)
	}
	var attrs any
	if prev != nil && n.NodeAttributes.Same(prev.node.NodeAttributes) {
		attrs = prev.vals[attributesColumn]
	} else {
		text, err := jsoncol.EncodeAttributes(n.NodeAttributes)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.UUID, err)
		}
		attrs = text
	}
	return append(vals, attrs, formatTime(n.CreatedAt), formatTime(n.UpdatedAt)), nil
}

// sameValues reports whether two rows' column values (as scanNodeRaw
// and nodeValues make them: strings, ints, nils) are equal, as
// reflect.DeepEqual would, without its allocations: every node
// transaction compares the row it read with the one it would write.
func sameValues(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i, x := range a {
		switch x.(type) {
		case nil, string, int, int64, float64, bool:
			// Comparable: == neither panics nor differs from DeepEqual.
			if x != b[i] {
				return false
			}
		default:
			if !reflect.DeepEqual(x, b[i]) {
				return false
			}
		}
	}
	return true
}

// CreateNode implements store.Store.
func (s *Store) CreateNode(ctx context.Context, n *store.Node) error {
	n.InitNew(s.now().UTC())
	vals, err := nodeValues(n, nil)
	if err != nil {
		return err
	}
	err = s.do(ctx, func(tx *sql.Tx) error {
		res, err := s.inTx(tx).ExecContext(context.Background(), `INSERT INTO nodes (`+strings.TrimPrefix(nodeColumns, "id, ")+
			`) VALUES (`+placeholders(len(vals))+`)`, vals...)
		if err != nil {
			return uniqueErr(err, n.UUID, n.Name)
		}
		n.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return fmt.Errorf("create node %s: %w", n.UUID, err)
	}
	s.remember(n.UUID, n.ID)
	return nil
}

// GetNode implements store.NodeReader.
func (s *Store) GetNode(ctx context.Context, ident string) (*store.Node, error) {
	if n, own, ok := s.heldNode(ident); ok {
		if !own {
			n = n.Clone()
		}
		return n, nil
	}
	return getNode(ctx, s.reader(), ident)
}

// ViewNode implements store.NodeViewer: a node the row cache holds is
// handed to fn as it is kept, not copied.
func (s *Store) ViewNode(ctx context.Context, ident string, fn func(*store.Node) error) error {
	if n, _, ok := s.heldNode(ident); ok {
		return fn(n)
	}
	n, err := getNode(ctx, s.reader(), ident)
	if err != nil {
		return err
	}
	return fn(n)
}

// heldNode is the row cache's node named by ident, when ident is a UUID
// already resolved and the cache holds its row (cachedRowNode).
func (s *Store) heldNode(ident string) (n *store.Node, own, ok bool) {
	u := strings.ToLower(ident)
	if uuid.Validate(u) != nil {
		return nil, false, false
	}
	id, ok := s.ids.Load(u)
	if !ok {
		return nil, false, false
	}
	return s.cachedRowNode(id.(int64), u)
}

// cachedNode returns a copy of node id from the row cache, if held and
// still the node with UUID u ("": any).
func (s *Store) cachedNode(id int64, u string) (*store.Node, bool) {
	n, own, ok := s.cachedRowNode(id, u)
	if !ok {
		return nil, false
	}
	if !own {
		n = n.Clone()
	}
	return n, true
}

// cachedRowNode is node id from the row cache, if held and still the node
// with UUID u ("": any): the decoded tier's own node, never to be
// modified, or (own) one decoded afresh from the text tier, the caller's.
// A row found only as text is not put in the decoded tier: without the
// node's lock a write could commit in between.
func (s *Store) cachedRowNode(id int64, u string) (n *store.Node, own, ok bool) {
	if r, ok := s.rows.get(id); ok {
		if u != "" && r.uuid() != u {
			return nil, false, false
		}
		return r.node, false, true
	}
	n, _, ok = s.textNode(id)
	if !ok || u != "" && n.UUID != u {
		return nil, false, false
	}
	return n, true, true
}

// textNode is node id decoded from the row cache's text tier, with its
// values, if held there. A row that does not decode is dropped from the
// cache and reported missing: the caller reads the file, which reports
// what is wrong with it.
func (s *Store) textNode(id int64) (*store.Node, []any, bool) {
	vals, ok := s.rows.text(id)
	if !ok {
		return nil, nil, false
	}
	n, raw, err := scanNodeRaw(cachedRow{id: id, vals: vals}, s.memo)
	if err != nil {
		s.rows.drop(id)
		return nil, nil, false
	}
	return n, raw, true
}

// conn runs prepared statements on the read pool, or on the writer inside
// a transaction.
type conn struct {
	s  *Store
	db *sql.DB
	tx *sql.Tx
}

func (s *Store) reader() conn         { return conn{s: s, db: s.rdb} }
func (s *Store) inTx(tx *sql.Tx) conn { return conn{s: s, db: s.db, tx: tx} }

// stmt is the prepared statement of query on c. Inside a transaction
// (which holds the writer's only connection) a statement not prepared at
// Open is prepared for this transaction alone.
func (c conn) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if c.tx != nil {
		c.s.mu.Lock()
		st, ok := c.s.stmts[stmtKey{c.db, query}]
		c.s.mu.Unlock()
		if !ok {
			return c.tx.PrepareContext(ctx, query)
		}
		return c.tx.StmtContext(ctx, st), nil
	}
	return c.s.stmt(ctx, c.db, query)
}

// errRow is a row whose statement could not be prepared.
type errRow struct{ err error }

// Scan implements rowScanner.
func (r errRow) Scan(...any) error { return r.err }

func (c conn) QueryRowContext(ctx context.Context, query string, args ...any) rowScanner {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

func (c conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (c conn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func getNode(ctx context.Context, q conn, ident string) (*store.Node, error) {
	col := "name"
	if _, err := uuid.Parse(ident); err == nil {
		col = "uuid"
		ident = strings.ToLower(ident)
	}
	n, err := scanNode(q.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE `+col+` = ?`, ident), q.s.memo)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errdefs.NotFound("Node %s could not be found.", ident)
	}
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", ident, err)
	}
	return n, nil
}

func getNodeByID(ctx context.Context, q conn, id int64, ident string) (*store.Node, error) {
	n, err := scanNode(q.QueryRowContext(ctx, selectNodeByID, id), q.s.memo)
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
	if !f.ProvisionUpdatedBefore.IsZero() {
		// The column is RFC 3339 text, whose order is not the times'
		// (trailing zeros of the fraction are dropped): SQLite's date
		// functions read it, to the millisecond.
		where = append(where, "(provision_updated_at = '' OR julianday(provision_updated_at) < julianday(?))")
		args = append(args, formatTime(f.ProvisionUpdatedBefore))
	}
	q := `SELECT ` + nodeColumns + ` FROM nodes`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.reader().QueryContext(ctx, q+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []*store.Node
	for rows.Next() {
		n, err := scanNode(rows, nil) // a listing would only churn the memo
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
	id, err := s.macNode(ctx, macs)
	if err != nil {
		return nil, err
	}
	if n, ok := s.cachedNode(id, ""); ok {
		return n, nil
	}
	return getNodeByID(ctx, s.reader(), id, strings.Join(macs, ","))
}

// NodeUUIDByMACs implements store.NodeNamer: the node's UUID from the row
// cache, or read alone, and remembered for the lock that follows.
func (s *Store) NodeUUIDByMACs(ctx context.Context, macs []string) (string, error) {
	id, err := s.macNode(ctx, macs)
	if err != nil {
		return "", err
	}
	if r, ok := s.rows.get(id); ok {
		return r.uuid(), nil
	}
	if u, ok := s.uuids.Load(id); ok {
		return u.(string), nil
	}
	var u string
	err = s.reader().QueryRowContext(ctx, selectUUIDByID, id).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errdefs.NotFound("Resource could not be found.")
	}
	if err != nil {
		return "", fmt.Errorf("lookup node by MACs %v: %w", macs, err)
	}
	s.remember(u, id)
	return u, nil
}

// macNode is the ID of the one node with a port of any of the MAC
// addresses (errdefs.ErrNotFound if none or if they span nodes).
func (s *Store) macNode(ctx context.Context, macs []string) (int64, error) {
	if len(macs) == 0 {
		return 0, errdefs.NotFound("Resource could not be found.")
	}
	ids, err := s.macNodes(ctx, macs)
	if err != nil {
		return 0, fmt.Errorf("lookup node by MACs %v: %w", macs, err)
	}
	if len(ids) != 1 {
		return 0, errdefs.NotFound("Resource could not be found.")
	}
	return ids[0], nil
}

// macNodes returns the IDs of the nodes with a port of any of the MAC
// addresses, each once, from the port cache for the addresses it holds.
func (s *Store) macNodes(ctx context.Context, macs []string) ([]int64, error) {
	var (
		ids     []int64
		missing []string
	)
	add := func(id int64) {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, m := range macs {
		m = strings.ToLower(m)
		held, ok := s.ports.macNodes(m)
		if !ok {
			if !slices.Contains(missing, m) {
				missing = append(missing, m)
			}
			continue
		}
		for _, id := range held {
			add(id)
		}
	}
	if len(missing) == 0 {
		return ids, nil
	}
	if gen, ok := s.ports.startIndexLoad(time.Now()); ok {
		index, tooBig, err := loadMACIndex(ctx, s.reader())
		s.ports.finishIndexLoad(gen, index, tooBig, time.Now())
		if index != nil {
			for _, m := range missing {
				for _, id := range index[m] {
					add(id)
				}
			}
			return ids, nil
		}
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		// Too many ports for the index, or it could not be read: ask
		// for the MACs alone.
	}
	list, err := json.Marshal(missing)
	if err != nil {
		return nil, err
	}
	gen := s.ports.generation()
	// One statement for any number of MACs; the address index serves
	// each of them.
	rows, err := s.reader().QueryContext(ctx, `SELECT address, node_id FROM ports
		WHERE address IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, err
	}
	found, _, err := scanPortNodes(rows, 0)
	if err != nil {
		return nil, err
	}
	for _, m := range missing {
		for _, id := range found[m] {
			add(id)
		}
		s.ports.putMACNodes(gen, m, found[m]) // none found is an answer too
	}
	return ids, nil
}

// loadMACIndex reads the address and node of every port, nil and tooBig
// when there are more than portCacheEntries.
func loadMACIndex(ctx context.Context, q conn) (index map[string][]int64, tooBig bool, err error) {
	rows, err := q.QueryContext(ctx, `SELECT address, node_id FROM ports LIMIT ?`, portCacheEntries+1)
	if err != nil {
		return nil, false, fmt.Errorf("load the MAC index: %w", err)
	}
	index, tooBig, err = scanPortNodes(rows, portCacheEntries)
	if err != nil {
		return nil, false, fmt.Errorf("load the MAC index: %w", err)
	}
	return index, tooBig, nil
}

// scanPortNodes reads rows of (address, node_id) into the IDs of each
// address's nodes, and closes them; past limit rows it stops and reports
// tooBig (limit <= 0 reads them all).
func scanPortNodes(rows *sql.Rows, limit int) (_ map[string][]int64, tooBig bool, _ error) {
	defer rows.Close()
	nodes := map[string][]int64{}
	for n := 0; rows.Next(); n++ {
		if limit > 0 && n == limit {
			return nil, true, nil
		}
		var (
			addr string
			id   int64
		)
		if err := rows.Scan(&addr, &id); err != nil {
			return nil, false, err
		}
		nodes[addr] = append(nodes[addr], id)
	}
	return nodes, false, rows.Err()
}

// WithNodeLock implements store.NodeLocker. Under the node's in-process
// lock — which every write of the node takes, and which is released only
// once that write committed — the node is read from the read pool and fn
// runs on the caller's goroutine; only the resulting UPDATE (or DELETE)
// goes to the committer. The statement is guarded by the node's
// updated_at as read, so a write from outside this store (another
// process on the same file) is detected as a conflict, not overwritten.
func (s *Store) WithNodeLock(ctx context.Context, ident string, fn func(store.Tx) error) error {
	_, err := s.WithNodeLockCommitted(ctx, ident, fn)
	return err
}

// WithNodeLockCommitted implements store.CommittedNodeLocker: the node it
// returns is the one the row cache keeps (a copy when the cache could not
// take it).
func (s *Store) WithNodeLockCommitted(ctx context.Context, ident string, fn func(store.Tx) error) (*store.Node, error) {
	var (
		n      *store.Node
		before []any
		prev   *cachedRow // the cached row read, if any
	)
	for useCache := true; ; useCache = false {
		id, uuid, cached, err := s.resolve(ctx, ident, useCache)
		if err != nil {
			return nil, err
		}
		unlock, err := s.lock(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("lock node %s: %w", uuid, err)
		}
		if r, ok := s.rows.get(id); ok && r.uuid() == uuid {
			n, before, prev = r.node.Clone(), r.vals, &r
		} else {
			var ok bool
			if n, before, ok = s.textNode(id); !ok {
				n, before, err = scanNodeRaw(s.reader().QueryRowContext(ctx, selectNodeByID, id), s.memo)
			}
			if err == nil && n.UUID == uuid {
				// Read under the lock: no write of the node can
				// commit meanwhile.
				r := cachedRow{id: id, vals: before, node: n.Clone()}
				s.rows.put(id, r.vals, r.node)
				prev = &r
			}
		}
		if cached && (errors.Is(err, sql.ErrNoRows) || err == nil && n.UUID != uuid) {
			// The remembered row is gone or is another node's now:
			// resolve the node again.
			unlock()
			s.forget(uuid, id)
			continue
		}
		defer unlock()
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errdefs.NotFound("Node %s could not be found.", ident)
		}
		if err != nil {
			return nil, fmt.Errorf("get node %s: %w", ident, err)
		}
		break
	}
	version := before[len(before)-1] // updated_at as read
	t := &nodeTx{s: s, node: n}
	if err := fn(t); err != nil {
		return nil, err
	}
	var (
		query  string
		args   []any
		saved  []any // every column's value saved (nodeValues)
		op     = "save"
		events = t.events
	)
	if t.deleted {
		// The node's history goes with it (ON DELETE CASCADE).
		query, args, op, events = deleteNode, []any{n.ID, version}, "delete", nil
	} else {
		after, err := nodeValues(n, prev)
		if err != nil {
			return nil, err
		}
		if !sameValues(before, after) {
			// Only updated_at changes: the last value (see nodeValues);
			// the JSON columns are not encoded again.
			n.UpdatedAt = s.now().UTC()
			after[len(after)-1] = formatTime(n.UpdatedAt)
			query, args = updateNodeChanged(before, after, n.ID, version)
			saved = after
		}
	}
	if query == "" && len(events) == 0 {
		return nil, nil
	}
	rows, err := historyRows(n.ID, events, s.now())
	if err != nil {
		return nil, fmt.Errorf("save node %s: %w", n.UUID, err)
	}
	err = s.do(ctx, func(tx *sql.Tx) error {
		c := s.inTx(tx)
		if query != "" {
			res, err := c.ExecContext(context.Background(), query, args...)
			if err != nil {
				return uniqueErr(err, n.UUID, n.Name)
			}
			if rows, err := res.RowsAffected(); err != nil || rows != 1 {
				return errdefs.Conflict("Node %s was changed by another writer of the database; retry.", n.UUID)
			}
		}
		for _, r := range rows {
			if _, err := c.ExecContext(context.Background(), insertHistory, r...); err != nil {
				return fmt.Errorf("record history: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		// Whatever failed, the next transaction reads the row again.
		s.rows.drop(n.ID)
		return nil, fmt.Errorf("%s node %s: %w", op, n.UUID, err)
	}
	if t.deleted {
		s.rows.drop(n.ID)
		s.forget(n.UUID, n.ID)
		s.ports.invalidate() // its ports went with it
		return nil, nil
	}
	if query == "" {
		return nil, nil
	}
	c, err := committedNode(n.ID, saved, n, prev)
	if err != nil {
		// The write stands; the next transaction reads the row.
		s.rows.drop(n.ID)
		return n.Clone(), nil
	}
	s.rows.put(n.ID, saved, c)
	return c, nil
}

// firstMapColumn is the index of instance_info, the first of the
// mapColumns JSON columns (jsoncol.NodeMaps order), in nodeValues;
// attributesColumn that of attributes, which follows them.
const (
	firstMapColumn   = 15
	mapColumns       = 6
	attributesColumn = firstMapColumn + mapColumns
)

// resolve finds the ID and UUID of the node ident names, without reading
// the whole node. With useCache, a UUID already resolved is answered from
// s.ids (cached reports it): the caller checks the row it reads.
func (s *Store) resolve(ctx context.Context, ident string, useCache bool) (id int64, u string, cached bool, err error) {
	col := "name"
	if _, err := uuid.Parse(ident); err == nil {
		col = "uuid"
		ident = strings.ToLower(ident)
		if v, ok := s.ids.Load(ident); ok && useCache {
			return v.(int64), ident, true, nil
		}
	}
	err = s.reader().QueryRowContext(ctx, `SELECT id, uuid FROM nodes WHERE `+col+` = ?`, ident).Scan(&id, &u)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, errdefs.NotFound("Node %s could not be found.", ident)
	}
	if err != nil {
		return 0, "", false, fmt.Errorf("get node %s: %w", ident, err)
	}
	s.remember(u, id)
	return id, u, false, nil
}

// remember records that node row id has UUID u, in s.ids and s.uuids.
func (s *Store) remember(u string, id int64) {
	s.ids.Store(u, id)
	s.uuids.Store(id, u)
}

// forget drops what remember recorded of node UUID u and row id: the
// node is deleted, or the hint was wrong.
func (s *Store) forget(u string, id int64) {
	s.ids.Delete(u)
	s.uuids.CompareAndDelete(id, u)
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
	s       *Store
	node    *store.Node
	deleted bool
	events  []store.HistoryEvent
}

// Statements of node transactions.
const (
	selectNodeByID = `SELECT ` + nodeColumns + ` FROM nodes WHERE id = ?`
	// selectUUIDByID reads the UUID of the node with id ?.
	selectUUIDByID = `SELECT uuid FROM nodes WHERE id = ?`
	// deleteNode deletes the node with id ? if its updated_at is still ?.
	deleteNode = `DELETE FROM nodes WHERE id = ? AND updated_at = ?`
)

// indexedColumns are the positions, in nodeValues, of the node columns
// an index covers: uuid and name (UNIQUE) and provision_state. SQLite
// rewrites the index entry of every indexed column an UPDATE sets, and
// probes a UNIQUE index first, whether or not the value changed; most
// node writes change none of them (a heartbeat, a lookup's token), so a
// write sets only those that changed (updateNodeChanged).
var indexedColumns = [...]int{0, 1, 3}

// updateNodes[mask] saves the columns but id of the node with id ? if its
// updated_at is still ?: every column but the indexed ones, and those of
// indexedColumns whose bit is set in mask.
var updateNodes = func() (stmts [1 << len(indexedColumns)]string) {
	cols := strings.Split(strings.TrimPrefix(nodeColumns, "id, "), ",")
	for mask := range stmts {
		var sets []string
		for i, c := range cols {
			if setsColumn(mask, i) {
				sets = append(sets, strings.TrimSpace(c)+" = ?")
			}
		}
		stmts[mask] = `UPDATE nodes SET ` + strings.Join(sets, ", ") + ` WHERE id = ? AND updated_at = ?`
	}
	return stmts
}()

// updateNodeChanged returns the statement that saves after over before
// (nodeValues of the same node), and its arguments: after without the
// indexed columns that did not change, then id and version (the
// updated_at read).
func updateNodeChanged(before, after []any, id int64, version any) (string, []any) {
	mask := 0
	for k, c := range indexedColumns {
		// Both hold the text or nil of the column (scanNodeScalars,
		// nodeValues): comparable.
		if before[c] != after[c] {
			mask |= 1 << k
		}
	}
	args := make([]any, 0, len(after)+2)
	for i, v := range after {
		if setsColumn(mask, i) {
			args = append(args, v)
		}
	}
	return updateNodes[mask], append(args, id, version)
}

// setsColumn reports whether updateNodes[mask] sets column i (of
// nodeValues): every column but the indexed ones mask leaves out.
func setsColumn(mask, i int) bool {
	k := slices.Index(indexedColumns[:], i)
	return k < 0 || mask&(1<<k) != 0
}

// Node implements store.Tx.
func (t *nodeTx) Node() *store.Node { return t.node }

// Ports implements store.Tx.
func (t *nodeTx) Ports(ctx context.Context) ([]*store.Port, error) {
	return t.s.nodePorts(ctx, t.node.ID)
}

// DeleteNode implements store.Tx.
func (t *nodeTx) DeleteNode(ctx context.Context) error {
	t.deleted = true
	return nil
}

// AddHistory implements store.Tx.
func (t *nodeTx) AddHistory(ev store.HistoryEvent) { t.events = append(t.events, ev) }

// CheckFence implements store.Tx. The file has one writer, a conductor
// that runs alone (provision.SingleConductor): there is no lease another
// conductor could take, so every fence holds.
func (t *nodeTx) CheckFence(ctx context.Context, f store.Fence) error { return nil }

// CreatePort implements store.Store.
func (s *Store) CreatePort(ctx context.Context, p *store.Port) error {
	p.InitNew(s.now().UTC())
	vals, err := portValues(p)
	if err != nil {
		return fmt.Errorf("create port %s: %w", p.Address, err)
	}
	defer s.ports.invalidate()
	err = s.do(ctx, func(tx *sql.Tx) error {
		res, err := s.inTx(tx).ExecContext(context.Background(), `INSERT INTO ports (uuid, node_id, address, pxe_enabled,
			physical_network, extra, local_link_connection, internal_info, attributes, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.UUID, p.NodeID, p.Address, boolInt(p.PXEEnabled),
			p.PhysicalNetwork, vals[0], vals[1], vals[2], vals[3], formatTime(p.CreatedAt))
		if err != nil {
			if strings.Contains(err.Error(), "FOREIGN KEY") {
				return errdefs.InvalidArgument("Node %d could not be found.", p.NodeID)
			}
			return uniqueErr(err, p.UUID, p.Address)
		}
		p.ID, err = res.LastInsertId()
		return err
	})
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
	now := s.now().UTC()
	var updated int64
	defer s.ports.invalidate()
	err = s.do(ctx, func(tx *sql.Tx) error {
		res, err := s.inTx(tx).ExecContext(context.Background(), `UPDATE ports SET node_id = ?, address = ?, pxe_enabled = ?,
			physical_network = ?, extra = ?, local_link_connection = ?, internal_info = ?, attributes = ?,
			updated_at = ? WHERE uuid = ?`, p.NodeID, p.Address, boolInt(p.PXEEnabled), p.PhysicalNetwork,
			vals[0], vals[1], vals[2], vals[3], formatTime(now), strings.ToLower(p.UUID))
		if err != nil {
			if strings.Contains(err.Error(), "FOREIGN KEY") {
				return errdefs.InvalidArgument("Node %d could not be found.", p.NodeID)
			}
			return uniqueErr(err, p.UUID, p.Address)
		}
		updated, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("update port %s: %w", p.UUID, err)
	}
	if updated == 0 {
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
	p, err := scanPort(s.reader().QueryRowContext(ctx, `SELECT `+portColumns+
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
	if f.NodeID == 0 || f.Address != "" {
		return listPorts(ctx, s.reader(), f)
	}
	return s.nodePorts(ctx, f.NodeID)
}

// nodePorts lists node id's ports, from the port cache when it holds them.
func (s *Store) nodePorts(ctx context.Context, id int64) ([]*store.Port, error) {
	if ports, ok := s.ports.nodePorts(id); ok {
		return ports, nil
	}
	gen := s.ports.generation()
	ports, err := listPorts(ctx, s.reader(), store.PortFilter{NodeID: id})
	if err != nil {
		return nil, err
	}
	s.ports.putNodePorts(gen, id, ports)
	return ports, nil
}

func listPorts(ctx context.Context, q conn, f store.PortFilter) ([]*store.Port, error) {
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
	var deleted int64
	defer s.ports.invalidate()
	err := s.do(ctx, func(tx *sql.Tx) error {
		res, err := s.inTx(tx).ExecContext(context.Background(), `DELETE FROM ports WHERE uuid = ?`, strings.ToLower(id))
		if err != nil {
			return err
		}
		deleted, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete port %s: %w", id, err)
	}
	if deleted == 0 {
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
