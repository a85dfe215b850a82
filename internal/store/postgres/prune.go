package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/store"
)

const (
	pruneScanDeliveriesSQL = `SELECT id, state, created_at, updated_at, event_seq FROM deliveries
WHERE id > $1 ORDER BY id LIMIT $2`
	pruneAttemptsSQL   = `DELETE FROM attempts WHERE delivery_id = ANY($1)`
	pruneDeliveriesSQL = `DELETE FROM deliveries WHERE id = ANY($1)`
	// pruneEventsSQL deletes the events of $1 stored before $2 that have
	// no delivery left.
	pruneEventsSQL = `DELETE FROM events e WHERE e.seq = ANY($1) AND e.created_at < $2
AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq)`
	pruneScanEventsSQL = `SELECT seq, created_at FROM events WHERE seq > $1 ORDER BY seq LIMIT $2`

	eventFindSQL           = `SELECT seq FROM events WHERE tenant = $1 AND source = $2 AND id = $3 FOR UPDATE`
	eventInProgressSQL     = `SELECT count(*) FROM deliveries WHERE event_seq = $1 AND state NOT IN ('delivered', 'dead')`
	eventAttemptsDeleteSQL = `DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_seq = $1)`
	eventFirstAttemptsSQL  = `UPDATE deliveries SET first_started_at = NULL, first_status_code = 0, first_latency = 0,
	first_error = '', first_response_body = '' WHERE event_seq = $1`
	eventEraseSQL = `UPDATE events SET payload = '' WHERE seq = $1`
	// eventsBySubjectSQL locks a tenant's events about a subject whose
	// data is still there, after a seq, in store order.
	eventsBySubjectSQL = `SELECT seq FROM events
WHERE tenant = $1 AND subject = $2 AND seq > $3 AND length(payload) > 0 ORDER BY seq LIMIT $4 FOR UPDATE`

	leaseAcquireSQL = `INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4)
ON CONFLICT (name) DO UPDATE SET holder = $2, until = $4 WHERE leases.holder = $2 OR leases.until <= $3
RETURNING holder`
)

// Prune deletes ended deliveries and events left without deliveries,
// oldest first (see store.Store).
func (s *Store) Prune(ctx context.Context, p store.PruneParams) (store.PruneResult, error) {
	if p.Limit <= 0 {
		return store.PruneResult{}, errors.New("postgres: prune: Limit must be positive")
	}
	res := store.PruneResult{AfterDelivery: p.AfterDelivery, AfterEvent: p.AfterEvent}
	oldest := p.OldestCutoff()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, pruneScanDeliveriesSQL, p.AfterDelivery, p.Limit)
		var (
			gone             []string
			seqs             []int64
			n                int
			deliveriesDone   bool
			id, state        string
			created, updated time.Time
			seq              int64
		)
		_, err := pgx.ForEachRow(rows, []any{&id, &state, &created, &updated, &seq}, func() error {
			n++
			if deliveriesDone || !oldest.IsZero() && !created.Before(oldest) {
				deliveriesDone = true
				return nil
			}
			res.AfterDelivery = id
			if p.Goes(store.DeliveryState(state), updated) {
				gone = append(gone, id)
				seqs = append(seqs, seq)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n < p.Limit {
			deliveriesDone = true
		}
		if len(gone) > 0 {
			tag, err := tx.Exec(ctx, pruneAttemptsSQL, gone)
			if err != nil {
				return err
			}
			res.Attempts = int(tag.RowsAffected())
			if tag, err = tx.Exec(ctx, pruneDeliveriesSQL, gone); err != nil {
				return err
			}
			res.Deliveries = int(tag.RowsAffected())
			if !p.EventsBefore.IsZero() {
				if tag, err = tx.Exec(ctx, pruneEventsSQL, seqs, p.EventsBefore); err != nil {
					return err
				}
				res.Events += int(tag.RowsAffected())
			}
		}

		eventsDone := p.EventsBefore.IsZero()
		if !eventsDone {
			rows, _ := tx.Query(ctx, pruneScanEventsSQL, p.AfterEvent, p.Limit)
			var window []int64
			n := 0
			_, err := pgx.ForEachRow(rows, []any{&seq, &created}, func() error {
				n++
				if eventsDone || !created.Before(p.EventsBefore) {
					eventsDone = true
					return nil
				}
				res.AfterEvent = seq
				window = append(window, seq)
				return nil
			})
			if err != nil {
				return err
			}
			if n < p.Limit {
				eventsDone = true
			}
			if len(window) > 0 {
				tag, err := tx.Exec(ctx, pruneEventsSQL, window, p.EventsBefore)
				if err != nil {
					return err
				}
				res.Events += int(tag.RowsAffected())
			}
		}
		res.Done = deliveriesDone && eventsDone
		return nil
	})
	if err != nil {
		return store.PruneResult{}, fmt.Errorf("postgres: prune: %w", err)
	}
	return res, nil
}

// EventErase removes an event's data and its deliveries' attempts (see
// store.Store).
func (s *Store) EventErase(ctx context.Context, tenant, source, id string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var seq int64
		if err := tx.QueryRow(ctx, eventFindSQL, tenant, source, id).Scan(&seq); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		return eraseEvent(ctx, tx, seq)
	})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInProgress) {
		return err
	}
	if err != nil {
		return fmt.Errorf("postgres: erase event %s/%s: %w", source, id, err)
	}
	return nil
}

// EventEraseSubject erases a tenant's events about one subject (see
// store.Store).
func (s *Store) EventEraseSubject(ctx context.Context, tenant, subject string, cursor int64, limit int) (store.EraseBatch, error) {
	var b store.EraseBatch
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b = store.EraseBatch{Cursor: cursor}
		rows, _ := tx.Query(ctx, eventsBySubjectSQL, tenant, subject, cursor, limit)
		seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		for _, seq := range seqs {
			b.Cursor = seq
			// A savepoint per event, so that one in progress leaves the
			// others' erasure in the transaction.
			switch err := pgx.BeginFunc(ctx, tx, func(tx pgx.Tx) error { return eraseEvent(ctx, tx, seq) }); {
			case errors.Is(err, store.ErrInProgress):
				b.InProgress++
			case err != nil:
				return err
			default:
				b.Erased++
			}
		}
		b.Done = len(seqs) < limit
		return nil
	})
	if err != nil {
		return store.EraseBatch{}, fmt.Errorf("postgres: erase subject: %w", err)
	}
	return b, nil
}

// eraseEvent removes the payload of the event at seq (locked by the
// caller) and the attempts of its deliveries, or returns ErrInProgress
// while one of them may still be sent.
func eraseEvent(ctx context.Context, tx pgx.Tx, seq int64) error {
	var inProgress int
	if err := tx.QueryRow(ctx, eventInProgressSQL, seq).Scan(&inProgress); err != nil {
		return err
	}
	if inProgress > 0 {
		return store.ErrInProgress
	}
	for _, q := range []string{eventAttemptsDeleteSQL, eventFirstAttemptsSQL, eventEraseSQL} {
		if _, err := tx.Exec(ctx, q, seq); err != nil {
			return err
		}
	}
	return nil
}

// LeaseAcquire takes or renews a lease (see store.Store).
func (s *Store) LeaseAcquire(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	var got string
	err := s.pool.QueryRow(ctx, leaseAcquireSQL, name, holder, now, until).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("postgres: lease %s: %w", name, err)
	}
	return got == holder, nil
}
