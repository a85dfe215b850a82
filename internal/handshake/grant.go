package handshake

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ParseAllowedRate reads a WebHook-Allowed-Rate value: "*" (unlimited is
// true) or a positive integer of requests per minute, optionally surrounded
// by spaces or tabs. An empty value means the header is absent and returns
// (0, false, nil). Anything else, such as "0", "-5", "+5", "1.5" or a number
// that does not fit in an int, is an error.
func ParseAllowedRate(v string) (rate int, unlimited bool, err error) {
	v = strings.Trim(v, " \t")
	switch v {
	case "":
		return 0, false, nil
	case "*":
		return 0, true, nil
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false, fmt.Errorf("handshake: invalid %s %s: want \"*\" or a positive integer", HeaderAllowedRate, quote(v))
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, false, fmt.Errorf("handshake: invalid %s %s: out of range", HeaderAllowedRate, quote(v))
	}
	if n == 0 {
		return 0, false, fmt.Errorf("handshake: invalid %s %s: must be greater than zero", HeaderAllowedRate, quote(v))
	}
	return n, false, nil
}

// ParseGrant reads an asynchronous grant: the GET or POST request a sink
// sends to the WebHook-Request-Callback URL to consent after answering the
// OPTIONS request without WebHook-Allowed-Origin. requestedRate is the
// WebHook-Request-Rate that was asked for (0 if none).
//
// It returns the allowed rate in requests per minute, 0 meaning no limit:
// the WebHook-Allowed-Rate header if the grant carries one ("*" gives 0),
// otherwise requestedRate, since a grant without the header (a browser GET,
// say) consents to the rate that was asked for. It returns an error for
// another method or an invalid WebHook-Allowed-Rate.
//
// ParseGrant does not authenticate the grant: the caller must first check
// the secret it put in the callback URL.
func ParseGrant(r *http.Request, requestedRate int) (rate int, err error) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return 0, fmt.Errorf("handshake: a grant must be GET or POST, not %s", quote(r.Method))
	}
	rate, unlimited, err := ParseAllowedRate(r.Header.Get(HeaderAllowedRate))
	switch {
	case err != nil:
		return 0, err
	case unlimited:
		return 0, nil
	case rate == 0: // absent
		return requestedRate, nil
	}
	return rate, nil
}

// NewCallbackToken returns a random token for a callback URL and the hash
// (CallbackTokenHash) that is stored to check it.
func NewCallbackToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, CallbackTokenHash(token), nil
}

// CallbackTokenHash is how a callback token is stored and compared: its
// SHA-256, hex.
func CallbackTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
