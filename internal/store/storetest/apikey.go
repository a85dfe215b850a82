package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

var apiKeyTests = []test{
	{"InsertThenListRoundTripsEveryField", testAPIKeyRoundTrip},
	{"InsertDuplicateIDOrHashFails", testAPIKeyDuplicate},
	{"DeleteRemovesItAndMissingIsErrNotFound", testAPIKeyDelete},
	{"VersionGrowsOnInsertAndDelete", testAPIKeysVersion},
}

func fullAPIKey(id, hash string) *store.APIKey {
	return &store.APIKey{
		ID:                 id,
		Hash:               hash,
		DisplayName:        "billing, production",
		Scopes:             []policy.Scope{policy.ScopePublish, policy.ScopeDeliveriesRead},
		Tenant:             "acme",
		ExpiresAt:          at(24 * time.Hour),
		Hint:               "hk_abcd",
		PublishRate:        12.5,
		PublishBurst:       40,
		CertificateSubject: "billing.acme.internal",
		CreatedAt:          t0,
	}
}

func listKeys(t testing.TB, s store.Store) []*store.APIKey {
	t.Helper()
	keys, err := s.APIKeyList(t.Context())
	if err != nil {
		t.Fatalf("APIKeyList: %v", err)
	}
	return keys
}

func testAPIKeyRoundTrip(t *testing.T, s store.Store) {
	full := fullAPIKey("key_2", "hash-2")
	minimal := &store.APIKey{ID: "key_1", Hash: "hash-1", Scopes: []policy.Scope{policy.ScopeAdmin}, CreatedAt: t0}
	for _, k := range []*store.APIKey{full, minimal} {
		if err := s.APIKeyInsert(t.Context(), k); err != nil {
			t.Fatalf("APIKeyInsert(%s): %v", k.ID, err)
		}
	}
	keys := listKeys(t, s)
	if len(keys) != 2 {
		t.Fatalf("APIKeyList = %d keys, want 2", len(keys))
	}
	for i, want := range []*store.APIKey{minimal, full} {
		got := *keys[i]
		got.ExpiresAt, got.CreatedAt = got.ExpiresAt.UTC(), got.CreatedAt.UTC()
		if !got.ExpiresAt.IsZero() || !want.ExpiresAt.IsZero() {
			if !got.ExpiresAt.Equal(want.ExpiresAt) {
				t.Errorf("key %s: ExpiresAt = %v, want %v", want.ID, got.ExpiresAt, want.ExpiresAt)
			}
			got.ExpiresAt = want.ExpiresAt
		}
		if !reflect.DeepEqual(&got, want) {
			t.Errorf("key %d:\n got %+v\nwant %+v", i, got, *want)
		}
	}
}

func testAPIKeyDuplicate(t *testing.T, s store.Store) {
	if err := s.APIKeyInsert(t.Context(), fullAPIKey("key_1", "hash-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.APIKeyInsert(t.Context(), fullAPIKey("key_1", "hash-2")); err == nil {
		t.Error("APIKeyInsert with a stored ID succeeded")
	}
	if err := s.APIKeyInsert(t.Context(), fullAPIKey("key_2", "hash-1")); err == nil {
		t.Error("APIKeyInsert with a stored hash succeeded")
	}
	if keys := listKeys(t, s); len(keys) != 1 {
		t.Errorf("APIKeyList = %d keys, want 1", len(keys))
	}
}

func testAPIKeyDelete(t *testing.T, s store.Store) {
	for _, id := range []string{"key_1", "key_2"} {
		if err := s.APIKeyInsert(t.Context(), fullAPIKey(id, "hash-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.APIKeyDelete(t.Context(), "key_1"); err != nil {
		t.Fatalf("APIKeyDelete: %v", err)
	}
	if keys := listKeys(t, s); len(keys) != 1 || keys[0].ID != "key_2" {
		t.Errorf("after delete, APIKeyList = %v, want key_2 only", keys)
	}
	if err := s.APIKeyDelete(t.Context(), "key_1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("APIKeyDelete(missing) = %v, want ErrNotFound", err)
	}
}

func testAPIKeysVersion(t *testing.T, s store.Store) {
	ctx := t.Context()
	last, err := s.APIKeysVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		do   func() error
	}{
		{"insert", func() error { return s.APIKeyInsert(ctx, fullAPIKey("key_1", "hash-1")) }},
		{"delete", func() error { return s.APIKeyDelete(ctx, "key_1") }},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		v, err := s.APIKeysVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v <= last {
			t.Errorf("after %s, version %d, want more than %d", step.name, v, last)
		}
		last = v
	}
}
