package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/store"
)

// The statements of limits that hold across nodes. In an UPDATE every
// expression reads the row as it was, so the refill is written out each
// time it is used: $2 rate a second, $3 burst, $4 wanted, $5 now (ms).
const (
	tokenTakeSQL = `INSERT INTO token_buckets AS b (key, tokens, taken, updated_at)
VALUES ($1, $3::float8 - LEAST($4::int, FLOOR($3::float8)::int), LEAST($4::int, FLOOR($3::float8)::int), $5::bigint)
ON CONFLICT (key) DO UPDATE SET
    taken = LEAST($4::int, FLOOR(LEAST($3::float8, b.tokens + GREATEST(0, $5::bigint - b.updated_at) * $2::float8 / 1000.0) + 1e-9)::int),
    tokens = GREATEST(0, LEAST($3::float8, b.tokens + GREATEST(0, $5::bigint - b.updated_at) * $2::float8 / 1000.0)
        - LEAST($4::int, FLOOR(LEAST($3::float8, b.tokens + GREATEST(0, $5::bigint - b.updated_at) * $2::float8 / 1000.0) + 1e-9)::int)),
    updated_at = GREATEST(b.updated_at, $5::bigint)
RETURNING taken, tokens`
	sinkPauseSetSQL = `INSERT INTO sink_pauses AS p (origin, until) VALUES ($1, $2)
ON CONFLICT (origin) DO UPDATE SET until = GREATEST(p.until, $2)`
	sinkPauseListSQL = `SELECT origin, until FROM sink_pauses WHERE until > $1 ORDER BY origin`
	nodeBeatSQL      = `WITH beat AS (
    INSERT INTO nodes (id, until) VALUES ($1, $3)
    ON CONFLICT (id) DO UPDATE SET until = $3
    RETURNING id
), forgotten AS (
    DELETE FROM nodes WHERE until < $4 AND id <> $1
)
SELECT 1 + count(*) FROM nodes WHERE until > $2 AND id <> $1`
	limitsForgetSQL = `WITH buckets AS (
    DELETE FROM token_buckets WHERE updated_at < $1 RETURNING 1
), pauses AS (
    DELETE FROM sink_pauses WHERE until < $2 RETURNING 1
)
SELECT (SELECT count(*) FROM buckets) + (SELECT count(*) FROM pauses)`
)

// nodeForgetAfter is how long after its beat ended a node's row is kept.
const nodeForgetAfter = time.Hour

// TokenTake takes tokens from a shared bucket (see store.Store).
func (s *Store) TokenTake(ctx context.Context, p store.TokenTakeParams) (store.TokenGrant, error) {
	if p.Rate <= 0 || p.Burst < 1 || p.Want < 1 {
		return store.TokenGrant{}, fmt.Errorf("postgres: token take %s: rate, burst and want must be positive", p.Key)
	}
	var g store.TokenGrant
	err := s.pool.QueryRow(ctx, tokenTakeSQL, p.Key, p.Rate, p.Burst, p.Want, p.Now.UnixMilli()).Scan(&g.Taken, &g.Left)
	if err != nil {
		return store.TokenGrant{}, fmt.Errorf("postgres: token take %s: %w", p.Key, err)
	}
	return g, nil
}

// SinkPauseSet pauses a sink origin (see store.Store).
func (s *Store) SinkPauseSet(ctx context.Context, p store.SinkPause) error {
	if _, err := s.pool.Exec(ctx, sinkPauseSetSQL, p.Origin, p.Until); err != nil {
		return fmt.Errorf("postgres: pause %s: %w", p.Origin, err)
	}
	return nil
}

// SinkPauseList returns the paused origins (see store.Store).
func (s *Store) SinkPauseList(ctx context.Context, now time.Time) ([]store.SinkPause, error) {
	rows, _ := s.pool.Query(ctx, sinkPauseListSQL, now)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.SinkPause, error) {
		var p store.SinkPause
		err := r.Scan(&p.Origin, &p.Until)
		p.Until = p.Until.UTC()
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list sink pauses: %w", err)
	}
	return out, nil
}

// LimitsForget deletes idle buckets and ended pauses (see store.Store).
func (s *Store) LimitsForget(ctx context.Context, before time.Time) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, limitsForgetSQL, before.UnixMilli(), before).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: forget limits: %w", err)
	}
	return n, nil
}

// NodeBeat records a node's heartbeat (see store.Store).
func (s *Store) NodeBeat(ctx context.Context, p store.NodeBeatParams) (int, error) {
	var live int
	err := s.pool.QueryRow(ctx, nodeBeatSQL, p.ID, p.Now, p.Until, p.Now.Add(-nodeForgetAfter)).Scan(&live)
	if err != nil {
		return 0, fmt.Errorf("postgres: node beat %s: %w", p.ID, err)
	}
	return live, nil
}
