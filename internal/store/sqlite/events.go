package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// EventList returns a subscription's events with their deliveries (see
// store.Store).
func (s *Store) EventList(ctx context.Context, p store.EventListParams) ([]*store.EventDelivery, error) {
	if p.Limit <= 0 || p.SubscriptionID == "" {
		return nil, errors.New("sqlite: list events: SubscriptionID and a positive Limit are required")
	}
	var b strings.Builder
	b.WriteString(`SELECT d.id, d.state, d.attempts, d.last_status, d.last_error, d.created_at, d.updated_at,
	e.tenant, e.source, e.id, e.type, e.created_at, e.payload
FROM deliveries d INDEXED BY deliveries_subscription JOIN events e ON e.seq = d.event_seq
WHERE d.subscription_id = ? AND d.id > ?`)
	args := []any{p.SubscriptionID, p.After}
	if !p.CreatedFrom.IsZero() {
		b.WriteString(` AND e.created_at >= ?`)
		args = append(args, millis(p.CreatedFrom))
	}
	if !p.CreatedTo.IsZero() {
		b.WriteString(` AND e.created_at < ?`)
		args = append(args, millis(p.CreatedTo))
	}
	if len(p.Types) > 0 {
		b.WriteString(` AND e.type IN (?` + strings.Repeat(`, ?`, len(p.Types)-1) + `)`)
		for _, t := range p.Types {
			args = append(args, t)
		}
	}
	b.WriteString(` ORDER BY d.id LIMIT ?`)
	args = append(args, p.Limit)
	rows, err := s.reader.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	defer rows.Close()
	var out []*store.EventDelivery
	for rows.Next() {
		var (
			ed                          store.EventDelivery
			state                       string
			dCreated, dUpdated, created int64
		)
		d, e := &ed.Delivery, &ed.Event
		if err := rows.Scan(&d.ID, &state, &d.Attempts, &d.LastStatus, &d.LastError, &dCreated, &dUpdated,
			&e.Tenant, &e.Source, &e.ID, &e.Type, &created, &e.Payload); err != nil {
			return nil, fmt.Errorf("sqlite: list events: %w", err)
		}
		d.SubscriptionID, d.State = p.SubscriptionID, store.DeliveryState(state)
		d.EventSource, d.EventID, d.EventType = e.Source, e.ID, e.Type
		d.CreatedAt, d.UpdatedAt, e.CreatedAt = fromMillis(dCreated), fromMillis(dUpdated), fromMillis(created)
		out = append(out, &ed)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	return out, nil
}

// EventGet returns an event and its deliveries (see store.Store).
func (s *Store) EventGet(ctx context.Context, tenant, source, id string) (*store.Event, []*store.Delivery, error) {
	e := &store.Event{Tenant: tenant, Source: source, ID: id}
	var created int64
	var ids string
	err := s.reader.QueryRowContext(ctx, `SELECT type, created_at, payload, delivery_ids FROM events WHERE tenant = ? AND source = ? AND id = ?`,
		tenant, source, id).Scan(&e.Type, &created, &e.Payload, &ids)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, store.ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: get event %s/%s: %w", source, id, err)
	}
	e.CreatedAt = fromMillis(created)
	var ds []*store.Delivery
	for _, did := range strings.Fields(ids) {
		d, err := s.DeliveryGet(ctx, did)
		if errors.Is(err, store.ErrNotFound) {
			continue // pruned
		}
		if err != nil {
			return nil, nil, err
		}
		d.EventPayload = nil
		ds = append(ds, d)
	}
	return e, ds, nil
}

// DeliveryRecent returns a subscription's recent deliveries, newest
// first (see store.Store).
func (s *Store) DeliveryRecent(ctx context.Context, p store.DeliveryRecentParams) ([]*store.DeliveryOutcome, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT id, state, attempts, last_status, last_error, first_status_code, first_latency, created_at, updated_at
FROM deliveries INDEXED BY deliveries_subscription WHERE subscription_id = ? AND id >= ? ORDER BY id DESC LIMIT ?`, p.SubscriptionID, p.FromID, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: recent deliveries: %w", err)
	}
	defer rows.Close()
	var out []*store.DeliveryOutcome
	for rows.Next() {
		var (
			o                store.DeliveryOutcome
			state            string
			latency          int64
			created, updated int64
		)
		if err := rows.Scan(&o.ID, &state, &o.Attempts, &o.LastStatus, &o.LastError, &o.FirstStatus, &latency, &created, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: recent deliveries: %w", err)
		}
		o.State, o.FirstLatency = store.DeliveryState(state), time.Duration(latency)
		o.CreatedAt, o.UpdatedAt = fromMillis(created), fromMillis(updated)
		out = append(out, &o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: recent deliveries: %w", err)
	}
	return out, nil
}
