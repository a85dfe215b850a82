package auth

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

// Store is what a Keyring reads.
type Store interface {
	APIKeyList(ctx context.Context) ([]*store.APIKey, error)
	APIKeysVersion(ctx context.Context) (int64, error)
}

// KeyringConfig configures a Keyring.
type KeyringConfig struct {
	// AdminKey, if set, is a key with the admin scope that is never
	// stored (--admin-key).
	AdminKey string
	// AdminSubjects are client certificate subject common names that hold
	// the admin scope (--tls-client-admins).
	AdminSubjects []string
	// PublishRate (events per second) and PublishBurst bound what each
	// stored key publishes on this node unless the key says otherwise;
	// a zero PublishRate: no bound. The admin key is never bound.
	PublishRate  float64
	PublishBurst int
	Logger       *slog.Logger
}

// Keyring knows every API key and tells who a call runs as. It reloads
// the stored keys when they change (Run), so that a key made or revoked
// on one node holds on every node within the reload interval. Safe for
// concurrent use.
type Keyring struct {
	store Store
	cfg   KeyringConfig
	admin string // the admin key's hash, or ""
	keys  atomic.Pointer[keySnapshot]
	mu    sync.Mutex // serialises reloads
}

type keySnapshot struct {
	version   int64
	byHash    map[string]*Principal
	bySubject map[string]*Principal
	expires   map[*Principal]time.Time
}

// NewKeyring returns a keyring over s (nil: only the admin key and
// subjects). Call Reload before use.
func NewKeyring(s Store, cfg KeyringConfig) (*Keyring, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Keyring{store: s, cfg: cfg}
	if cfg.AdminKey != "" {
		if err := ParseKey(cfg.AdminKey); err != nil {
			return nil, fmt.Errorf("admin key: not an API key (want %s and 43 base64url characters; make one with `herald keys new`)", KeyPrefix)
		}
		k.admin = Hash(cfg.AdminKey)
	}
	if cfg.PublishRate < 0 || math.IsNaN(cfg.PublishRate) || math.IsInf(cfg.PublishRate, 0) || cfg.PublishBurst < 0 {
		return nil, fmt.Errorf("publish rate and burst must be finite and not negative")
	}
	snap := &keySnapshot{version: -1, byHash: map[string]*Principal{}, bySubject: map[string]*Principal{}, expires: map[*Principal]time.Time{}}
	k.addSubjects(snap)
	k.keys.Store(snap)
	return k, nil
}

var admin = &Principal{KeyID: "admin", Name: "admin key", Scopes: []policy.Scope{policy.ScopeAdmin}}

func (k *Keyring) addSubjects(snap *keySnapshot) {
	for _, s := range k.cfg.AdminSubjects {
		snap.bySubject[s] = &Principal{KeyID: "admin", Name: "client certificate " + s, Scopes: []policy.Scope{policy.ScopeAdmin}}
	}
}

// Reload reads the stored keys if they changed since the last load. A
// key's publish rate keeps its state across reloads.
func (k *Keyring) Reload(ctx context.Context) error {
	if k.store == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	v, err := k.store.APIKeysVersion(ctx)
	if err != nil {
		return fmt.Errorf("keyring: read version: %w", err)
	}
	old := k.keys.Load()
	if v == old.version {
		return nil
	}
	keys, err := k.store.APIKeyList(ctx)
	if err != nil {
		return fmt.Errorf("keyring: list keys: %w", err)
	}
	limiters := make(map[string]*rate.Limiter, len(old.byHash))
	for _, p := range old.byHash {
		limiters[p.KeyID] = p.limiter
	}
	snap := &keySnapshot{version: v, byHash: make(map[string]*Principal, len(keys)), bySubject: map[string]*Principal{}, expires: map[*Principal]time.Time{}}
	for _, sk := range keys {
		p := &Principal{KeyID: sk.ID, Name: sk.DisplayName, Scopes: sk.Scopes, Tenant: sk.Tenant}
		r, burst := sk.PublishRate, sk.PublishBurst
		if r == 0 {
			r = k.cfg.PublishRate
		}
		if burst == 0 {
			burst = max(k.cfg.PublishBurst, int(math.Ceil(r)))
		}
		if r > 0 {
			if l := limiters[sk.ID]; l != nil && float64(l.Limit()) == r && l.Burst() == burst {
				p.limiter = l
			} else {
				p.limiter = rate.NewLimiter(rate.Limit(r), burst)
			}
		}
		snap.byHash[sk.Hash] = p
		if sk.CertificateSubject != "" {
			snap.bySubject[sk.CertificateSubject] = p
		}
		if !sk.ExpiresAt.IsZero() {
			snap.expires[p] = sk.ExpiresAt
		}
	}
	k.addSubjects(snap)
	k.keys.Store(snap)
	return nil
}

// Run reloads the keys every interval until ctx is done.
func (k *Keyring) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.Reload(ctx); err != nil && ctx.Err() == nil {
				k.cfg.Logger.Warn("API key reload failed", "err", err)
			}
		}
	}
}

// Authenticate returns the principal of a bearer key, or
// ErrUnauthenticated for a malformed, unknown or expired one.
func (k *Keyring) Authenticate(secret string, now time.Time) (*Principal, error) {
	if ParseKey(secret) != nil {
		return nil, ErrUnauthenticated
	}
	h := Hash(secret)
	if k.admin != "" && equalHash(h, k.admin) {
		return admin, nil
	}
	snap := k.keys.Load()
	p, ok := snap.byHash[h] // h is a hash of a full-entropy secret: its lookup reveals nothing
	if !ok {
		return nil, ErrUnauthenticated
	}
	if exp, ok := snap.expires[p]; ok && !now.Before(exp) {
		return nil, ErrUnauthenticated
	}
	return p, nil
}

// Certificate returns the principal a verified client certificate with
// this subject common name stands for, or ErrUnauthenticated.
func (k *Keyring) Certificate(subject string, now time.Time) (*Principal, error) {
	if subject == "" {
		return nil, ErrUnauthenticated
	}
	snap := k.keys.Load()
	p, ok := snap.bySubject[subject]
	if !ok {
		return nil, ErrUnauthenticated
	}
	if exp, ok := snap.expires[p]; ok && !now.Before(exp) {
		return nil, ErrUnauthenticated
	}
	return p, nil
}
