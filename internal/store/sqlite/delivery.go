package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// maxRows is the most rows one multi-row INSERT carries. A batch is cut
// into statements of maxRows rows and a remainder split into powers of two,
// so that few distinct statements are ever prepared.
const maxRows = 128

// chunks splits n rows into statement sizes: maxRows while it lasts, then
// powers of two.
func chunks(n int) []int {
	var sizes []int
	for n >= maxRows {
		sizes = append(sizes, maxRows)
		n -= maxRows
	}
	for size := maxRows / 2; size > 0; size /= 2 {
		if n >= size {
			sizes = append(sizes, size)
			n -= size
		}
	}
	return sizes
}

type eventKey struct{ tenant, source, id string }

// EventInsertBatch inserts events and their deliveries in one durable
// transaction. Results are in params order.
func (s *Store) EventInsertBatch(ctx context.Context, params []store.EventInsertParams) ([]store.EventInsertResult, error) {
	now := time.Now().UTC()
	results := make([]store.EventInsertResult, len(params))
	// first maps each event to its first occurrence in params; later
	// occurrences are duplicates of it.
	first := make(map[eventKey]int, len(params))
	unique := make([]int, 0, len(params))
	for i := range params {
		p := &params[i]
		if p.Event.Source == "" || p.Event.ID == "" {
			return nil, fmt.Errorf("sqlite: insert events: event %d has no source or id", i)
		}
		for _, d := range p.Deliveries {
			if d.ID == "" || d.SubscriptionID == "" || d.State == "" {
				return nil, fmt.Errorf("sqlite: insert events: event %s/%s: delivery needs ID, SubscriptionID and State", p.Event.Source, p.Event.ID)
			}
		}
		k := eventKey{p.Event.Tenant, p.Event.Source, p.Event.ID}
		if _, ok := first[k]; !ok {
			first[k] = i
			unique = append(unique, i)
		}
	}

	seqs := make(map[int]int64, len(unique)) // params index -> seq, for events inserted now
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Events: skip the stored ones and learn the new ones' seq.
		rest := unique
		args := make([]any, 0, maxRows*12) // 12: a delivery row's columns, more than an event's
		for _, n := range chunks(len(unique)) {
			batch := rest[:n]
			rest = rest[n:]
			args = args[:0]
			for _, i := range batch {
				e := &params[i].Event
				created := e.CreatedAt
				if created.IsZero() {
					created = now
				}
				payload := e.Payload
				if payload == nil {
					payload = []byte{}
				}
				args = append(args, e.Tenant, e.Source, e.ID, e.Type, e.Subject, millis(created), deliveryIDs(params[i].Deliveries), payload)
			}
			rows, err := s.txStmt(ctx, tx, eventInsertSQL(n)).QueryContext(ctx, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var (
					seq int64
					k   eventKey
				)
				if err := rows.Scan(&seq, &k.tenant, &k.source, &k.id); err != nil {
					rows.Close()
					return err
				}
				seqs[first[k]] = seq
			}
			if err := rows.Err(); err != nil {
				return err
			}
		}

		// Deliveries of the new events, in params order.
		type row struct {
			d   *store.Delivery
			seq int64
			e   *store.Event
		}
		var pending []row
		flush := func(n int) error {
			args = args[:0]
			for _, r := range pending[:n] {
				created := r.d.CreatedAt
				if created.IsZero() {
					created = r.e.CreatedAt
				}
				if created.IsZero() {
					created = now
				}
				updated := r.d.UpdatedAt
				if updated.IsZero() {
					updated = created
				}
				args = append(args, r.d.ID, r.d.SubscriptionID, r.seq, string(r.d.State),
					r.d.Attempts, r.d.LastStatus, r.d.LastError, millis(r.d.NextAt),
					millis(r.d.LeaseUntil), millis(created), millis(updated), r.d.Holder)
			}
			if _, err := s.txStmt(ctx, tx, deliveryInsertSQL(n)).ExecContext(ctx, args...); err != nil {
				return err
			}
			pending = pending[n:]
			return nil
		}
		for _, i := range unique {
			seq, ok := seqs[i]
			if !ok {
				continue
			}
			for j := range params[i].Deliveries {
				pending = append(pending, row{&params[i].Deliveries[j], seq, &params[i].Event})
				if len(pending) == maxRows {
					if err := flush(maxRows); err != nil {
						return err
					}
				}
			}
		}
		for _, n := range chunks(len(pending)) {
			if err := flush(n); err != nil {
				return err
			}
		}

		// Events stored before: report the deliveries they made then.
		var idsStmt *sql.Stmt
		for _, i := range unique {
			if _, ok := seqs[i]; ok {
				continue
			}
			if idsStmt == nil {
				idsStmt = s.txStmt(ctx, tx, eventDeliveryIDsSQL)
			}
			var ids string
			e := &params[i].Event
			if err := idsStmt.QueryRowContext(ctx, e.Tenant, e.Source, e.ID).Scan(&ids); err != nil {
				return err
			}
			results[i] = store.EventInsertResult{Duplicate: true, DeliveryIDs: strings.Fields(ids)}
			if results[i].DeliveryIDs == nil {
				results[i].DeliveryIDs = []string{}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: insert events: %w", err)
	}

	for i := range params {
		p := &params[i]
		fi := first[eventKey{p.Event.Tenant, p.Event.Source, p.Event.ID}]
		switch {
		case fi != i:
			results[i] = store.EventInsertResult{Duplicate: true, DeliveryIDs: append([]string(nil), results[fi].DeliveryIDs...)}
		case !results[i].Duplicate:
			ids := make([]string, len(p.Deliveries))
			for j, d := range p.Deliveries {
				ids[j] = d.ID
			}
			results[i].DeliveryIDs = ids
		}
	}
	return results, nil
}

// deliveryIDs is how an event row keeps its deliveries' IDs.
func deliveryIDs(ds []store.Delivery) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(d.ID)
	}
	return b.String()
}

func queryStrings(ctx context.Context, st *sql.Stmt, args ...any) ([]string, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// scanDelivery reads deliveryColumns, then payload if it is not nil.
func scanDelivery(row scanner, payload *[]byte) (*store.Delivery, error) {
	var (
		d                                    store.Delivery
		state                                string
		nextAt, leaseUntil, created, updated int64
	)
	dest := []any{&d.ID, &d.SubscriptionID, &d.EventSource, &d.EventID, &d.EventType, &state,
		&d.Attempts, &d.LastStatus, &d.LastError, &nextAt, &leaseUntil, &created, &updated, &d.Holder}
	if payload != nil {
		dest = append(dest, payload)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	d.State = store.DeliveryState(state)
	d.NextAt = fromMillis(nextAt)
	d.LeaseUntil = fromMillis(leaseUntil)
	d.CreatedAt = fromMillis(created)
	d.UpdatedAt = fromMillis(updated)
	if payload != nil {
		d.EventPayload = *payload
	}
	return &d, nil
}

// DeliveryClaim marks up to p.Limit claimable deliveries in flight and
// returns them with their event payload, oldest NextAt first.
func (s *Store) DeliveryClaim(ctx context.Context, p store.DeliveryClaimParams) ([]*store.Delivery, error) {
	if p.Limit <= 0 {
		return nil, nil
	}
	now := millis(p.Now)
	rows, err := s.stmts[deliveryClaimSQL].QueryContext(ctx, now, p.Limit, millis(p.LeaseUntil), p.Holder)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim deliveries: %w", err)
	}
	var ds []*store.Delivery
	var seqs []int64
	for rows.Next() {
		var (
			d                                    store.Delivery
			seq                                  int64
			state                                string
			nextAt, leaseUntil, created, updated int64
		)
		if err := rows.Scan(&d.ID, &d.SubscriptionID, &seq, &state, &d.Attempts, &d.LastStatus, &d.LastError,
			&nextAt, &leaseUntil, &created, &updated, &d.Holder); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: claim deliveries: %w", err)
		}
		d.State = store.DeliveryState(state)
		d.NextAt, d.LeaseUntil = fromMillis(nextAt), fromMillis(leaseUntil)
		d.CreatedAt, d.UpdatedAt = fromMillis(created), fromMillis(updated)
		ds = append(ds, &d)
		seqs = append(seqs, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: claim deliveries: %w", err)
	}
	if len(ds) == 0 {
		return nil, nil
	}
	if err := s.fillEvents(ctx, ds, seqs); err != nil {
		// The claims stand: their leases expire and they are claimed again.
		return nil, fmt.Errorf("sqlite: claim deliveries: read events: %w", err)
	}
	// RETURNING gives rows in no particular order.
	sort.Slice(ds, func(i, j int) bool {
		if !ds[i].NextAt.Equal(ds[j].NextAt) {
			return ds[i].NextAt.Before(ds[j].NextAt)
		}
		return ds[i].ID < ds[j].ID
	})
	return ds, nil
}

// DeliveryRenew extends the leases p.Holder still holds among p.IDs, in
// one statement, and returns the IDs it renewed.
func (s *Store) DeliveryRenew(ctx context.Context, p store.DeliveryRenewParams) ([]string, error) {
	if len(p.IDs) == 0 || p.Holder == "" {
		return nil, nil
	}
	ids, err := json.Marshal(p.IDs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: renew leases: %w", err)
	}
	renewed, err := queryStrings(ctx, s.stmts[deliveryRenewSQL], millis(p.Until), string(ids), p.Holder)
	if err != nil {
		return nil, fmt.Errorf("sqlite: renew leases: %w", err)
	}
	return renewed, nil
}

// DeliveryRelease puts back every in-flight delivery p.Holder holds.
func (s *Store) DeliveryRelease(ctx context.Context, p store.DeliveryReleaseParams) (int, error) {
	if p.Holder == "" {
		return 0, errors.New("sqlite: release deliveries: Holder is required")
	}
	res, err := s.stmts[deliveryReleaseSQL].ExecContext(ctx, millis(p.NextAt), millis(time.Now()), p.Holder)
	if err != nil {
		return 0, fmt.Errorf("sqlite: release deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: release deliveries: %w", err)
	}
	return int(n), nil
}

// fillEvents sets the event fields of ds[i] from the event with seqs[i],
// read from the read pool (events never change once stored).
func (s *Store) fillEvents(ctx context.Context, ds []*store.Delivery, seqs []int64) error {
	byseq := make(map[int64][]*store.Delivery, len(ds))
	var q strings.Builder
	q.WriteString(claimEventsSQL)
	args := make([]any, 0, len(ds))
	for i, seq := range seqs {
		if _, ok := byseq[seq]; !ok {
			if len(args) > 0 {
				q.WriteByte(',')
			}
			q.WriteByte('?')
			args = append(args, seq)
		}
		byseq[seq] = append(byseq[seq], ds[i])
	}
	q.WriteByte(')')
	rows, err := s.reader.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var (
			seq             int64
			source, id, typ string
			payload         []byte
		)
		if err := rows.Scan(&seq, &source, &id, &typ, &payload); err != nil {
			return err
		}
		for _, d := range byseq[seq] {
			d.EventSource, d.EventID, d.EventType, d.EventPayload = source, id, typ, payload
			found++
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if found != len(ds) {
		return fmt.Errorf("%d of %d events missing", len(ds)-found, len(ds))
	}
	return nil
}

// DeliveryUpdateBatch applies updates in one transaction, in order, with
// multi-row statements: each takes a run of updates to distinct
// deliveries, so a delivery updated twice in a batch is updated twice.
func (s *Store) DeliveryUpdateBatch(ctx context.Context, updates []store.DeliveryUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	for _, u := range updates {
		if u.ID == "" || u.State == "" {
			return errors.New("sqlite: update deliveries: update needs ID and State")
		}
	}
	now := millis(time.Now())
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		args := make([]any, 0, maxRows*13+1)
		seen := make(map[string]bool, min(len(updates), maxRows))
		// Runs of updates to distinct deliveries that all record a first
		// attempt, or all do not, go in one statement each.
		for rest := updates; len(rest) > 0; {
			clear(seen)
			run := 0
			first := rest[0].RecordsFirstAttempt()
			for run < len(rest) && run < maxRows && !seen[rest[run].ID] && rest[run].RecordsFirstAttempt() == first {
				seen[rest[run].ID] = true
				run++
			}
			for _, n := range chunks(run) {
				if err := s.updateDeliveries(ctx, tx, rest[:n], first, now, args); err != nil {
					return err
				}
				rest = rest[n:]
			}
		}
		// First attempts went into the deliveries' rows.
		var attempts []*store.DeliveryUpdate
		for i := range updates {
			if updates[i].Attempt != nil && !updates[i].RecordsFirstAttempt() {
				attempts = append(attempts, &updates[i])
			}
		}
		for _, n := range chunks(len(attempts)) {
			args = args[:0]
			for _, u := range attempts[:n] {
				a := u.Attempt
				args = append(args, u.ID, a.Number, millis(a.StartedAt), a.StatusCode, int64(a.Latency), a.Error, nonNil(a.ResponseBody))
			}
			if _, err := s.txStmt(ctx, tx, attemptUpsertManySQL(n)).ExecContext(ctx, args...); err != nil {
				return err
			}
			attempts = attempts[n:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: update deliveries: %w", err)
	}
	return nil
}

// updateDeliveries applies updates to distinct deliveries in one
// statement; an update whose delivery is missing fails with ErrNotFound.
// If first, every update records a first attempt, and the statement
// stores it too; otherwise none does. args is scratch space.
func (s *Store) updateDeliveries(ctx context.Context, tx *sql.Tx, updates []store.DeliveryUpdate, first bool, now int64, args []any) error {
	args = args[:0]
	for _, u := range updates {
		args = append(args, u.ID, string(u.State), u.Attempts, u.LastStatus, u.LastError,
			millis(u.NextAt), string(u.ExpectState), u.ExpectHolder)
		if first {
			args = appendFirstAttempt(args, u.Attempt)
		}
	}
	args = append(args, now)
	query := deliveryUpdateManySQL(len(updates))
	if first {
		query = deliveryUpdateFirstManySQL(len(updates))
	}
	updated, err := queryStrings(ctx, s.txStmt(ctx, tx, query), args...)
	if err != nil {
		return err
	}
	if len(updated) == len(updates) {
		return nil
	}
	// Some were not in their ExpectState or held by their ExpectHolder,
	// or are missing. Their attempts are recorded all the same.
	done := make(map[string]bool, len(updated))
	for _, id := range updated {
		done[id] = true
	}
	for _, u := range updates {
		if done[u.ID] {
			continue
		}
		found, err := s.recordFirstOrExists(ctx, tx, u, first)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("delivery %s: %w", u.ID, store.ErrNotFound)
		}
	}
	return nil
}

// recordFirstOrExists reports whether u's delivery exists, recording u's
// first attempt in its row on the way if first.
func (s *Store) recordFirstOrExists(ctx context.Context, tx *sql.Tx, u store.DeliveryUpdate, first bool) (bool, error) {
	if first {
		res, err := s.txStmt(ctx, tx, firstAttemptSQL).ExecContext(ctx, append(appendFirstAttempt(nil, u.Attempt), u.ID)...)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n > 0, err
	}
	var one int
	err := s.txStmt(ctx, tx, deliveryExistsSQL).QueryRowContext(ctx, u.ID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// appendFirstAttempt appends a first attempt's values for the first_*
// columns, in their order, to args.
func appendFirstAttempt(args []any, a *store.Attempt) []any {
	return append(args, millis(a.StartedAt), a.StatusCode, int64(a.Latency), a.Error, nonNil(a.ResponseBody))
}

// nonNil returns b, or an empty slice for nil: SQLite stores a nil []byte
// as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// DeliveryGet returns a delivery with its event payload, or
// store.ErrNotFound.
func (s *Store) DeliveryGet(ctx context.Context, id string) (*store.Delivery, error) {
	var payload []byte
	d, err := scanDelivery(s.reader.QueryRowContext(ctx, deliveryGetSQL, id), &payload)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get delivery %s: %w", id, err)
	}
	return d, nil
}

// DeliveryList returns deliveries, newest first, without their payload.
func (s *Store) DeliveryList(ctx context.Context, p store.DeliveryListParams) ([]*store.Delivery, error) {
	if p.Limit <= 0 {
		return nil, errors.New("sqlite: list deliveries: Limit must be positive")
	}
	if p.SubscriptionIDs != nil && len(p.SubscriptionIDs) == 0 {
		return nil, nil
	}
	switch p.State {
	case "", store.DeliveryPending, store.DeliveryInFlight, store.DeliveryDelivered, store.DeliveryRetrying, store.DeliveryDead, store.DeliveryHeld:
	default:
		return nil, fmt.Errorf("sqlite: list deliveries: unknown state %q", p.State)
	}
	query, args, err := deliveryListSQL(p)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list deliveries: %w", err)
	}
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list deliveries: %w", err)
	}
	defer rows.Close()
	var ds []*store.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows, nil)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list deliveries: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list deliveries: %w", err)
	}
	return ds, nil
}

// AttemptList returns a delivery's attempts, oldest first.
func (s *Store) AttemptList(ctx context.Context, deliveryID string) ([]*store.Attempt, error) {
	rows, err := s.reader.QueryContext(ctx, attemptListSQL, deliveryID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list attempts: %w", err)
	}
	defer rows.Close()
	var as []*store.Attempt
	for rows.Next() {
		var (
			a                store.Attempt
			started, latency int64
		)
		if err := rows.Scan(&a.DeliveryID, &a.Number, &started, &a.StatusCode, &latency,
			&a.Error, &a.ResponseBody); err != nil {
			return nil, fmt.Errorf("sqlite: list attempts: %w", err)
		}
		a.StartedAt = fromMillis(started)
		a.Latency = time.Duration(latency)
		as = append(as, &a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list attempts: %w", err)
	}
	return as, nil
}

const (
	heldOldestSQL = `SELECT pk FROM deliveries WHERE subscription_id = ? AND state = 'held'
ORDER BY event_seq, id LIMIT ?`
	unholdSQL = `UPDATE deliveries SET state = 'pending', next_at = ?, lease_until = 0, updated_at = ?
WHERE pk = ? AND state = 'held'`
)

// DeliveryUnhold makes a subscription's oldest held deliveries pending
// (see store.Store).
func (s *Store) DeliveryUnhold(ctx context.Context, p store.DeliveryUnholdParams) (int, error) {
	if p.Limit <= 0 {
		return 0, errors.New("sqlite: unhold deliveries: Limit must be positive")
	}
	n := 0
	now := millis(time.Now())
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, heldOldestSQL, p.SubscriptionID, p.Limit)
		if err != nil {
			return err
		}
		var pks []int64
		for rows.Next() {
			var pk int64
			if err := rows.Scan(&pk); err != nil {
				rows.Close()
				return err
			}
			pks = append(pks, pk)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		stmt := s.txStmt(ctx, tx, unholdSQL)
		next := millis(p.NextAt)
		for i, pk := range pks {
			if _, err := stmt.ExecContext(ctx, next+int64(i), now, pk); err != nil {
				return err
			}
		}
		n = len(pks)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: unhold deliveries: %w", err)
	}
	return n, nil
}
