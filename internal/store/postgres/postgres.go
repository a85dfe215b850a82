// Package postgres is the store driver for PostgreSQL, for production.
//
// A Store is a pgx connection pool. Writes that the contract makes atomic
// run in one transaction with their rows sent as arrays (unnest) or as one
// pipelined batch, so a batch costs a few round trips whatever its size.
// Claims lock rows with FOR UPDATE SKIP LOCKED, so any number of
// dispatchers can claim at once without sharing a delivery.
//
// Decisions where the store contract leaves room:
//   - Times are kept to the microsecond. The zero time is stored as
//     '0001-01-01 00:00:00+00', so it reads back as the zero time.
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
package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// URL or key=value
// string, as pgx accepts) and applies any migrations it lacks.
func Open(ctx context.Context, dsn string) (*Store, error) {
	s, err := Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Connect connects to the database at dsn and changes nothing: check it
// with Schema, and apply migrations with Migrate.
func Connect(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Schema says how the database's schema stands against the migrations
// this driver knows.
func (s *Store) Schema(ctx context.Context) (store.SchemaStatus, error) {
	ms, err := loadMigrations()
	if err != nil {
		return store.SchemaStatus{}, err
	}
	var versions []int32
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, migrationsTableSQL); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, migrationsAppliedSQL)
		versions, err = pgx.CollectRows(rows, pgx.RowTo[int32])
		return err
	})
	if err != nil {
		return store.SchemaStatus{}, fmt.Errorf("postgres: schema: %w", err)
	}
	applied := make([]int, len(versions))
	for i, v := range versions {
		applied[i] = int(v)
	}
	return store.NewSchemaStatus(ms, applied), nil
}

// Close closes the pool's connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func loadMigrations() ([]store.Migration, error) {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return ms, nil
}

// Migrate applies the migrations not yet recorded in schema_migrations, in
// one transaction that holds an advisory lock, so that processes starting
// together apply each migration once. It refuses a schema newer than it
// knows.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, migrateLockSQL); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, migrationsTableSQL); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, migrationsAppliedSQL)
		versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		applied := make(map[int]bool)
		known := make(map[int]bool, len(ms))
		for _, m := range ms {
			known[m.Version] = true
		}
		for _, v := range versions {
			applied[int(v)] = true
			if !known[int(v)] {
				return fmt.Errorf("the database's schema has migration %d, which this Herald does not know: it was migrated by a newer Herald", v)
			}
		}
		for _, m := range ms {
			if applied[m.Version] {
				continue
			}
			// No arguments: pgx sends it as a simple query, which may
			// hold many statements.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, migrationRecordSQL, m.Version, m.Name); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// now returns the current time at the precision the database keeps.
func now() time.Time {
	return time.Now().UTC().Truncate(time.Microsecond)
}
