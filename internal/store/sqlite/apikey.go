package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// APIKeyInsert stores a new API key.
func (s *Store) APIKeyInsert(ctx context.Context, k *store.APIKey) error {
	if k.ID == "" || k.Hash == "" {
		return errors.New("sqlite: API key has no ID or hash")
	}
	doc, err := store.EncodeAPIKeyDocument(k)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, apiKeyInsertSQL, k.ID, k.Hash, string(doc), millis(k.CreatedAt)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, apiKeysVersionBumpSQL)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: insert API key %s: %w", k.ID, err)
	}
	return nil
}

// APIKeyList returns every API key in ID order.
func (s *Store) APIKeyList(ctx context.Context) ([]*store.APIKey, error) {
	rows, err := s.reader.QueryContext(ctx, apiKeyListSQL)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list API keys: %w", err)
	}
	defer rows.Close()
	var keys []*store.APIKey
	for rows.Next() {
		var (
			k       store.APIKey
			doc     string
			created int64
		)
		if err := rows.Scan(&k.ID, &k.Hash, &doc, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list API keys: %w", err)
		}
		if err := store.DecodeAPIKeyDocument([]byte(doc), &k); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		k.CreatedAt = fromMillis(created)
		keys = append(keys, &k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list API keys: %w", err)
	}
	return keys, nil
}

// APIKeyDelete deletes an API key; store.ErrNotFound if it does not exist.
func (s *Store) APIKeyDelete(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, apiKeyDeleteSQL, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		_, err = tx.ExecContext(ctx, apiKeysVersionBumpSQL)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete API key %s: %w", id, err)
	}
	return nil
}

// APIKeysVersion returns a number that grows with every API key write.
func (s *Store) APIKeysVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.reader.QueryRowContext(ctx, apiKeysVersionSQL).Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: API keys version: %w", err)
	}
	return v, nil
}
