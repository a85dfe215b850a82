package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

func encodeSubscription(s *store.Subscription) (string, error) {
	b, err := store.EncodeSubscriptionDocument(s)
	if err != nil {
		return "", fmt.Errorf("sqlite: %w", err)
	}
	return string(b), nil
}

type scanner interface {
	Scan(dest ...any) error
}

func scanSubscription(row scanner) (*store.Subscription, error) {
	var (
		s                store.Subscription
		state, document  string
		created, updated int64
	)
	if err := row.Scan(&s.ID, &state, &document, &created, &updated); err != nil {
		return nil, err
	}
	if err := store.DecodeSubscriptionDocument([]byte(document), &s); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	s.State = store.SubscriptionState(state)
	s.CreatedAt = fromMillis(created)
	s.UpdatedAt = fromMillis(updated)
	return &s, nil
}

// SubscriptionInsert stores a new subscription.
func (s *Store) SubscriptionInsert(ctx context.Context, sub *store.Subscription) error {
	if sub.ID == "" {
		return errors.New("sqlite: subscription has no ID")
	}
	doc, err := encodeSubscription(sub)
	if err != nil {
		return err
	}
	if sub.CreatedAt.IsZero() {
		sub.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	}
	if sub.UpdatedAt.IsZero() {
		sub.UpdatedAt = sub.CreatedAt
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, subscriptionInsertSQL,
			sub.ID, string(sub.State), doc, millis(sub.CreatedAt), millis(sub.UpdatedAt)); err != nil {
			return err
		}
		return bump(ctx, tx, sub.ID, subscriptionStampSQL)
	})
	if err != nil {
		return fmt.Errorf("sqlite: insert subscription %s: %w", sub.ID, err)
	}
	return nil
}

// SubscriptionGet returns a subscription or store.ErrNotFound.
func (s *Store) SubscriptionGet(ctx context.Context, id string) (*store.Subscription, error) {
	sub, err := scanSubscription(s.reader.QueryRowContext(ctx, subscriptionGetSQL, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get subscription %s: %w", id, err)
	}
	return sub, nil
}

// SubscriptionList returns subscriptions in ID order.
func (s *Store) SubscriptionList(ctx context.Context, p store.SubscriptionListParams) ([]*store.Subscription, error) {
	limit := int64(p.Limit)
	if limit <= 0 {
		limit = -1 // no limit
	}
	query, args := subscriptionListSQL, []any{p.After, limit, p.Tenant}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		query += subscriptionLabelSQL
		args = append(args, k, p.Labels[k])
	}
	rows, err := s.reader.QueryContext(ctx, query+subscriptionListEndSQL, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list subscriptions: %w", err)
	}
	defer rows.Close()
	var subs []*store.Subscription
	for rows.Next() {
		sub, err := scanSubscription(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list subscriptions: %w", err)
		}
		subs = append(subs, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list subscriptions: %w", err)
	}
	return subs, nil
}

// SubscriptionUpdate applies change to the stored subscription in one
// write transaction and sets its UpdatedAt; its ID and CreatedAt stay as
// stored.
func (s *Store) SubscriptionUpdate(ctx context.Context, id string, change func(*store.Subscription) error) (*store.Subscription, error) {
	var sub *store.Subscription
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The one writer connection serialises this read with every write.
		cur, err := scanSubscription(tx.QueryRowContext(ctx, subscriptionGetSQL, id))
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
		updated := time.Now().UTC().Truncate(time.Millisecond)
		var created int64
		if err := tx.QueryRowContext(ctx, subscriptionUpdateSQL,
			string(cur.State), doc, millis(updated), id).Scan(&created); err != nil {
			return err
		}
		if err := bump(ctx, tx, id, subscriptionStampSQL); err != nil {
			return err
		}
		cur.CreatedAt, cur.UpdatedAt = fromMillis(created), updated
		sub = cur
		return nil
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: update subscription %s: %w", id, err)
	}
	return sub, nil
}

// SubscriptionDelete deletes a subscription; store.ErrNotFound if it does
// not exist.
func (s *Store) SubscriptionDelete(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, subscriptionDeleteSQL, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		return bump(ctx, tx, id, subscriptionTombstoneSQL)
	})
	if errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete subscription %s: %w", id, err)
	}
	return nil
}

// SubscriptionsVersion returns a number that grows with every subscription
// write.
func (s *Store) SubscriptionsVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.reader.QueryRowContext(ctx, subscriptionsVersionSQL).Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: subscriptions version: %w", err)
	}
	return v, nil
}

// bump grows the subscriptions' version and records the write of id with
// it (stamp: subscriptionStampSQL or subscriptionTombstoneSQL).
func bump(ctx context.Context, tx *sql.Tx, id, stamp string) error {
	if _, err := tx.ExecContext(ctx, subscriptionsVersionBumpSQL); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, stamp, id)
	return err
}

// SubscriptionChanges returns the subscriptions written, and the IDs of
// those deleted, since version after, and the version they bring the
// caller to.
func (s *Store) SubscriptionChanges(ctx context.Context, after int64) (store.SubscriptionChanges, error) {
	var ch store.SubscriptionChanges
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return ch, fmt.Errorf("sqlite: subscription changes: %w", err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, subscriptionsVersionSQL).Scan(&ch.Version); err != nil {
		return ch, fmt.Errorf("sqlite: subscription changes: %w", err)
	}
	rows, err := tx.QueryContext(ctx, subscriptionsChangedSQL, after)
	if err != nil {
		return ch, fmt.Errorf("sqlite: subscription changes: %w", err)
	}
	for rows.Next() {
		sub, err := scanSubscription(rows)
		if err != nil {
			rows.Close()
			return ch, fmt.Errorf("sqlite: subscription changes: %w", err)
		}
		ch.Changed = append(ch.Changed, sub)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ch, fmt.Errorf("sqlite: subscription changes: %w", err)
	}
	rows, err = tx.QueryContext(ctx, subscriptionsDeletedSQL, after)
	if err != nil {
		return ch, fmt.Errorf("sqlite: subscription changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return ch, fmt.Errorf("sqlite: subscription changes: %w", err)
		}
		ch.Deleted = append(ch.Deleted, id)
	}
	if err := rows.Err(); err != nil {
		return ch, fmt.Errorf("sqlite: subscription changes: %w", err)
	}
	return ch, nil
}
