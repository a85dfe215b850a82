package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

const (
	pruneScanDeliveriesSQL = `SELECT id, state, created_at, updated_at, event_seq FROM deliveries
WHERE id > ? ORDER BY id LIMIT ?`
	pruneScanEventsSQL = `SELECT seq, created_at, delivery_ids FROM events WHERE seq > ? ORDER BY seq LIMIT ?`
	// The statements on many rows take a JSON array of their keys.
	eventsOfSeqsSQL         = `SELECT seq, created_at, delivery_ids FROM events WHERE seq IN (SELECT value FROM json_each(?))`
	deliveriesExistingSQL   = `SELECT id FROM deliveries WHERE id IN (SELECT value FROM json_each(?))`
	attemptsDeleteManySQL   = `DELETE FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(?))`
	deliveriesDeleteManySQL = `DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?))`
	eventsDeleteManySQL     = `DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?))`

	eventFindSQL  = `SELECT seq, delivery_ids FROM events WHERE tenant = ? AND source = ? AND id = ?`
	eventEraseSQL = `UPDATE events SET payload = x'' WHERE seq = ?`
	// eventsBySubjectSQL lists a tenant's events about a subject whose
	// data is still there, after a seq, in store order.
	eventsBySubjectSQL = `SELECT seq, delivery_ids FROM events
WHERE tenant = ? AND subject = ? AND seq > ? AND length(payload) > 0 ORDER BY seq LIMIT ?`
	deliveryStateSQL  = `SELECT state FROM deliveries WHERE id = ?`
	firstAttemptClear = `UPDATE deliveries SET first_started_at = NULL, first_status_code = 0, first_latency = 0,
	first_error = '', first_response_body = x'' WHERE id = ?`
	attemptsDeleteSQL = `DELETE FROM attempts WHERE delivery_id = ?`

	leaseAcquireSQL = `INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4)
ON CONFLICT (name) DO UPDATE SET holder = ?2, until = ?4 WHERE leases.holder = ?2 OR leases.until <= ?3
RETURNING holder`
)

// Prune deletes ended deliveries and events left without deliveries,
// oldest first (see store.Store).
func (s *Store) Prune(ctx context.Context, p store.PruneParams) (store.PruneResult, error) {
	if p.Limit <= 0 {
		return store.PruneResult{}, errors.New("sqlite: prune: Limit must be positive")
	}
	res := store.PruneResult{AfterDelivery: p.AfterDelivery, AfterEvent: p.AfterEvent}
	oldest := p.OldestCutoff()
	// An event is deleted only once none of its deliveries is left
	// (eventsLeftBare), so the foreign keys hold without SQLite's checks.
	err := s.inTxUnchecked(ctx, func(tx *sql.Tx) error {
		// Deliveries, in ID (creation) order: those that ended long enough
		// ago go with their attempts; a delivery created after every
		// cutoff ends the pass.
		rows, err := tx.QueryContext(ctx, pruneScanDeliveriesSQL, p.AfterDelivery, p.Limit)
		if err != nil {
			return err
		}
		var gone []string
		seqs := map[int64]bool{}
		n, deliveriesDone := 0, false
		for rows.Next() {
			var (
				id, state        string
				created, updated int64
				seq              int64
			)
			if err := rows.Scan(&id, &state, &created, &updated, &seq); err != nil {
				rows.Close()
				return err
			}
			n++
			if !oldest.IsZero() && !fromMillis(created).Before(oldest) {
				deliveriesDone = true
				break
			}
			res.AfterDelivery = id
			if p.Goes(store.DeliveryState(state), fromMillis(updated)) {
				gone = append(gone, id)
				seqs[seq] = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if n < p.Limit {
			deliveriesDone = true
		}
		if len(gone) > 0 {
			r, err := tx.ExecContext(ctx, attemptsDeleteManySQL, jsonArray(gone))
			if err != nil {
				return err
			}
			a, _ := r.RowsAffected()
			res.Attempts += int(a)
			if r, err = tx.ExecContext(ctx, deliveriesDeleteManySQL, jsonArray(gone)); err != nil {
				return err
			}
			d, _ := r.RowsAffected()
			res.Deliveries += int(d)
		}
		// The events of the deleted deliveries, if none of theirs is left.
		goneEvents, err := eventsLeftBare(ctx, tx, seqs, p.EventsBefore)
		if err != nil {
			return err
		}
		if len(goneEvents) > 0 {
			if _, err := tx.ExecContext(ctx, eventsDeleteManySQL, jsonArray(goneEvents)); err != nil {
				return err
			}
			res.Events += len(goneEvents)
		}

		// Events in seq order: those that never had a delivery (nothing
		// matched them) go once old enough.
		eventsDone := p.EventsBefore.IsZero()
		if !eventsDone {
			rows, err := tx.QueryContext(ctx, pruneScanEventsSQL, p.AfterEvent, p.Limit)
			if err != nil {
				return err
			}
			var empty []int64
			n := 0
			for rows.Next() {
				var (
					seq, created int64
					ids          string
				)
				if err := rows.Scan(&seq, &created, &ids); err != nil {
					rows.Close()
					return err
				}
				n++
				if !fromMillis(created).Before(p.EventsBefore) {
					eventsDone = true
					break
				}
				res.AfterEvent = seq
				if ids == "" {
					empty = append(empty, seq)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if n < p.Limit {
				eventsDone = true
			}
			if len(empty) > 0 {
				if _, err := tx.ExecContext(ctx, eventsDeleteManySQL, jsonArray(empty)); err != nil {
					return err
				}
				res.Events += len(empty)
			}
		}
		res.Done = deliveriesDone && eventsDone
		return nil
	})
	if err != nil {
		return store.PruneResult{}, fmt.Errorf("sqlite: prune: %w", err)
	}
	return res, nil
}

// eventsLeftBare returns those of the events at seqs that may go: stored
// before before, with none of their deliveries left.
func eventsLeftBare(ctx context.Context, tx *sql.Tx, seqs map[int64]bool, before time.Time) ([]int64, error) {
	if before.IsZero() || len(seqs) == 0 {
		return nil, nil
	}
	list := make([]int64, 0, len(seqs))
	for seq := range seqs {
		list = append(list, seq)
	}
	rows, err := tx.QueryContext(ctx, eventsOfSeqsSQL, jsonArray(list))
	if err != nil {
		return nil, err
	}
	type candidate struct {
		seq int64
		ids []string
	}
	var old []candidate
	var ids []string
	for rows.Next() {
		var c candidate
		var created int64
		var all string
		if err := rows.Scan(&c.seq, &created, &all); err != nil {
			rows.Close()
			return nil, err
		}
		if fromMillis(created).Before(before) {
			c.ids = strings.Fields(all)
			ids = append(ids, c.ids...)
			old = append(old, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	left := map[string]bool{}
	if len(ids) > 0 {
		rows, err := tx.QueryContext(ctx, deliveriesExistingSQL, jsonArray(ids))
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			left[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	var goes []int64
	for _, c := range old {
		if !slices.ContainsFunc(c.ids, func(id string) bool { return left[id] }) {
			goes = append(goes, c.seq)
		}
	}
	return goes, nil
}

// jsonArray encodes v as a JSON array, for json_each(?) in a statement
// that works on many rows at once.
func jsonArray[T any](v []T) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// EventErase removes an event's data and its deliveries' attempts (see
// store.Store).
func (s *Store) EventErase(ctx context.Context, tenant, source, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var seq int64
		var ids string
		err := tx.QueryRowContext(ctx, eventFindSQL, tenant, source, id).Scan(&seq, &ids)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		return eraseEvent(ctx, tx, seq, strings.Fields(ids))
	})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInProgress) {
		return err
	}
	if err != nil {
		return fmt.Errorf("sqlite: erase event %s/%s: %w", source, id, err)
	}
	return nil
}

// EventEraseSubject erases a tenant's events about one subject (see
// store.Store).
func (s *Store) EventEraseSubject(ctx context.Context, tenant, subject string, cursor int64, limit int) (store.EraseBatch, error) {
	b := store.EraseBatch{Cursor: cursor}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		b = store.EraseBatch{Cursor: cursor}
		type found struct {
			seq int64
			ids string
		}
		var events []found
		rows, err := tx.QueryContext(ctx, eventsBySubjectSQL, tenant, subject, cursor, limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var f found
			if err := rows.Scan(&f.seq, &f.ids); err != nil {
				rows.Close()
				return err
			}
			events = append(events, f)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, f := range events {
			b.Cursor = f.seq
			switch err := eraseEvent(ctx, tx, f.seq, strings.Fields(f.ids)); {
			case errors.Is(err, store.ErrInProgress):
				b.InProgress++
			case err != nil:
				return err
			default:
				b.Erased++
			}
		}
		b.Done = len(events) < limit
		return nil
	})
	if err != nil {
		return store.EraseBatch{}, fmt.Errorf("sqlite: erase subject: %w", err)
	}
	return b, nil
}

// eraseEvent removes the payload of the event at seq and the attempts of
// its deliveries, or returns ErrInProgress, changing nothing, while one
// of them may still be sent.
func eraseEvent(ctx context.Context, tx *sql.Tx, seq int64, deliveries []string) error {
	for _, d := range deliveries {
		var state string
		err := tx.QueryRowContext(ctx, deliveryStateSQL, d).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			continue // pruned
		}
		if err != nil {
			return err
		}
		if st := store.DeliveryState(state); st != store.DeliveryDelivered && st != store.DeliveryDead {
			return store.ErrInProgress
		}
	}
	for _, d := range deliveries {
		if _, err := tx.ExecContext(ctx, attemptsDeleteSQL, d); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, firstAttemptClear, d); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, eventEraseSQL, seq)
	return err
}

// LeaseAcquire takes or renews a lease (see store.Store).
func (s *Store) LeaseAcquire(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	var got string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, leaseAcquireSQL, name, holder, millis(now), millis(until)).Scan(&got)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil // held by another, unexpired
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: lease %s: %w", name, err)
	}
	return got == holder, nil
}
