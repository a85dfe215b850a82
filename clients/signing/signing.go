// Package signing signs and verifies webhooks per Standard Webhooks.
//
// Two schemes are supported: v1, HMAC-SHA256 with a symmetric secret
// ("whsec_" + base64), and v1a, Ed25519 with a private signing key
// ("whsk_" + base64) and its public verification key ("whpk_" + base64).
// Both sign the bytes "<webhook-id>.<webhook-timestamp>.<body>".
package signing

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Key prefixes.
const (
	SecretPrefix     = "whsec_" // v1 HMAC-SHA256 secret
	SigningKeyPrefix = "whsk_"  // v1a Ed25519 private key
	PublicKeyPrefix  = "whpk_"  // v1a Ed25519 public key
)

// Header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Secret sizes allowed by the specification, in bytes.
const (
	MinSecretSize = 24
	MaxSecretSize = 64
)

// DefaultTolerance is how far a webhook-timestamp may be from the
// verifier's clock, in either direction.
const DefaultTolerance = 5 * time.Minute

// Errors returned (wrapped) by Verifier.Verify.
var (
	ErrMissingHeader       = errors.New("signing: missing webhook header")
	ErrInvalidTimestamp    = errors.New("signing: invalid webhook-timestamp")
	ErrTimestampOutOfRange = errors.New("signing: webhook-timestamp outside tolerance")
	ErrNoMatchingSignature = errors.New("signing: no matching signature")
)

var b64 = base64.StdEncoding

// NewSecret returns a new v1 secret: "whsec_" and the base64 of 32 random
// bytes.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return SecretPrefix + b64.EncodeToString(b[:])
}

// NewSigningKey returns a new v1a key pair: the "whsk_" signing key and
// its "whpk_" public key.
func NewSigningKey() (signingKey, publicKey string) {
	pub, priv, _ := ed25519.GenerateKey(nil) // never fails (crypto/rand)
	return SigningKeyPrefix + b64.EncodeToString(priv), PublicKeyPrefix + b64.EncodeToString(pub)
}

// PublicKey returns the "whpk_" public key of a "whsk_" signing key.
func PublicKey(signingKey string) (string, error) {
	if !strings.HasPrefix(signingKey, SigningKeyPrefix) {
		return "", errors.New("signing: not a whsk_ signing key")
	}
	b, err := decodeEd25519(signingKey, SigningKeyPrefix, ed25519.PrivateKeySize, "signing key")
	if err != nil {
		return "", err
	}
	pub := ed25519.PrivateKey(b).Public().(ed25519.PublicKey)
	return PublicKeyPrefix + b64.EncodeToString(pub), nil
}

// decodeEd25519 decodes an Ed25519 key: prefix, then base64 of size bytes.
func decodeEd25519(key, prefix string, size int, what string) ([]byte, error) {
	raw, err := b64.DecodeString(key[len(prefix):])
	if err != nil {
		return nil, fmt.Errorf("signing: %s is not base64: %w", what, err)
	}
	if len(raw) != size {
		return nil, fmt.Errorf("signing: %s is %d bytes, want %d", what, len(raw), size)
	}
	return raw, nil
}

// hmacKey is one v1 secret, with a pool of keyed HMAC states so that
// signing does not re-derive the key pads each time.
type hmacKey struct {
	key  []byte
	pool sync.Pool // of hash.Hash
}

func newHMACKey(key []byte) *hmacKey {
	k := &hmacKey{key: key}
	k.pool.New = func() any { return hmac.New(sha256.New, k.key) }
	return k
}

// sum appends the v1 MAC of msgID.ts.body to dst.
func (k *hmacKey) sum(dst []byte, msgID string, ts []byte, body []byte) []byte {
	h := k.pool.Get().(hash.Hash)
	h.Reset()
	var sep = [1]byte{'.'}
	h.Write([]byte(msgID))
	h.Write(sep[:])
	h.Write(ts)
	h.Write(sep[:])
	h.Write(body)
	dst = h.Sum(dst)
	k.pool.Put(h)
	return dst
}

func decodeSecret(s string) (*hmacKey, error) {
	raw, err := b64.DecodeString(strings.TrimPrefix(s, SecretPrefix))
	if err != nil {
		return nil, fmt.Errorf("signing: secret is not base64: %w", err)
	}
	if len(raw) < MinSecretSize || len(raw) > MaxSecretSize {
		return nil, fmt.Errorf("signing: secret is %d bytes, want %d to %d", len(raw), MinSecretSize, MaxSecretSize)
	}
	return newHMACKey(raw), nil
}

// Signer signs webhooks with one or more keys. It is safe for concurrent
// use.
type Signer struct {
	hmacKeys []*hmacKey
	edKeys   []ed25519.PrivateKey
}

// NewSigner returns a Signer for the given keys: "whsec_" secrets (v1) and
// "whsk_" signing keys (v1a). During a rotation pass both the new and the
// old keys: Sign then emits one signature per key. At least one key is
// required.
func NewSigner(keys ...string) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("signing: no keys")
	}
	s := &Signer{}
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, SecretPrefix):
			hk, err := decodeSecret(k)
			if err != nil {
				return nil, err
			}
			s.hmacKeys = append(s.hmacKeys, hk)
		case strings.HasPrefix(k, SigningKeyPrefix):
			raw, err := decodeEd25519(k, SigningKeyPrefix, ed25519.PrivateKeySize, "signing key")
			if err != nil {
				return nil, err
			}
			s.edKeys = append(s.edKeys, ed25519.PrivateKey(raw))
		default:
			return nil, fmt.Errorf("signing: key must start with %q or %q", SecretPrefix, SigningKeyPrefix)
		}
	}
	return s, nil
}

// Sign returns the webhook-signature header value for a message: one
// "v1,<base64>" or "v1a,<base64>" entry per key, separated by spaces. ts is
// truncated to Unix seconds, as sent in webhook-timestamp. msgID must not
// contain '.'.
func (s *Signer) Sign(msgID string, ts time.Time, body []byte) string {
	var tsBuf [20]byte
	tsb := strconv.AppendInt(tsBuf[:0], ts.Unix(), 10)

	size := len(s.hmacKeys)*(3+b64.EncodedLen(sha256.Size)+1) + len(s.edKeys)*(4+b64.EncodedLen(ed25519.SignatureSize)+1)
	out := make([]byte, 0, size)
	var mac [sha256.Size]byte
	for _, k := range s.hmacKeys {
		if len(out) > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1,"...)
		out = b64.AppendEncode(out, k.sum(mac[:0], msgID, tsb, body))
	}
	if len(s.edKeys) > 0 {
		msg := signedContent(msgID, tsb, body)
		for _, k := range s.edKeys {
			if len(out) > 0 {
				out = append(out, ' ')
			}
			out = append(out, "v1a,"...)
			out = b64.AppendEncode(out, ed25519.Sign(k, msg))
		}
	}
	return string(out)
}

func signedContent(msgID string, ts, body []byte) []byte {
	msg := make([]byte, 0, len(msgID)+len(ts)+len(body)+2)
	msg = append(msg, msgID...)
	msg = append(msg, '.')
	msg = append(msg, ts...)
	msg = append(msg, '.')
	return append(msg, body...)
}

// Verifier checks webhook signatures. It is safe for concurrent use once
// its fields are set.
type Verifier struct {
	// Tolerance is how far webhook-timestamp may be from now, in either
	// direction; zero or negative means DefaultTolerance.
	Tolerance time.Duration

	hmacKeys []*hmacKey
	edKeys   []ed25519.PublicKey
}

// NewVerifier returns a Verifier that accepts a signature made with any of
// the given keys: "whsec_" secrets (v1) and "whpk_" public keys (v1a).
func NewVerifier(keys ...string) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("signing: no keys")
	}
	v := &Verifier{Tolerance: DefaultTolerance}
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, SecretPrefix):
			hk, err := decodeSecret(k)
			if err != nil {
				return nil, err
			}
			v.hmacKeys = append(v.hmacKeys, hk)
		case strings.HasPrefix(k, PublicKeyPrefix):
			raw, err := decodeEd25519(k, PublicKeyPrefix, ed25519.PublicKeySize, "public key")
			if err != nil {
				return nil, err
			}
			v.edKeys = append(v.edKeys, ed25519.PublicKey(raw))
		default:
			return nil, fmt.Errorf("signing: key must start with %q or %q", SecretPrefix, PublicKeyPrefix)
		}
	}
	return v, nil
}

// Verify checks the webhook-id, webhook-timestamp and webhook-signature
// headers in h against body. It fails unless the timestamp is within the
// tolerance of now and at least one signature matches one of the keys.
// Signatures of unknown versions are ignored; comparisons are constant
// time.
func (v *Verifier) Verify(h http.Header, body []byte, now time.Time) error {
	msgID := h.Get(HeaderID)
	tsStr := h.Get(HeaderTimestamp)
	sigs := h.Get(HeaderSignature)
	switch {
	case msgID == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderID)
	case tsStr == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderTimestamp)
	case sigs == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderSignature)
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTimestamp, tsStr)
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	// Compare in seconds, the timestamp's resolution, without overflow.
	tolSecs := int64(tol / time.Second)
	if nowSecs := now.Unix(); ts < nowSecs-tolSecs || ts > nowSecs+tolSecs {
		return fmt.Errorf("%w: %d is more than %v from %d", ErrTimestampOutOfRange, ts, tol, nowSecs)
	}

	tsb := []byte(tsStr)
	var macs [][]byte // computed on first use
	var msg []byte
	// Room for the largest signature we accept plus base64's slack.
	var sig [ed25519.SignatureSize + 3]byte
	for entry := range strings.FieldsSeq(sigs) {
		version, encoded, ok := strings.Cut(entry, ",")
		if !ok {
			continue
		}
		switch version {
		case "v1":
			if len(v.hmacKeys) == 0 || b64.DecodedLen(len(encoded)) > len(sig) {
				continue
			}
			n, err := b64.Decode(sig[:], []byte(encoded))
			if err != nil || n != sha256.Size {
				continue
			}
			if macs == nil {
				macs = make([][]byte, len(v.hmacKeys))
				for i, k := range v.hmacKeys {
					macs[i] = k.sum(nil, msgID, tsb, body)
				}
			}
			for _, mac := range macs {
				if hmac.Equal(mac, sig[:n]) {
					return nil
				}
			}
		case "v1a":
			if len(v.edKeys) == 0 || b64.DecodedLen(len(encoded)) > len(sig) {
				continue
			}
			n, err := b64.Decode(sig[:], []byte(encoded))
			if err != nil || n != ed25519.SignatureSize {
				continue
			}
			if msg == nil {
				msg = signedContent(msgID, tsb, body)
			}
			for _, k := range v.edKeys {
				if ed25519.Verify(k, msg, sig[:n]) {
					return nil
				}
			}
		}
	}
	return ErrNoMatchingSignature
}
