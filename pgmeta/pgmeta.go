// Package pgmeta keeps a ferry store's records (cas.Meta) in a
// PostgreSQL-wire database, so that many servers share one blob index,
// one set of heads and one set of tokens. The SQL is kept to what
// PostgreSQL, CockroachDB and YugabyteDB all accept: two tables with a
// BYTEA primary key, upserts with ON CONFLICT, arrays through unnest, and
// SERIALIZABLE transactions for the writes that must not race (a head's
// move), retried on serialization failures.
package pgmeta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaVersion is the schema this ferry writes. Open migrates an older
// one step by step, and refuses a newer one.
const SchemaVersion = 1

// migrations[i] takes the schema from version i to i+1.
var migrations = []string{
	`CREATE TABLE IF NOT EXISTS ferry_kv (k BYTEA PRIMARY KEY, v BYTEA NOT NULL);
	 CREATE TABLE IF NOT EXISTS ferry_counters (k BYTEA PRIMARY KEY, n BIGINT NOT NULL)`,
}

// ErrSchema: the database holds a schema newer than this ferry knows.
var ErrSchema = errors.New("the database's ferry schema is newer than this ferry")

// Meta is a cas.Meta in PostgreSQL.
type Meta struct {
	pool *pgxpool.Pool
	// Timeout bounds each statement, and the retries of one that failed
	// because the database was out of reach (a restart).
	timeout time.Duration
}

var _ cas.Meta = (*Meta)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string; the PG* environment variables fill in what it does
// not say), and creates or migrates ferry's schema.
func Open(ctx context.Context, dsn string) (*Meta, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgmeta: %w", err)
	}
	cfg.MaxConns = max(cfg.MaxConns, 8)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgmeta: connect: %w", err)
	}
	m := &Meta{pool: pool, timeout: 30 * time.Second}
	if err := m.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return m, nil
}

// migrate brings the schema to SchemaVersion. Servers that start together
// may race: every step is idempotent, and the version row only grows.
func (m *Meta) migrate(ctx context.Context) error {
	_, err := m.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS ferry_schema (id INT PRIMARY KEY, version INT NOT NULL)`)
	if err != nil && !isDuplicate(err) {
		return fmt.Errorf("pgmeta: schema: %w", err)
	}
	for {
		var v int
		err := m.pool.QueryRow(ctx, `SELECT version FROM ferry_schema WHERE id = 1`).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			v = 0
		} else if err != nil {
			return fmt.Errorf("pgmeta: schema version: %w", err)
		}
		switch {
		case v > SchemaVersion:
			return fmt.Errorf("pgmeta: %w (version %d; this ferry knows %d)", ErrSchema, v, SchemaVersion)
		case v == SchemaVersion:
			return nil
		}
		if _, err := m.pool.Exec(ctx, migrations[v]); err != nil && !isDuplicate(err) {
			return fmt.Errorf("pgmeta: migrate to schema %d: %w", v+1, err)
		}
		_, err = m.pool.Exec(ctx, `INSERT INTO ferry_schema (id, version) VALUES (1, $1)
			ON CONFLICT (id) DO UPDATE SET version = excluded.version WHERE ferry_schema.version < excluded.version`, v+1)
		if err != nil {
			return fmt.Errorf("pgmeta: schema version: %w", err)
		}
	}
}

// isDuplicate: two servers that made one table at once (PostgreSQL's
// CREATE TABLE IF NOT EXISTS can race on its catalog).
func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07")
}

// retryable: the statement never reached the database (a connection that
// could not be made, or was refused), or it lost a serialization race; in
// both cases nothing was applied and it may run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Serialization failure, deadlock; the server shutting down,
		// crashed or starting up (the session's statement was not
		// applied: the server answered it with the error).
		switch pe.Code {
		case "40001", "40P01", "57P01", "57P02", "57P03":
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.SafeToRetry(err)
}

// do runs f, again while it fails retryably, for up to the timeout.
func (m *Meta) do(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	wait := 10 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil || errors.Is(err, pgx.ErrNoRows) || errors.Is(err, cas.ErrConflict) {
			return err
		}
		if !retryable(err) {
			return fmt.Errorf("%w: %w", cas.ErrMetaUnavailable, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w (and the database stayed out of reach: %v)", cas.ErrMetaUnavailable, err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// Get returns key's value.
func (m *Meta) Get(ctx context.Context, key []byte) ([]byte, error) {
	var v []byte
	err := m.do(ctx, func(ctx context.Context) error {
		return m.pool.QueryRow(ctx, `SELECT v FROM ferry_kv WHERE k = $1`, key).Scan(&v)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, cas.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("pgmeta: get: %w", err)
	}
	return v, nil
}

// GetMany returns the values of keys (nil for those not there) in one
// statement.
func (m *Meta) GetMany(ctx context.Context, keys [][]byte) ([][]byte, error) {
	got := make(map[string][]byte, len(keys))
	err := m.do(ctx, func(ctx context.Context) error {
		clear(got)
		rows, err := m.pool.Query(ctx, `SELECT k, v FROM ferry_kv WHERE k = ANY($1::BYTEA[])`, keys)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k, v []byte
			if err := rows.Scan(&k, &v); err != nil {
				return err
			}
			got[string(k)] = v
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("pgmeta: get: %w", err)
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = got[string(k)]
	}
	return out, nil
}

// Counter returns the counter's value.
func (m *Meta) Counter(ctx context.Context, key []byte) (int64, error) {
	var n int64
	err := m.do(ctx, func(ctx context.Context) error {
		return m.pool.QueryRow(ctx, `SELECT n FROM ferry_counters WHERE k = $1`, key).Scan(&n)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, cas.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("pgmeta: counter: %w", err)
	}
	return n, nil
}

// Commit applies w in one transaction: SERIALIZABLE when w has
// conditions, so that two servers moving one head cannot both see the old
// value and both win.
func (m *Meta) Commit(ctx context.Context, w *cas.MetaWrites, _ bool) error {
	var sets, setVals, dels [][]byte
	for _, k := range w.SortedKeys() {
		if v := w.Keys[k]; v == nil {
			dels = append(dels, []byte(k))
		} else {
			sets, setVals = append(sets, []byte(k)), append(setVals, v)
		}
	}
	var addKeys [][]byte
	var addVals []int64
	for k, d := range w.Adds {
		addKeys, addVals = append(addKeys, []byte(k)), append(addVals, d)
	}
	opts := pgx.TxOptions{}
	if len(w.Conds) > 0 {
		opts.IsoLevel = pgx.Serializable
	}
	err := m.do(ctx, func(ctx context.Context) error {
		return pgx.BeginTxFunc(ctx, m.pool, opts, func(tx pgx.Tx) error {
			if err := checkConds(ctx, tx, w.Conds); err != nil {
				return err
			}
			for _, r := range w.Ranges {
				var err error
				if r[1] == nil {
					_, err = tx.Exec(ctx, `DELETE FROM ferry_kv WHERE k >= $1`, r[0])
				} else {
					_, err = tx.Exec(ctx, `DELETE FROM ferry_kv WHERE k >= $1 AND k < $2`, r[0], r[1])
				}
				if err != nil {
					return err
				}
			}
			if len(dels) > 0 {
				if _, err := tx.Exec(ctx, `DELETE FROM ferry_kv WHERE k = ANY($1::BYTEA[])`, dels); err != nil {
					return err
				}
			}
			if len(sets) > 0 {
				_, err := tx.Exec(ctx, `INSERT INTO ferry_kv (k, v) SELECT * FROM unnest($1::BYTEA[], $2::BYTEA[])
					ON CONFLICT (k) DO UPDATE SET v = excluded.v`, sets, setVals)
				if err != nil {
					return err
				}
			}
			if len(addKeys) > 0 {
				_, err := tx.Exec(ctx, `INSERT INTO ferry_counters (k, n) SELECT * FROM unnest($1::BYTEA[], $2::BIGINT[])
					ON CONFLICT (k) DO UPDATE SET n = ferry_counters.n + excluded.n`, addKeys, addVals)
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("pgmeta: commit: %w", err)
	}
	return nil
}

// Compact does nothing: PostgreSQL's autovacuum reclaims deleted rows.
func (m *Meta) Compact(context.Context, []byte, []byte) error { return nil }

// Shared is true: other servers write the same database.
func (m *Meta) Shared() bool { return true }

// Close closes the connections.
func (m *Meta) Close() error {
	m.pool.Close()
	return nil
}

// Reset deletes every ferry table's rows: for tests that reuse one
// database.
func (m *Meta) Reset(ctx context.Context) error {
	_, err := m.pool.Exec(ctx, `DELETE FROM ferry_kv; DELETE FROM ferry_counters`)
	return err
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// checkConds reads every condition's key in one statement and compares.
func checkConds(ctx context.Context, tx pgx.Tx, conds map[string][]byte) error {
	if len(conds) == 0 {
		return nil
	}
	keys := make([][]byte, 0, len(conds))
	for k := range conds {
		keys = append(keys, []byte(k))
	}
	rows, err := tx.Query(ctx, `SELECT k, v FROM ferry_kv WHERE k = ANY($1::BYTEA[])`, keys)
	if err != nil {
		return err
	}
	got := map[string][]byte{}
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		got[string(k)] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for k, want := range conds {
		v, ok := got[k]
		switch {
		case !ok && want != nil:
			return fmt.Errorf("%w: %q is gone", cas.ErrConflict, k)
		case ok && (want == nil || string(v) != string(want)):
			return fmt.Errorf("%w: %q changed", cas.ErrConflict, k)
		}
	}
	return nil
}
