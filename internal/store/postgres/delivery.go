package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/store"
)

type eventKey struct{ tenant, source, id string }

// EventInsertBatch inserts events and their deliveries atomically, in one
// statement. Results are in params order.
func (s *Store) EventInsertBatch(ctx context.Context, params []store.EventInsertParams) ([]store.EventInsertResult, error) {
	results := make([]store.EventInsertResult, len(params))
	if len(params) == 0 {
		return results, nil
	}
	now := now()
	// first maps each event to its first occurrence in params; later
	// occurrences are duplicates of it.
	first := make(map[eventKey]int, len(params))
	unique := make([]int, 0, len(params))
	for i := range params {
		p := &params[i]
		if p.Event.Source == "" || p.Event.ID == "" {
			return nil, fmt.Errorf("postgres: insert events: event %d has no source or id", i)
		}
		for _, d := range p.Deliveries {
			if d.ID == "" || d.SubscriptionID == "" || d.State == "" {
				return nil, fmt.Errorf("postgres: insert events: event %s/%s: delivery needs ID, SubscriptionID and State", p.Event.Source, p.Event.ID)
			}
		}
		k := eventKey{p.Event.Tenant, p.Event.Source, p.Event.ID}
		if _, ok := first[k]; !ok {
			first[k] = i
			unique = append(unique, i)
		}
	}
	// Insert in key order, so that concurrent batches sharing events wait
	// on each other's unique index entries in one order and cannot deadlock.
	slices.SortFunc(unique, func(a, b int) int {
		ea, eb := &params[a].Event, &params[b].Event
		return cmp.Or(cmp.Compare(ea.Tenant, eb.Tenant), cmp.Compare(ea.Source, eb.Source), cmp.Compare(ea.ID, eb.ID))
	})

	// One statement inserts the events not stored yet and the deliveries
	// of those it inserted, atomically, in one round trip.
	var (
		tenants  = make([]string, len(unique))
		sources  = make([]string, len(unique))
		ids      = make([]string, len(unique))
		types    = make([]string, len(unique))
		subjects = make([]string, len(unique))
		created  = make([]time.Time, len(unique))
		payloads = make([][]byte, len(unique))
		d        deliveryColumnsArrays
	)
	for j, i := range unique {
		e := &params[i].Event
		tenants[j], sources[j], ids[j], types[j], subjects[j], payloads[j] = e.Tenant, e.Source, e.ID, e.Type, e.Subject, e.Payload
		created[j] = e.CreatedAt
		if created[j].IsZero() {
			created[j] = now
		}
		if payloads[j] == nil {
			payloads[j] = []byte{}
		}
		for pos := range params[i].Deliveries {
			d.add(&params[i].Deliveries[pos], pos, e, now)
		}
	}
	rows, _ := s.pool.Query(ctx, eventInsertSQL, sources, ids, types, created, payloads,
		d.id, d.subscriptionID, d.eventSource, d.eventID, d.position, d.state, d.attempts,
		d.lastStatus, d.lastError, d.nextAt, d.leaseUntil, d.createdAt, d.updatedAt,
		tenants, d.eventTenant, subjects, d.holder)
	inserted := make(map[eventKey]bool, len(unique))
	var k eventKey
	if _, err := pgx.ForEachRow(rows, []any{&k.tenant, &k.source, &k.id}, func() error {
		inserted[k] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: insert events: %w", err)
	}

	// Events stored before: report the deliveries they made then. The
	// statement above waited for any transaction still inserting one.
	var dupTenants, dupSources, dupIDs []string
	for _, i := range unique {
		e := &params[i].Event
		if !inserted[eventKey{e.Tenant, e.Source, e.ID}] {
			dupTenants = append(dupTenants, e.Tenant)
			dupSources = append(dupSources, e.Source)
			dupIDs = append(dupIDs, e.ID)
			results[i] = store.EventInsertResult{Duplicate: true, DeliveryIDs: []string{}}
		}
	}
	if len(dupIDs) > 0 {
		rows, _ := s.pool.Query(ctx, eventDeliveryIDsSQL, dupTenants, dupSources, dupIDs)
		var id string
		_, err := pgx.ForEachRow(rows, []any{&k.tenant, &k.source, &k.id, &id}, func() error {
			r := &results[first[k]]
			r.DeliveryIDs = append(r.DeliveryIDs, id)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("postgres: insert events: %w", err)
		}
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

// deliveryColumnsArrays holds deliveries as one array per column, with
// their event's source and id, the deliveries' arguments of
// eventInsertSQL.
type deliveryColumnsArrays struct {
	id, subscriptionID, eventTenant, eventSource, eventID, state, lastError, holder []string
	position, attempts, lastStatus                                                  []int32
	nextAt, leaseUntil, createdAt, updatedAt                                        []time.Time
}

func (a *deliveryColumnsArrays) add(d *store.Delivery, position int, e *store.Event, now time.Time) {
	created := d.CreatedAt
	if created.IsZero() {
		created = e.CreatedAt
	}
	if created.IsZero() {
		created = now
	}
	updated := d.UpdatedAt
	if updated.IsZero() {
		updated = created
	}
	a.id = append(a.id, d.ID)
	a.subscriptionID = append(a.subscriptionID, d.SubscriptionID)
	a.eventTenant = append(a.eventTenant, e.Tenant)
	a.eventSource = append(a.eventSource, e.Source)
	a.eventID = append(a.eventID, e.ID)
	a.position = append(a.position, int32(position))
	a.state = append(a.state, string(d.State))
	a.attempts = append(a.attempts, int32(d.Attempts))
	a.lastStatus = append(a.lastStatus, int32(d.LastStatus))
	a.lastError = append(a.lastError, d.LastError)
	a.nextAt = append(a.nextAt, d.NextAt)
	a.leaseUntil = append(a.leaseUntil, d.LeaseUntil)
	a.holder = append(a.holder, d.Holder)
	a.createdAt = append(a.createdAt, created)
	a.updatedAt = append(a.updatedAt, updated)
}

// scanDelivery reads deliveryColumns, then the payload if withPayload.
func scanDelivery(row pgx.Row, withPayload bool) (*store.Delivery, error) {
	var (
		d                                    store.Delivery
		state                                string
		nextAt, leaseUntil, created, updated time.Time
	)
	dest := []any{&d.ID, &d.SubscriptionID, &d.EventSource, &d.EventID, &d.EventType, &state,
		&d.Attempts, &d.LastStatus, &d.LastError, &nextAt, &leaseUntil, &created, &updated, &d.Holder}
	if withPayload {
		dest = append(dest, &d.EventPayload)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	d.State = store.DeliveryState(state)
	d.NextAt = fromDB(nextAt)
	d.LeaseUntil = fromDB(leaseUntil)
	d.CreatedAt = fromDB(created)
	d.UpdatedAt = fromDB(updated)
	return &d, nil
}

// fromDB returns a stored time in UTC, the zero time as time.Time{}.
func fromDB(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// DeliveryClaim marks up to p.Limit claimable deliveries in flight and
// returns them with their event payload, oldest NextAt first.
func (s *Store) DeliveryClaim(ctx context.Context, p store.DeliveryClaimParams) ([]*store.Delivery, error) {
	if p.Limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, deliveryClaimSQL, p.Now, p.Limit, p.LeaseUntil, p.Holder)
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Delivery, error) {
		return scanDelivery(row, true)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: claim deliveries: %w", err)
	}
	// RETURNING gives rows in no particular order.
	slices.SortFunc(ds, func(a, b *store.Delivery) int {
		return cmp.Or(a.NextAt.Compare(b.NextAt), cmp.Compare(a.ID, b.ID))
	})
	return ds, nil
}

// DeliveryRenew extends the leases p.Holder still holds among p.IDs, in
// one statement, and returns the IDs it renewed.
func (s *Store) DeliveryRenew(ctx context.Context, p store.DeliveryRenewParams) ([]string, error) {
	if len(p.IDs) == 0 || p.Holder == "" {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, deliveryRenewSQL, p.Until, p.IDs, p.Holder)
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: renew leases: %w", err)
	}
	return renewed, nil
}

// DeliveryRelease puts back every in-flight delivery p.Holder holds.
func (s *Store) DeliveryRelease(ctx context.Context, p store.DeliveryReleaseParams) (int, error) {
	if p.Holder == "" {
		return 0, errors.New("postgres: release deliveries: Holder is required")
	}
	tag, err := s.pool.Exec(ctx, deliveryReleaseSQL, p.Holder, p.NextAt, now())
	if err != nil {
		return 0, fmt.Errorf("postgres: release deliveries: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// DeliveryUpdateBatch applies updates in one transaction.
func (s *Store) DeliveryUpdateBatch(ctx context.Context, updates []store.DeliveryUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	ids := make([]string, 0, len(updates))
	distinct := make(map[string]bool, len(updates))
	for _, u := range updates {
		if u.ID == "" || u.State == "" {
			return errors.New("postgres: update deliveries: update needs ID and State")
		}
		if !distinct[u.ID] {
			distinct[u.ID] = true
			ids = append(ids, u.ID)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if len(ids) == len(updates) {
			return updateAsArrays(ctx, tx, updates)
		}
		// A delivery updated twice: one statement per row keeps the
		// updates' order.
		return updateByRow(ctx, tx, updates, ids)
	})
	if err != nil {
		return fmt.Errorf("postgres: update deliveries: %w", err)
	}
	return nil
}

// updateAsArrays applies updates to distinct deliveries in one statement,
// which keeps first attempts in the deliveries' rows, then records later
// attempts in another. The update returns the deliveries it changed; only
// those it did not change (not in their ExpectState, or missing) are
// looked at again, so the common batch costs no lookup of its own.
func updateAsArrays(ctx context.Context, tx pgx.Tx, updates []store.DeliveryUpdate) error {
	n := len(updates)
	var (
		ids, states, lastErrors, expects = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		expectHolders                    = make([]string, n)
		attempts, lastStatuses           = make([]int32, n), make([]int32, n)
		nextAts                          = make([]time.Time, n)
		first                            = make([]bool, n)
		f                                attemptArrays // first attempts, one per update (zero where first is false)
		later                            attemptArrays
		none                             store.Attempt
	)
	for i, u := range updates {
		ids[i], states[i], lastErrors[i], expects[i] = u.ID, string(u.State), u.LastError, string(u.ExpectState)
		expectHolders[i] = u.ExpectHolder
		attempts[i], lastStatuses[i], nextAts[i] = int32(u.Attempts), int32(u.LastStatus), u.NextAt
		fa := &none
		if u.RecordsFirstAttempt() {
			first[i], fa = true, u.Attempt
		} else if u.Attempt != nil {
			later.add(u.ID, u.Attempt)
		}
		f.add(u.ID, fa)
	}
	rows, _ := tx.Query(ctx, deliveryUpdateManySQL, ids, states, attempts, lastStatuses, lastErrors, nextAts, expects, now(),
		first, f.started, f.statuses, f.latencies, f.errors, f.bodies, expectHolders)
	updated, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(updated) < n {
		// Some were not in their ExpectState or held by their
		// ExpectHolder, or are missing. Their attempts are recorded all
		// the same.
		done := make(map[string]bool, len(updated))
		for _, id := range updated {
			done[id] = true
		}
		var rest attemptArrays
		for i, u := range updates {
			if first[i] && !done[u.ID] {
				rest.add(u.ID, u.Attempt)
			}
		}
		if len(rest.ids) > 0 {
			rows, _ := tx.Query(ctx, firstAttemptManySQL, rest.ids, rest.started, rest.statuses, rest.latencies, rest.errors, rest.bodies)
			recorded, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			updated = append(updated, recorded...)
		}
		if len(updated) < n {
			if err := requireExisting(ctx, tx, ids, updated); err != nil {
				return err
			}
		}
	}
	if len(later.ids) > 0 {
		_, err := tx.Exec(ctx, attemptUpsertManySQL, later.ids, later.numbers, later.started, later.statuses, later.latencies, later.errors, later.bodies)
		return err
	}
	return nil
}

// requireExisting fails with ErrNotFound if any of ids, other than those
// known to exist, names no delivery.
func requireExisting(ctx context.Context, tx pgx.Tx, ids, exist []string) error {
	known := make(map[string]bool, len(ids))
	for _, id := range exist {
		known[id] = true
	}
	var check []string
	for _, id := range ids {
		if !known[id] {
			check = append(check, id)
		}
	}
	rows, _ := tx.Query(ctx, deliveriesExistingSQL, check)
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, id := range found {
		known[id] = true
	}
	for _, id := range check {
		if !known[id] {
			return fmt.Errorf("delivery %s: %w", id, store.ErrNotFound)
		}
	}
	return nil
}

// updateByRow applies one statement per update and attempt, in order,
// after checking that every delivery exists, so that a missing one is
// reported as such rather than as the attempt's foreign key violation.
func updateByRow(ctx context.Context, tx pgx.Tx, updates []store.DeliveryUpdate, ids []string) error {
	if err := requireExisting(ctx, tx, ids, nil); err != nil {
		return err
	}
	var b pgx.Batch
	updated := now()
	for _, u := range updates {
		b.Queue(deliveryUpdateSQL, string(u.State), u.Attempts, u.LastStatus, u.LastError,
			u.NextAt, updated, u.ID, string(u.ExpectState), u.ExpectHolder)
		switch a := u.Attempt; {
		case u.RecordsFirstAttempt():
			b.Queue(firstAttemptSQL, u.ID, a.StartedAt, a.StatusCode, int64(a.Latency), a.Error, responseBody(a))
		case a != nil:
			b.Queue(attemptUpsertSQL, u.ID, a.Number, a.StartedAt, a.StatusCode, int64(a.Latency), a.Error, responseBody(a))
		}
	}
	return tx.SendBatch(ctx, &b).Close()
}

// attemptArrays holds attempts as one array per column, the arguments of
// attemptUpsertManySQL.
type attemptArrays struct {
	ids, errors       []string
	numbers, statuses []int32
	started           []time.Time
	latencies         []int64
	bodies            [][]byte
}

func (a *attemptArrays) add(deliveryID string, at *store.Attempt) {
	a.ids = append(a.ids, deliveryID)
	a.numbers = append(a.numbers, int32(at.Number))
	a.started = append(a.started, at.StartedAt)
	a.statuses = append(a.statuses, int32(at.StatusCode))
	a.latencies = append(a.latencies, int64(at.Latency))
	a.errors = append(a.errors, at.Error)
	a.bodies = append(a.bodies, responseBody(at))
}

func responseBody(a *store.Attempt) []byte {
	if a.ResponseBody == nil {
		return []byte{}
	}
	return a.ResponseBody
}

// DeliveryGet returns a delivery with its event payload, or
// store.ErrNotFound.
func (s *Store) DeliveryGet(ctx context.Context, id string) (*store.Delivery, error) {
	d, err := scanDelivery(s.pool.QueryRow(ctx, deliveryGetSQL, id), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get delivery %s: %w", id, err)
	}
	return d, nil
}

// DeliveryList returns deliveries, newest first, without their payload.
func (s *Store) DeliveryList(ctx context.Context, p store.DeliveryListParams) ([]*store.Delivery, error) {
	if p.Limit <= 0 {
		return nil, errors.New("postgres: list deliveries: Limit must be positive")
	}
	if p.SubscriptionIDs != nil && len(p.SubscriptionIDs) == 0 {
		return nil, nil
	}
	query, args := deliveryListSQL(p)
	rows, _ := s.pool.Query(ctx, query, args...)
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Delivery, error) {
		return scanDelivery(row, false)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list deliveries: %w", err)
	}
	return ds, nil
}

// AttemptList returns a delivery's attempts, oldest first.
func (s *Store) AttemptList(ctx context.Context, deliveryID string) ([]*store.Attempt, error) {
	rows, _ := s.pool.Query(ctx, attemptListSQL, deliveryID)
	as, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Attempt, error) {
		var (
			a       store.Attempt
			started time.Time
			latency int64
		)
		if err := row.Scan(&a.DeliveryID, &a.Number, &started, &a.StatusCode, &latency, &a.Error, &a.ResponseBody); err != nil {
			return nil, err
		}
		a.StartedAt = fromDB(started)
		a.Latency = time.Duration(latency)
		return &a, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list attempts: %w", err)
	}
	return as, nil
}

// unholdSQL makes up to $4 of subscription $1's held deliveries pending,
// in event order, with next_at from $2 on, a millisecond apart.
const unholdSQL = `WITH r AS (
	SELECT id, row_number() OVER (ORDER BY event_seq, position) - 1 AS rank FROM (
		SELECT id, event_seq, position FROM deliveries
		WHERE subscription_id = $1 AND state = 'held'
		ORDER BY event_seq, position LIMIT $4 FOR UPDATE) held)
UPDATE deliveries d SET state = 'pending', next_at = $2::timestamptz + r.rank * interval '1 millisecond',
	lease_until = '0001-01-01 00:00:00+00', updated_at = $3
FROM r WHERE d.id = r.id`

// DeliveryUnhold makes a subscription's oldest held deliveries pending
// (see store.Store).
func (s *Store) DeliveryUnhold(ctx context.Context, p store.DeliveryUnholdParams) (int, error) {
	if p.Limit <= 0 {
		return 0, errors.New("postgres: unhold deliveries: Limit must be positive")
	}
	tag, err := s.pool.Exec(ctx, unholdSQL, p.SubscriptionID, p.NextAt.UTC().Truncate(time.Millisecond), now(), p.Limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: unhold deliveries: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
