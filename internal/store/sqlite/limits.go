package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// The statements of limits that hold across nodes. In an UPDATE every
// expression reads the row as it was, so the refill is written out each
// time it is used: ?2 rate a second, ?3 burst, ?4 wanted, ?5 now (ms).
const (
	tokenTakeSQL = `INSERT INTO token_buckets (key, tokens, taken, updated_at)
VALUES (?1, ?3 - MIN(?4, CAST(?3 AS INTEGER)), MIN(?4, CAST(?3 AS INTEGER)), ?5)
ON CONFLICT (key) DO UPDATE SET
    taken = MIN(?4, CAST(MIN(?3, tokens + MAX(0, ?5 - updated_at) * ?2 / 1000.0) + 1e-9 AS INTEGER)),
    tokens = MAX(0, MIN(?3, tokens + MAX(0, ?5 - updated_at) * ?2 / 1000.0)
        - MIN(?4, CAST(MIN(?3, tokens + MAX(0, ?5 - updated_at) * ?2 / 1000.0) + 1e-9 AS INTEGER))),
    updated_at = MAX(updated_at, ?5)
RETURNING taken, tokens`
	sinkPauseSetSQL = `INSERT INTO sink_pauses (origin, until) VALUES (?1, ?2)
ON CONFLICT (origin) DO UPDATE SET until = MAX(until, ?2)`
	sinkPauseListSQL = `SELECT origin, until FROM sink_pauses WHERE until > ?1 ORDER BY origin`
	nodeBeatSQL      = `INSERT INTO nodes (id, until) VALUES (?1, ?2)
ON CONFLICT (id) DO UPDATE SET until = ?2`
	nodesLiveSQL     = `SELECT count(*) FROM nodes WHERE until > ?1`
	nodesForgetSQL   = `DELETE FROM nodes WHERE until < ?1`
	bucketsForgetSQL = `DELETE FROM token_buckets WHERE updated_at < ?1`
	pausesForgetSQL  = `DELETE FROM sink_pauses WHERE until < ?1`
)

// nodeForgetAfter is how long after its beat ended a node's row is kept.
const nodeForgetAfter = time.Hour

// TokenTake takes tokens from a shared bucket (see store.Store).
func (s *Store) TokenTake(ctx context.Context, p store.TokenTakeParams) (store.TokenGrant, error) {
	if p.Rate <= 0 || p.Burst < 1 || p.Want < 1 {
		return store.TokenGrant{}, fmt.Errorf("sqlite: token take %s: rate, burst and want must be positive", p.Key)
	}
	var g store.TokenGrant
	err := s.writer.QueryRowContext(ctx, tokenTakeSQL, p.Key, p.Rate, p.Burst, p.Want, millis(p.Now)).Scan(&g.Taken, &g.Left)
	if err != nil {
		return store.TokenGrant{}, fmt.Errorf("sqlite: token take %s: %w", p.Key, err)
	}
	return g, nil
}

// SinkPauseSet pauses a sink origin (see store.Store).
func (s *Store) SinkPauseSet(ctx context.Context, p store.SinkPause) error {
	if _, err := s.writer.ExecContext(ctx, sinkPauseSetSQL, p.Origin, millis(p.Until)); err != nil {
		return fmt.Errorf("sqlite: pause %s: %w", p.Origin, err)
	}
	return nil
}

// SinkPauseList returns the paused origins (see store.Store).
func (s *Store) SinkPauseList(ctx context.Context, now time.Time) ([]store.SinkPause, error) {
	rows, err := s.reader.QueryContext(ctx, sinkPauseListSQL, millis(now))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list sink pauses: %w", err)
	}
	defer rows.Close()
	var out []store.SinkPause
	for rows.Next() {
		var p store.SinkPause
		var until int64
		if err := rows.Scan(&p.Origin, &until); err != nil {
			return nil, fmt.Errorf("sqlite: list sink pauses: %w", err)
		}
		p.Until = fromMillis(until)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list sink pauses: %w", err)
	}
	return out, nil
}

// LimitsForget deletes idle buckets and ended pauses (see store.Store).
func (s *Store) LimitsForget(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n = 0
		for _, q := range []string{bucketsForgetSQL, pausesForgetSQL} {
			res, err := tx.ExecContext(ctx, q, millis(before))
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += int(k)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: forget limits: %w", err)
	}
	return n, nil
}

// NodeBeat records a node's heartbeat (see store.Store).
func (s *Store) NodeBeat(ctx context.Context, p store.NodeBeatParams) (int, error) {
	var live int
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, nodeBeatSQL, p.ID, millis(p.Until)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, nodesForgetSQL, millis(p.Now.Add(-nodeForgetAfter))); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, nodesLiveSQL, millis(p.Now)).Scan(&live)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: node beat %s: %w", p.ID, err)
	}
	return live, nil
}
