// Package sqlite is the store driver for SQLite, Herald's embedded default.
//
// A Store keeps one writer connection and a separate pool of read-only
// connections on the same database file in WAL mode, so writes queue in the
// process instead of contending for SQLite's lock, and reads run beside them.
// Commits are durable (synchronous=FULL): a method that writes returns only
// after SQLite has synced its log.
//
// Decisions where the store contract leaves room:
//   - Times are kept to the millisecond; the zero time is stored as 0, so
//     the Unix epoch itself reads back as the zero time.
//   - SubscriptionInsert sets a zero CreatedAt to now and a zero UpdatedAt to
//     CreatedAt. SubscriptionUpdate keeps the stored CreatedAt and writes it
//     and the new UpdatedAt back into its argument.
//   - A duplicate event's DeliveryIDs are in the order they were first
//     inserted. A delivery's zero CreatedAt is set to its event's CreatedAt,
//     and a zero event CreatedAt to now.
//   - Deliveries have no foreign key to subscriptions: deleting a
//     subscription keeps its deliveries as history.
//   - DeliveryUpdateBatch fails with ErrNotFound, and applies nothing, when
//     an update names a delivery that does not exist. An update that moves
//     a delivery out of in_flight clears its LeaseUntil and Holder.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/heraldhq/herald/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeout is how long a connection waits for a lock held by another
// process (or a checkpoint) before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a store.Store on one SQLite database file.
type Store struct {
	writer *sql.DB // exactly one connection: every write goes through it
	reader *sql.DB // read-only connections

	stmts map[string]*sql.Stmt // prepared on writer, by SQL text; see prepare
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path and applies
// any migrations it lacks.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", path)
	}
	pragmas := "_pragma=busy_timeout(" + strconv.FormatInt(busyTimeout.Milliseconds(), 10) + ")" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
	writer, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	s := &Store{writer: writer, stmts: make(map[string]*sql.Stmt)}
	// The writer connects first so that the file is in WAL mode before any
	// reader opens it.
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		writer.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	reader, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	s.reader = reader
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	for _, st := range s.stmts {
		st.Close()
	}
	var err error
	if s.reader != nil {
		err = s.reader.Close()
	}
	return errors.Join(err, s.writer.Close())
}

// prepare prepares every statement the writer runs in a transaction.
// They are prepared up front because the writer's one connection is busy
// during a transaction, so nothing can be prepared on it then.
func (s *Store) prepare(ctx context.Context) error {
	queries := []string{eventDeliveryIDsSQL, deliveryClaimSQL, deliveryRenewSQL, deliveryReleaseSQL, deliveryExistsSQL, firstAttemptSQL, unholdSQL}
	for n := 1; n <= maxRows; n *= 2 {
		queries = append(queries, eventInsertSQL(n), deliveryInsertSQL(n),
			deliveryUpdateManySQL(n), deliveryUpdateFirstManySQL(n), attemptUpsertManySQL(n))
	}
	for _, q := range queries {
		st, err := s.writer.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		s.stmts[q] = st
	}
	return nil
}

// txStmt returns query, prepared by prepare, for use in tx.
func (s *Store) txStmt(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	st, ok := s.stmts[query]
	if !ok {
		panic("sqlite: statement not prepared: " + query)
	}
	return tx.StmtContext(ctx, st)
}

func loadMigrations() ([]store.Migration, error) {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return ms, nil
}

// migrate applies the migrations not yet recorded in schema_migrations,
// each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if _, err := s.writer.ExecContext(ctx, migrationsTableSQL); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	appliedSet := make(map[int]bool)
	rows, err := s.writer.QueryContext(ctx, migrationsAppliedSQL)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
		appliedSet[v] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	var applied []int
	for v := range appliedSet {
		applied = append(applied, v)
	}
	if st := store.NewSchemaStatus(ms, applied); len(st.Unknown) > 0 {
		return fmt.Errorf("sqlite: %w", st.Err())
	}
	for _, m := range ms {
		if appliedSet[m.Version] {
			continue
		}
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// foreignKeysOff marks a migration that rebuilds a table: it runs with
// foreign keys off, as SQLite's ALTER TABLE documentation says to, and
// its foreign keys are checked before it commits.
const foreignKeysOff = "-- herald:foreign-keys-off"

// apply runs one migration in a transaction and records it.
func (s *Store) apply(ctx context.Context, m store.Migration) error {
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rebuild := strings.HasPrefix(m.SQL, foreignKeysOff)
	if rebuild {
		// A no-op inside a transaction, so set before it.
		if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
			return err
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON")
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if rebuild {
		rows, err := tx.QueryContext(ctx, "PRAGMA foreign_key_check")
		if err != nil {
			return err
		}
		broken := rows.Next()
		rows.Close()
		if broken {
			return errors.New("the rebuilt tables break a foreign key")
		}
	}
	if _, err := tx.ExecContext(ctx, migrationRecordSQL, m.Version, m.Name, time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// inTxUnchecked is inTx without foreign key enforcement, for deletions
// that keep the keys' order themselves. Deleting an event otherwise makes
// SQLite look for deliveries that reference it, and deliveries have no
// index on their event (migration 002 dropped it to make publishing
// cheaper): a scan of the whole table per event.
func (s *Store) inTxUnchecked(ctx context.Context, f func(tx *sql.Tx) error) error {
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// A no-op inside a transaction, so set before it.
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON")
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// inTx runs f in a write transaction and commits it if f returns nil.
func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// millis is how times are stored: Unix milliseconds, 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMillis reverses millis.
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
