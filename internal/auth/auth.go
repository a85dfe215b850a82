// Package auth says who is calling Herald and what they may do: API keys
// (made, parsed and checked), the principal a call runs as, its scopes
// and tenant, and each key's publish rate.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/internal/policy"
)

// Errors of Authenticate and Authorize. They say nothing that would help
// someone guessing keys: a malformed, unknown, revoked or expired key is
// the same ErrUnauthenticated.
var (
	ErrUnauthenticated  = errors.New("a valid API key is required")
	ErrPermissionDenied = errors.New("the API key does not allow this")
)

// KeyPrefix starts every API key, so that secret scanners can find leaked
// ones.
const KeyPrefix = "hk_"

// keyBytes is a key's randomness: 256 bits.
const keyBytes = 32

// keyLen is the length of a key: the prefix and 43 base64url characters.
var keyLen = len(KeyPrefix) + base64.RawURLEncoding.EncodedLen(keyBytes)

// NewKey returns a new API key secret ("hk_" and 256 random bits).
func NewKey() string {
	var b [keyBytes]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseKey checks that s is shaped like an API key: the prefix and 43
// base64url characters that decode to 256 bits.
func ParseKey(s string) error {
	if len(s) != keyLen || !strings.HasPrefix(s, KeyPrefix) {
		return ErrUnauthenticated
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s[len(KeyPrefix):])
	if err != nil || len(b) != keyBytes {
		return ErrUnauthenticated
	}
	return nil
}

// Hash returns what is stored of a key: the hex SHA-256 of its secret.
// Keys have full entropy, so a slow KDF would add nothing.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Hint is the first characters of a key, enough to tell keys apart and
// nowhere near enough to guess one.
func Hint(secret string) string {
	const n = len(KeyPrefix) + 4
	if len(secret) < n {
		return secret
	}
	return secret[:n]
}

// Principal is who a call runs as.
type Principal struct {
	// KeyID is the key's ID, "admin" for the bootstrap admin key, or
	// "open" when the node authenticates nobody (dev mode).
	KeyID string
	// Name is the key's display name, for logs.
	Name   string
	Scopes []policy.Scope
	// Tenant, if set, is the only tenant the principal sees and changes.
	Tenant string
	// limiter bounds what the principal publishes; nil: no bound.
	limiter *rate.Limiter
}

// Open is the principal of every call on a node that authenticates
// nobody: it holds every scope and no tenant.
var Open = &Principal{KeyID: "open", Name: "unauthenticated (open node)", Scopes: []policy.Scope{policy.ScopeAdmin}}

// Can reports whether p holds scope (or admin).
func (p *Principal) Can(scope policy.Scope) bool {
	return policy.Grants(p.Scopes, scope)
}

// Authorize returns ErrPermissionDenied unless p holds scope.
func (p *Principal) Authorize(scope policy.Scope) error {
	if !p.Can(scope) {
		return ErrPermissionDenied
	}
	return nil
}

// Sees reports whether p may see and change what belongs to tenant.
func (p *Principal) Sees(tenant string) bool {
	return p.Tenant == "" || p.Tenant == tenant
}

// ReservePublish takes n events from p's publish rate, and returns how
// long to wait before trying again when there is not room for them now
// (nothing is taken then).
func (p *Principal) ReservePublish(n int, now time.Time) (retryAfter time.Duration, ok bool) {
	if p.limiter == nil || n == 0 {
		return 0, true
	}
	if n > p.limiter.Burst() {
		// Never possible: say so with the longest sensible wait.
		return time.Duration(float64(n) / float64(p.limiter.Limit()) * float64(time.Second)), false
	}
	r := p.limiter.ReserveN(now, n)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal ctx carries. A context without one
// (a call from inside Herald) runs as Open.
func FromContext(ctx context.Context) *Principal {
	if p, ok := ctx.Value(principalKey{}).(*Principal); ok {
		return p
	}
	return Open
}

// equalHash compares two hex hashes in constant time.
func equalHash(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
