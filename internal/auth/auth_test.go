package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

func TestNewKey_IsAKeyAndNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := NewKey()
		if err := ParseKey(k); err != nil {
			t.Fatalf("ParseKey(NewKey() = %q) = %v", k, err)
		}
		if seen[k] {
			t.Fatalf("NewKey repeated %q", k)
		}
		seen[k] = true
	}
}

func TestParseKey_RefusesWhatIsNotAKey(t *testing.T) {
	good := NewKey()
	for _, s := range []string{
		"",
		"hk_",
		good[:len(good)-1],
		good + "A",
		"HK_" + good[3:],
		"hx_" + good[3:],
		good[:10] + "+" + good[11:], // standard base64, not URL-safe
		good[:10] + "=" + good[11:],
		good[:len(good)-1] + "B", // the last character carries bits beyond 256: not canonical
		strings.Repeat("a", len(good)),
		"Bearer " + good,
	} {
		if err := ParseKey(s); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("ParseKey(%q) = %v, want ErrUnauthenticated", s, err)
		}
	}
}

// FuzzParseKey: no input panics, and whatever parses hashes and hints
// without error and has the key's exact shape.
func FuzzParseKey(f *testing.F) {
	f.Add(NewKey())
	f.Add("hk_")
	f.Add("hk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("hk_////////////////////////////////////////////")
	f.Fuzz(func(t *testing.T, s string) {
		if ParseKey(s) != nil {
			return
		}
		if len(s) != 46 || !strings.HasPrefix(s, KeyPrefix) {
			t.Fatalf("ParseKey accepted %q", s)
		}
		if len(Hash(s)) != 64 || !strings.HasPrefix(s, Hint(s)) {
			t.Fatalf("hash or hint of %q", s)
		}
	})
}

// keys is a Store of API keys in memory.
type keys struct {
	mu      sync.Mutex
	version int64
	list    []*store.APIKey
}

func (k *keys) APIKeyList(context.Context) ([]*store.APIKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*store.APIKey(nil), k.list...), nil
}

func (k *keys) APIKeysVersion(context.Context) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.version, nil
}

func (k *keys) set(list ...*store.APIKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.list = list
	k.version++
}

func newKeyring(t *testing.T, s Store, cfg KeyringConfig) *Keyring {
	t.Helper()
	kr, err := NewKeyring(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestAuthenticate_KnowsStoredKeysTheAdminKeyAndNothingElse(t *testing.T) {
	now := time.Now()
	adminKey, stored, expired, unknown := NewKey(), NewKey(), NewKey(), NewKey()
	s := &keys{}
	s.set(
		&store.APIKey{ID: "key_1", Hash: Hash(stored), Scopes: []policy.Scope{policy.ScopePublish}, Tenant: "acme"},
		&store.APIKey{ID: "key_2", Hash: Hash(expired), Scopes: []policy.Scope{policy.ScopeAdmin}, ExpiresAt: now.Add(-time.Second)},
	)
	kr := newKeyring(t, s, KeyringConfig{AdminKey: adminKey})

	p, err := kr.Authenticate(adminKey, now)
	if err != nil || !p.Can(policy.ScopeKeysAdmin) || p.Tenant != "" {
		t.Errorf("admin key: %+v, %v; want every scope and no tenant", p, err)
	}
	p, err = kr.Authenticate(stored, now)
	if err != nil || p.KeyID != "key_1" || p.Tenant != "acme" || !p.Can(policy.ScopePublish) || p.Can(policy.ScopeSubscriptionsRead) {
		t.Errorf("stored key: %+v, %v; want key_1 of acme with publish only", p, err)
	}
	for name, k := range map[string]string{"expired": expired, "unknown": unknown, "malformed": "hk_nope", "empty": ""} {
		if p, err := kr.Authenticate(k, now); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s key: %+v, %v; want ErrUnauthenticated", name, p, err)
		}
	}

	// Revoked: gone after the next reload.
	s.set()
	if err := kr.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Authenticate(stored, now); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked key: %v, want ErrUnauthenticated", err)
	}
}

func TestNewKeyring_RefusesAnAdminKeyThatIsNotAKey(t *testing.T) {
	if _, err := NewKeyring(nil, KeyringConfig{AdminKey: "secret"}); err == nil {
		t.Error("NewKeyring accepted admin key \"secret\"")
	}
}

func TestCertificate_MapsSubjectsToKeysAndAdmins(t *testing.T) {
	s := &keys{}
	s.set(&store.APIKey{ID: "key_1", Hash: Hash(NewKey()), Scopes: []policy.Scope{policy.ScopeDeliveriesRead}, CertificateSubject: "billing"})
	kr := newKeyring(t, s, KeyringConfig{AdminSubjects: []string{"ops"}})
	if p, err := kr.Certificate("billing", time.Now()); err != nil || p.KeyID != "key_1" {
		t.Errorf("billing: %+v, %v; want key_1", p, err)
	}
	if p, err := kr.Certificate("ops", time.Now()); err != nil || !p.Can(policy.ScopeAdmin) {
		t.Errorf("ops: %+v, %v; want admin", p, err)
	}
	for _, subject := range []string{"", "intruder"} {
		if _, err := kr.Certificate(subject, time.Now()); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%q: %v, want ErrUnauthenticated", subject, err)
		}
	}
}

func TestPrincipal_ScopesAndTenants(t *testing.T) {
	tests := []struct {
		p      Principal
		scope  policy.Scope
		tenant string
		can    bool
		sees   bool
	}{
		{Principal{Scopes: []policy.Scope{policy.ScopeAdmin}}, policy.ScopeKeysAdmin, "acme", true, true},
		{Principal{Scopes: []policy.Scope{policy.ScopeAdmin}, Tenant: "acme"}, policy.ScopeDeliveriesWrite, "globex", true, false},
		{Principal{Scopes: []policy.Scope{policy.ScopeSubscriptionsRead}, Tenant: "acme"}, policy.ScopeSubscriptionsWrite, "acme", false, true},
		{Principal{Scopes: []policy.Scope{policy.ScopePublish}}, policy.Open, "", true, true},
		{Principal{}, policy.ScopePublish, "default", false, true},
	}
	for i, tt := range tests {
		if got := tt.p.Can(tt.scope); got != tt.can {
			t.Errorf("%d: Can(%s) = %v, want %v", i, tt.scope, got, tt.can)
		}
		if err := tt.p.Authorize(tt.scope); (err == nil) != tt.can || (err != nil && !errors.Is(err, ErrPermissionDenied)) {
			t.Errorf("%d: Authorize(%s) = %v", i, tt.scope, err)
		}
		if got := tt.p.Sees(tt.tenant); got != tt.sees {
			t.Errorf("%d: Sees(%s) = %v, want %v", i, tt.tenant, got, tt.sees)
		}
	}
}

func TestReservePublish_HoldsTheRateAndKeepsItAcrossReloads(t *testing.T) {
	secret := NewKey()
	s := &keys{}
	s.set(&store.APIKey{ID: "key_1", Hash: Hash(secret), Scopes: []policy.Scope{policy.ScopePublish}})
	kr := newKeyring(t, s, KeyringConfig{PublishRate: 10, PublishBurst: 20})
	p, err := kr.Authenticate(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, ok := p.ReservePublish(15, now); !ok {
		t.Fatal("15 events within a burst of 20 refused")
	}
	wait, ok := p.ReservePublish(10, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("10 more at once: wait %v, ok %v; want refused with a wait of up to 1 s", wait, ok)
	}
	// The refusal took nothing: 5 still fit.
	if _, ok := p.ReservePublish(5, now); !ok {
		t.Error("5 events refused after a refusal that should have taken none")
	}
	if _, ok := p.ReservePublish(21, now.Add(time.Hour)); ok {
		t.Error("21 events, more than the burst, accepted")
	}

	// A reload of unchanged keys keeps the bucket (now empty).
	s.set(&store.APIKey{ID: "key_1", Hash: Hash(secret), Scopes: []policy.Scope{policy.ScopePublish}}, &store.APIKey{ID: "key_2", Hash: Hash(NewKey())})
	if err := kr.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	p, _ = kr.Authenticate(secret, now)
	if _, ok := p.ReservePublish(5, now); ok {
		t.Error("a reload refilled the key's bucket")
	}

	// A key's own rate overrides the node's; the admin key is never bound.
	fast := NewKey()
	s.set(&store.APIKey{ID: "key_3", Hash: Hash(fast), Scopes: []policy.Scope{policy.ScopePublish}, PublishRate: 1000, PublishBurst: 1000})
	if err := kr.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	p, _ = kr.Authenticate(fast, now)
	if _, ok := p.ReservePublish(1000, now); !ok {
		t.Error("a key's own burst of 1000 refused 1000 events")
	}
	if _, ok := Open.ReservePublish(1_000_000, now); !ok {
		t.Error("the open principal is rate limited")
	}
}
