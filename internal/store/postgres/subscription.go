package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/store"
)

func encodeSubscription(s *store.Subscription) ([]byte, error) {
	b, err := store.EncodeSubscriptionDocument(s)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return b, nil
}

func scanSubscription(row pgx.Row) (*store.Subscription, error) {
	var (
		s                store.Subscription
		state            string
		document         []byte
		created, updated time.Time
	)
	if err := row.Scan(&s.ID, &state, &document, &created, &updated); err != nil {
		return nil, err
	}
	if err := store.DecodeSubscriptionDocument(document, &s); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s.State = store.SubscriptionState(state)
	s.CreatedAt = created.UTC()
	s.UpdatedAt = updated.UTC()
	return &s, nil
}

// SubscriptionInsert stores a new subscription.
func (s *Store) SubscriptionInsert(ctx context.Context, sub *store.Subscription) error {
	if sub.ID == "" {
		return errors.New("postgres: subscription has no ID")
	}
	doc, err := encodeSubscription(sub)
	if err != nil {
		return err
	}
	if sub.CreatedAt.IsZero() {
		sub.CreatedAt = now()
	}
	if sub.UpdatedAt.IsZero() {
		sub.UpdatedAt = sub.CreatedAt
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, subscriptionInsertSQL,
			sub.ID, string(sub.State), doc, sub.CreatedAt, sub.UpdatedAt); err != nil {
			return err
		}
		return bump(ctx, tx, sub.ID, subscriptionStampSQL)
	})
	if err != nil {
		return fmt.Errorf("postgres: insert subscription %s: %w", sub.ID, err)
	}
	return nil
}

// SubscriptionGet returns a subscription or store.ErrNotFound.
func (s *Store) SubscriptionGet(ctx context.Context, id string) (*store.Subscription, error) {
	sub, err := scanSubscription(s.pool.QueryRow(ctx, subscriptionGetSQL, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get subscription %s: %w", id, err)
	}
	return sub, nil
}

// SubscriptionList returns subscriptions in ID order.
func (s *Store) SubscriptionList(ctx context.Context, p store.SubscriptionListParams) ([]*store.Subscription, error) {
	var limit *int64 // NULL: no limit
	if p.Limit > 0 {
		l := int64(p.Limit)
		limit = &l
	}
	query, args := subscriptionListSQL, []any{p.After, limit, p.Tenant}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		args = append(args, k, p.Labels[k])
		query += fmt.Sprintf(" AND document->'labels'->>$%d = $%d", len(args)-1, len(args))
	}
	rows, _ := s.pool.Query(ctx, query+" ORDER BY id LIMIT $2", args...)
	subs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Subscription, error) {
		return scanSubscription(row)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list subscriptions: %w", err)
	}
	return subs, nil
}

// SubscriptionUpdate applies change to the stored subscription in one
// write transaction and sets its UpdatedAt; its ID and CreatedAt stay as
// stored.
func (s *Store) SubscriptionUpdate(ctx context.Context, id string, change func(*store.Subscription) error) (*store.Subscription, error) {
	var sub *store.Subscription
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := scanSubscription(tx.QueryRow(ctx, subscriptionGetSQL+" FOR UPDATE", id))
		if err != nil {
			return err
		}
		if err := change(cur); err != nil {
			return err
		}
		cur.ID = id
		doc, err := encodeSubscription(cur)
		if err != nil {
			return err
		}
		updated := now()
		var created time.Time
		if err := tx.QueryRow(ctx, subscriptionUpdateSQL, string(cur.State), doc, updated, id).Scan(&created); err != nil {
			return err
		}
		if err := bump(ctx, tx, id, subscriptionStampSQL); err != nil {
			return err
		}
		cur.CreatedAt, cur.UpdatedAt = created.UTC(), updated
		sub = cur
		return nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: update subscription %s: %w", id, err)
	}
	return sub, nil
}

// SubscriptionDelete deletes a subscription; store.ErrNotFound if it does
// not exist.
func (s *Store) SubscriptionDelete(ctx context.Context, id string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, subscriptionDeleteSQL, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return bump(ctx, tx, id, subscriptionTombstoneSQL)
	})
	if errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("postgres: delete subscription %s: %w", id, err)
	}
	return nil
}

// SubscriptionsVersion returns a number that grows with every subscription
// write.
func (s *Store) SubscriptionsVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, subscriptionsVersionSQL).Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres: subscriptions version: %w", err)
	}
	return v, nil
}

// bump grows the subscriptions' version and records the write of id with
// it (stamp: subscriptionStampSQL or subscriptionTombstoneSQL).
func bump(ctx context.Context, tx pgx.Tx, id, stamp string) error {
	if _, err := tx.Exec(ctx, subscriptionsVersionBumpSQL); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, stamp, id)
	return err
}

// SubscriptionChanges returns the subscriptions written, and the IDs of
// those deleted, since version after, and the version they bring the
// caller to.
func (s *Store) SubscriptionChanges(ctx context.Context, after int64) (store.SubscriptionChanges, error) {
	var ch store.SubscriptionChanges
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, subscriptionsVersionSQL).Scan(&ch.Version); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, subscriptionsChangedSQL, after)
		var err error
		ch.Changed, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Subscription, error) {
			return scanSubscription(row)
		})
		if err != nil {
			return err
		}
		rows, _ = tx.Query(ctx, subscriptionsDeletedSQL, after)
		ch.Deleted, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return ch, fmt.Errorf("postgres: subscription changes: %w", err)
	}
	return ch, nil
}
