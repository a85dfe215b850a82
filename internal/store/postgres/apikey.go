package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/store"
)

// APIKeyInsert stores a new API key.
func (s *Store) APIKeyInsert(ctx context.Context, k *store.APIKey) error {
	if k.ID == "" || k.Hash == "" {
		return errors.New("postgres: API key has no ID or hash")
	}
	doc, err := store.EncodeAPIKeyDocument(k)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, apiKeyInsertSQL, k.ID, k.Hash, doc, k.CreatedAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, apiKeysVersionBumpSQL)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: insert API key %s: %w", k.ID, err)
	}
	return nil
}

// APIKeyList returns every API key in ID order.
func (s *Store) APIKeyList(ctx context.Context) ([]*store.APIKey, error) {
	rows, _ := s.pool.Query(ctx, apiKeyListSQL)
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.APIKey, error) {
		var (
			k       store.APIKey
			doc     []byte
			created time.Time
		)
		if err := row.Scan(&k.ID, &k.Hash, &doc, &created); err != nil {
			return nil, err
		}
		if err := store.DecodeAPIKeyDocument(doc, &k); err != nil {
			return nil, err
		}
		k.CreatedAt = created.UTC()
		return &k, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list API keys: %w", err)
	}
	return keys, nil
}

// APIKeyDelete deletes an API key; store.ErrNotFound if it does not exist.
func (s *Store) APIKeyDelete(ctx context.Context, id string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, apiKeyDeleteSQL, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		_, err = tx.Exec(ctx, apiKeysVersionBumpSQL)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("postgres: delete API key %s: %w", id, err)
	}
	return nil
}

// APIKeysVersion returns a number that grows with every API key write.
func (s *Store) APIKeysVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, apiKeysVersionSQL).Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres: API keys version: %w", err)
	}
	return v, nil
}
