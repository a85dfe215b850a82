// Package id makes Herald's identifiers: a prefix and a time-ordered,
// random, URL-safe suffix.
package id

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"time"
)

// Prefixes of Herald's identifiers.
const (
	Subscription = "sub_"
	Delivery     = "dlv_"
	Message      = "msg_" // Standard Webhooks webhook-id
	APIKey       = "key_"
	Node         = "node_"
	Replay       = "rpl_"
)

// encoding is Crockford's base32 alphabet in lower case: it sorts in byte
// order and has no '.', so a suffix is safe in a webhook-id.
var encoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// New returns prefix followed by 26 characters: 48 bits of Unix
// milliseconds then 80 random bits. IDs made later sort after earlier ones
// (to the millisecond).
func New(prefix string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return prefix + encoding.EncodeToString(b[:])
}

// Lowest returns the smallest ID New could make with prefix at t: every
// ID made at or after t sorts at or after it.
func Lowest(prefix string, t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	return prefix + encoding.EncodeToString(b[:])
}

// WebhookID returns the Standard Webhooks message id of a delivery: the
// delivery id's suffix behind the msg_ prefix, so it is the same on every
// attempt and redrive.
func WebhookID(deliveryID string) string {
	return Message + strings.TrimPrefix(deliveryID, Delivery)
}
