package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/store"
)

// EventList returns a subscription's events with their deliveries (see
// store.Store).
func (s *Store) EventList(ctx context.Context, p store.EventListParams) ([]*store.EventDelivery, error) {
	if p.Limit <= 0 || p.SubscriptionID == "" {
		return nil, errors.New("postgres: list events: SubscriptionID and a positive Limit are required")
	}
	var b strings.Builder
	b.WriteString(`SELECT d.id, d.state, d.attempts, d.last_status, d.last_error, d.created_at, d.updated_at,
	e.tenant, e.source, e.id, e.type, e.created_at, e.payload
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.subscription_id = $1 AND d.id > $2`)
	args := []any{p.SubscriptionID, p.After}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !p.CreatedFrom.IsZero() {
		b.WriteString(` AND e.created_at >= ` + arg(p.CreatedFrom))
	}
	if !p.CreatedTo.IsZero() {
		b.WriteString(` AND e.created_at < ` + arg(p.CreatedTo))
	}
	if len(p.Types) > 0 {
		b.WriteString(` AND e.type = ANY(` + arg(p.Types) + `::text[])`)
	}
	b.WriteString(` ORDER BY d.id LIMIT ` + arg(p.Limit))
	rows, _ := s.pool.Query(ctx, b.String(), args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.EventDelivery, error) {
		var (
			ed                          store.EventDelivery
			state                       string
			dCreated, dUpdated, created time.Time
		)
		d, e := &ed.Delivery, &ed.Event
		if err := row.Scan(&d.ID, &state, &d.Attempts, &d.LastStatus, &d.LastError, &dCreated, &dUpdated,
			&e.Tenant, &e.Source, &e.ID, &e.Type, &created, &e.Payload); err != nil {
			return nil, err
		}
		d.SubscriptionID, d.State = p.SubscriptionID, store.DeliveryState(state)
		d.EventSource, d.EventID, d.EventType = e.Source, e.ID, e.Type
		d.CreatedAt, d.UpdatedAt, e.CreatedAt = dCreated.UTC(), dUpdated.UTC(), created.UTC()
		return &ed, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list events: %w", err)
	}
	return out, nil
}

// EventGet returns an event and its deliveries (see store.Store).
func (s *Store) EventGet(ctx context.Context, tenant, source, id string) (*store.Event, []*store.Delivery, error) {
	e := &store.Event{Tenant: tenant, Source: source, ID: id}
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT seq, type, created_at, payload FROM events WHERE tenant = $1 AND source = $2 AND id = $3`,
		tenant, source, id).Scan(&seq, &e.Type, &e.CreatedAt, &e.Payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, store.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: get event %s/%s: %w", source, id, err)
	}
	e.CreatedAt = e.CreatedAt.UTC()
	rows, _ := s.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.event_seq = $1 ORDER BY d.position`, seq)
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Delivery, error) {
		return scanDelivery(row, false)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: get event %s/%s: %w", source, id, err)
	}
	return e, ds, nil
}

// DeliveryRecent returns a subscription's recent deliveries, newest
// first (see store.Store).
func (s *Store) DeliveryRecent(ctx context.Context, p store.DeliveryRecentParams) ([]*store.DeliveryOutcome, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, state, attempts, last_status, last_error, first_status_code, first_latency, created_at, updated_at
FROM deliveries WHERE subscription_id = $1 AND id >= $2 ORDER BY id DESC LIMIT $3`, p.SubscriptionID, p.FromID, p.Limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.DeliveryOutcome, error) {
		var (
			o       store.DeliveryOutcome
			state   string
			latency int64
		)
		if err := row.Scan(&o.ID, &state, &o.Attempts, &o.LastStatus, &o.LastError, &o.FirstStatus, &latency, &o.CreatedAt, &o.UpdatedAt); err != nil {
			return nil, err
		}
		o.State, o.FirstLatency = store.DeliveryState(state), time.Duration(latency)
		o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
		return &o, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: recent deliveries: %w", err)
	}
	return out, nil
}
