package vault_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
	"github.com/heraldhq/herald/internal/vault"
)

func keys(t *testing.T, specs ...string) *vault.Keys {
	t.Helper()
	k, err := vault.ParseKeys(specs)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen_RoundTripsAndBindsToItsRecord(t *testing.T) {
	k := keys(t, vault.NewKey("k1"))
	sealed := k.Seal("whsec_secret", "sub_1\x00secret")
	if !strings.HasPrefix(sealed, "enc:v1:k1:") || strings.Contains(sealed, "whsec_secret") {
		t.Fatalf("sealed = %q", sealed)
	}
	if again := k.Seal("whsec_secret", "sub_1\x00secret"); again == sealed {
		t.Error("two seals of one value are equal: the nonce is not fresh")
	}
	got, plain, err := k.Open(sealed, "sub_1\x00secret")
	if err != nil || got != "whsec_secret" || plain {
		t.Errorf("Open = %q, %v, %v", got, plain, err)
	}
	// Moved to another record or field, it does not open.
	for _, aad := range []string{"sub_2\x00secret", "sub_1\x00bearer_token"} {
		if _, _, err := k.Open(sealed, aad); !errors.Is(err, vault.ErrWrongKey) {
			t.Errorf("Open with aad %q = %v, want ErrWrongKey", aad, err)
		}
	}
	// A damaged value does not open.
	damaged := sealed[:len(sealed)-2] + "AA"
	if _, _, err := k.Open(damaged, "sub_1\x00secret"); err == nil {
		t.Error("a damaged value opened")
	}
	if k.Seal("", "x") != "" {
		t.Error("an empty value was sealed")
	}
	if got, plain, err := k.Open("legacy", "x"); got != "legacy" || !plain || err != nil {
		t.Errorf("Open(unsealed) = %q, %v, %v; want it as it is, plain", got, plain, err)
	}
}

func TestOpen_AWrongOrMissingKeyIsAClearError(t *testing.T) {
	sealed := keys(t, vault.NewKey("k1")).Seal("secret", "a")
	for name, k := range map[string]*vault.Keys{
		"another key of the same id": keys(t, vault.NewKey("k1")),
		"no key of its id":           keys(t, vault.NewKey("k2")),
	} {
		if _, _, err := k.Open(sealed, "a"); !errors.Is(err, vault.ErrWrongKey) || !strings.Contains(err.Error(), "k1") {
			t.Errorf("%s: %v, want ErrWrongKey naming k1", name, err)
		}
	}
}

func TestParseKeys_RefusesBadKeys(t *testing.T) {
	for _, specs := range [][]string{
		nil,
		{"nokey"},
		{"k1:c2hvcnQ="}, // 5 bytes
		{":" + strings.Split(vault.NewKey("x"), ":")[1]}, // no id
		{"k 1:" + strings.Split(vault.NewKey("x"), ":")[1]},
		{vault.NewKey("k1"), vault.NewKey("k1")},
	} {
		if _, err := vault.ParseKeys(specs); err == nil {
			t.Errorf("ParseKeys(%q) accepted", specs)
		}
	}
}

func subscription(id string) *store.Subscription {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return &store.Subscription{
		ID: id, Tenant: store.DefaultTenant, Sink: "https://example.com/hook", Protocol: "HTTP", State: store.SubscriptionActive,
		Secrets:     []store.Secret{{Key: "whsec_c2lnbmluZyBzZWNyZXQgb2YgdGhpcyB0ZXN0"}, {Key: "whsk_old-private-key", ExpiresAt: now.Add(time.Hour)}},
		BearerToken: "hbt_bearer-token-of-this-test",
		Headers:     map[string]string{"X-Api-Key": "header-credential-of-this-test"},
		CreatedAt:   now, UpdatedAt: now,
	}
}

func TestStore_KeepsSecretsSealedAndOpensThemForEveryReader(t *testing.T) {
	ctx := context.Background()
	raw, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	k1 := vault.NewKey("k1")
	s := vault.Wrap(raw, keys(t, k1))
	want := subscription("sub_1")
	secrets := []string{want.Secrets[0].Key, want.Secrets[1].Key, want.BearerToken, want.Headers["X-Api-Key"]}
	if err := s.SubscriptionInsert(ctx, want); err != nil {
		t.Fatal(err)
	}
	if want.Secrets[0].Key != secrets[0] || want.Headers["X-Api-Key"] != secrets[3] {
		t.Fatal("SubscriptionInsert changed the caller's subscription")
	}

	// The driver holds only sealed values.
	stored, err := raw.SubscriptionGet(ctx, "sub_1")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{stored.Secrets[0].Key, stored.Secrets[1].Key, stored.BearerToken, stored.Headers["X-Api-Key"]} {
		if !strings.HasPrefix(v, "enc:v1:k1:") {
			t.Errorf("stored value %q is not sealed", v)
		}
	}

	// Get, List and Update see them open.
	got, err := s.SubscriptionGet(ctx, "sub_1")
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.SubscriptionList(ctx, store.SubscriptionListParams{})
	if err != nil || len(list) != 1 {
		t.Fatal(list, err)
	}
	updated, err := s.SubscriptionUpdate(ctx, "sub_1", func(sub *store.Subscription) error {
		if sub.BearerToken != secrets[2] {
			t.Errorf("the change saw bearer token %q", sub.BearerToken)
		}
		sub.Headers["X-Other"] = "another-credential"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []*store.Subscription{got, list[0], updated} {
		if sub.Secrets[0].Key != secrets[0] || sub.Secrets[1].Key != secrets[1] || sub.BearerToken != secrets[2] || sub.Headers["X-Api-Key"] != secrets[3] {
			t.Errorf("read %+v, want its secrets open", sub)
		}
	}
	stored, _ = raw.SubscriptionGet(ctx, "sub_1")
	if !strings.HasPrefix(stored.Headers["X-Other"], "enc:v1:") {
		t.Errorf("a header added by an update is stored as %q", stored.Headers["X-Other"])
	}

	// Rotation: a new key first, the old one still opening; Reseal moves
	// every value to the new key, and then the old key can go.
	k2 := vault.NewKey("k2")
	rotated := vault.Wrap(raw, keys(t, k2, k1))
	if n, err := rotated.Reseal(ctx); err != nil || n != 1 {
		t.Fatalf("Reseal = %d, %v; want 1 subscription", n, err)
	}
	if n, err := rotated.Reseal(ctx); err != nil || n != 0 {
		t.Errorf("Reseal again = %d, %v; want nothing to do", n, err)
	}
	only2 := vault.Wrap(raw, keys(t, k2))
	if got, err := only2.SubscriptionGet(ctx, "sub_1"); err != nil || got.BearerToken != secrets[2] {
		t.Errorf("with only the new key: %v, %v", got, err)
	}
	// The old key alone no longer opens anything: a clear error, never
	// garbage.
	if _, err := vault.Wrap(raw, keys(t, k1)).SubscriptionList(ctx, store.SubscriptionListParams{}); !errors.Is(err, vault.ErrWrongKey) {
		t.Errorf("List with the retired key alone = %v, want ErrWrongKey", err)
	}
}

func TestReseal_SealsWhatWasStoredInTheClear(t *testing.T) {
	ctx := context.Background()
	raw, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if err := raw.SubscriptionInsert(ctx, subscription("sub_old")); err != nil {
		t.Fatal(err)
	}
	s := vault.Wrap(raw, keys(t, vault.NewKey("k1")))
	if got, err := s.SubscriptionGet(ctx, "sub_old"); err != nil || got.BearerToken != "hbt_bearer-token-of-this-test" {
		t.Fatalf("an unsealed subscription reads as %v, %v", got, err)
	}
	if n, err := s.Reseal(ctx); err != nil || n != 1 {
		t.Fatalf("Reseal = %d, %v", n, err)
	}
	stored, _ := raw.SubscriptionGet(ctx, "sub_old")
	if !strings.HasPrefix(stored.BearerToken, "enc:v1:k1:") || !strings.HasPrefix(stored.Secrets[0].Key, "enc:v1:k1:") {
		t.Errorf("after Reseal the store holds %+v", stored)
	}
}
