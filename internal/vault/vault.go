// Package vault keeps the secrets Herald stores encrypted: it seals
// signing keys, bearer tokens and header values with AES-256-GCM, and
// wraps a store so that every driver only ever holds them sealed.
package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// sealedPrefix starts every sealed value: "enc:v1:<key id>:<base64url of
// nonce and ciphertext>".
const sealedPrefix = "enc:v1:"

// KeySize is an encryption key's size: AES-256.
const KeySize = 32

// Keys are the encryption keys: the first seals, every one opens, so a
// key can be rotated (Reseal).
type Keys struct {
	ids   []string
	aeads map[string]cipher.AEAD
}

// ErrWrongKey is returned for a sealed value no configured key opens.
var ErrWrongKey = errors.New("vault: no configured encryption key opens it")

// ParseKeys reads keys given as "id:base64" (standard or URL base64 of
// KeySize bytes), the first one sealing.
func ParseKeys(specs []string) (*Keys, error) {
	if len(specs) == 0 {
		return nil, errors.New("vault: no encryption key")
	}
	k := &Keys{aeads: make(map[string]cipher.AEAD, len(specs))}
	for _, spec := range specs {
		id, b64, ok := strings.Cut(strings.TrimSpace(spec), ":")
		if !ok || !validID(id) {
			return nil, errors.New("vault: an encryption key is \"id:base64\", the id 1 to 32 letters, digits, '-' or '_'")
		}
		raw, err := decodeKey(b64)
		if err != nil || len(raw) != KeySize {
			return nil, fmt.Errorf("vault: encryption key %s: want %d bytes in base64", id, KeySize)
		}
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("vault: encryption key id %s given twice", id)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("vault: encryption key %s: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("vault: encryption key %s: %w", id, err)
		}
		k.ids = append(k.ids, id)
		k.aeads[id] = aead
	}
	return k, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

func validID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NewKey returns a new key spec "id:base64" with fresh random bytes.
func NewKey(id string) string {
	var b [KeySize]byte
	_, _ = rand.Read(b[:])
	return id + ":" + base64.StdEncoding.EncodeToString(b[:])
}

// Current is the id of the key that seals.
func (k *Keys) Current() string { return k.ids[0] }

// Seal encrypts plaintext bound to aad (the record and field it belongs
// to, so that a sealed value moved to another record does not open).
// The empty string stays empty.
func (k *Keys) Seal(plaintext, aad string) string {
	if plaintext == "" {
		return ""
	}
	id := k.ids[0]
	aead := k.aeads[id]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), []byte(aad))
	return sealedPrefix + id + ":" + base64.RawURLEncoding.EncodeToString(sealed)
}

// Open decrypts a value Seal made with the same aad. A value that is not
// sealed (stored before encryption) is returned as it is, with plain set.
func (k *Keys) Open(value, aad string) (plaintext string, plain bool, err error) {
	id, ok := keyID(value)
	if !ok {
		return value, value != "", nil
	}
	aead, ok := k.aeads[id]
	if !ok {
		return "", false, fmt.Errorf("%w (sealed with key %s, which is not configured)", ErrWrongKey, id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(value[len(sealedPrefix)+len(id)+1:])
	if err != nil || len(raw) < aead.NonceSize() {
		return "", false, errors.New("vault: a sealed value is damaged")
	}
	out, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(aad))
	if err != nil {
		return "", false, fmt.Errorf("%w (key %s does not open it: a wrong key, or a damaged value)", ErrWrongKey, id)
	}
	return string(out), false, nil
}

// keyID returns the id of the key that sealed value, if it is sealed.
func keyID(value string) (string, bool) {
	rest, ok := strings.CutPrefix(value, sealedPrefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ":")
	return id, ok
}

// Stale reports whether value should be sealed again: it is not empty
// and not sealed with the current key.
func (k *Keys) Stale(value string) bool {
	if value == "" {
		return false
	}
	id, ok := keyID(value)
	return !ok || id != k.ids[0]
}
