package vault

import (
	"context"
	"fmt"
	"maps"

	"github.com/heraldhq/herald/internal/store"
)

// Store wraps a store so that a subscription's signing keys, bearer token
// and header values are sealed in the store and open everywhere else.
// Every other method passes through.
type Store struct {
	store.Store
	keys *Keys
}

// Wrap returns s with its subscriptions' secrets sealed with keys.
func Wrap(s store.Store, keys *Keys) *Store {
	return &Store{Store: s, keys: keys}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.Store }

// The additional data of each sealed field: the subscription's ID and the
// field's name, so that a sealed value copied to another subscription or
// field does not open.
func secretAAD(id string) string       { return id + "\x00secret" }
func bearerAAD(id string) string       { return id + "\x00bearer_token" }
func headerAAD(id, name string) string { return id + "\x00header\x00" + name }

// seal returns a copy of sub with its secrets sealed; sub is not changed.
func (s *Store) seal(sub *store.Subscription) *store.Subscription {
	out := *sub
	if sub.Secrets != nil {
		out.Secrets = make([]store.Secret, len(sub.Secrets))
		for i, sec := range sub.Secrets {
			sec.Key = s.keys.Seal(sec.Key, secretAAD(sub.ID))
			out.Secrets[i] = sec
		}
	}
	out.BearerToken = s.keys.Seal(sub.BearerToken, bearerAAD(sub.ID))
	if sub.Headers != nil {
		out.Headers = make(map[string]string, len(sub.Headers))
		for name, v := range sub.Headers {
			out.Headers[name] = s.keys.Seal(v, headerAAD(sub.ID, name))
		}
	}
	return &out
}

// open opens sub's secrets in place and says whether any was stored
// unsealed or under a key that is no longer the current one.
func (s *Store) open(sub *store.Subscription) (stale bool, err error) {
	field := func(v *string, aad string) {
		if err != nil {
			return
		}
		stale = stale || s.keys.Stale(*v)
		var open string
		if open, _, err = s.keys.Open(*v, aad); err == nil {
			*v = open
		}
	}
	for i := range sub.Secrets {
		field(&sub.Secrets[i].Key, secretAAD(sub.ID))
	}
	field(&sub.BearerToken, bearerAAD(sub.ID))
	if sub.Headers != nil {
		h := maps.Clone(sub.Headers)
		for name := range h {
			v := h[name]
			field(&v, headerAAD(sub.ID, name))
			h[name] = v
		}
		sub.Headers = h
	}
	if err != nil {
		return false, fmt.Errorf("subscription %s: %w", sub.ID, err)
	}
	return stale, nil
}

// SubscriptionInsert stores sub with its secrets sealed.
func (s *Store) SubscriptionInsert(ctx context.Context, sub *store.Subscription) error {
	sealed := s.seal(sub)
	if err := s.Store.SubscriptionInsert(ctx, sealed); err != nil {
		return err
	}
	sub.CreatedAt, sub.UpdatedAt = sealed.CreatedAt, sealed.UpdatedAt
	return nil
}

// SubscriptionGet returns a subscription with its secrets open.
func (s *Store) SubscriptionGet(ctx context.Context, id string) (*store.Subscription, error) {
	sub, err := s.Store.SubscriptionGet(ctx, id)
	if err != nil {
		return nil, err
	}
	if _, err := s.open(sub); err != nil {
		return nil, err
	}
	return sub, nil
}

// SubscriptionList returns subscriptions with their secrets open.
func (s *Store) SubscriptionList(ctx context.Context, p store.SubscriptionListParams) ([]*store.Subscription, error) {
	subs, err := s.Store.SubscriptionList(ctx, p)
	if err != nil {
		return nil, err
	}
	for _, sub := range subs {
		if _, err := s.open(sub); err != nil {
			return nil, err
		}
	}
	return subs, nil
}

// SubscriptionChanges returns the changes since a version with their
// secrets open.
func (s *Store) SubscriptionChanges(ctx context.Context, after int64) (store.SubscriptionChanges, error) {
	ch, err := s.Store.SubscriptionChanges(ctx, after)
	if err != nil {
		return ch, err
	}
	for _, sub := range ch.Changed {
		if _, err := s.open(sub); err != nil {
			return store.SubscriptionChanges{}, err
		}
	}
	return ch, nil
}

// SubscriptionUpdate runs change on the subscription with its secrets
// open, and stores the result sealed.
func (s *Store) SubscriptionUpdate(ctx context.Context, id string, change func(*store.Subscription) error) (*store.Subscription, error) {
	var changed *store.Subscription
	_, err := s.Store.SubscriptionUpdate(ctx, id, func(stored *store.Subscription) error {
		if _, err := s.open(stored); err != nil {
			return err
		}
		if err := change(stored); err != nil {
			return err
		}
		changed = stored
		*stored = *s.seal(stored)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := s.open(changed); err != nil {
		return nil, err
	}
	return changed, nil
}

// Reseal seals again, with the current key, every subscription's secrets
// that are stored unsealed or under an older key, and returns how many
// subscriptions it changed. Herald runs it at start; `herald encryption
// rotate` runs it after a new key is put first.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	subs, err := s.Store.SubscriptionList(ctx, store.SubscriptionListParams{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sub := range subs {
		stale, err := s.open(sub)
		if err != nil {
			return n, err
		}
		if !stale {
			continue
		}
		if _, err := s.SubscriptionUpdate(ctx, sub.ID, func(*store.Subscription) error { return nil }); err != nil {
			return n, fmt.Errorf("reseal subscription %s: %w", sub.ID, err)
		}
		n++
	}
	return n, nil
}
