package cehttp

import (
	"errors"
	"strings"
	"unicode/utf8"
)

const upperHex = "0123456789ABCDEF"

// mustEscape reports whether byte c is percent-encoded in a header value:
// space, double quote, percent, and every byte outside U+0021..U+007E
// (which covers every byte of a multi-byte UTF-8 sequence).
func mustEscape(c byte) bool {
	return c <= ' ' || c >= 0x7F || c == '"' || c == '%'
}

// EncodeHeaderValue percent-encodes s for use as a ce- header value, as the
// CloudEvents HTTP binding requires: space, '"', '%' and every character
// outside U+0021..U+007E become %XY for each of their UTF-8 bytes, with
// upper-case hex digits. A value that needs no encoding is returned as is,
// without allocating.
func EncodeHeaderValue(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEscape(c) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xF])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Errors returned by DecodeHeaderValue, wrapped with detail.
var (
	errQuotedString = errors.New("malformed quoted-string")
	errUTF8         = errors.New("not valid UTF-8")
)

// DecodeHeaderValue reverses EncodeHeaderValue as the CloudEvents HTTP
// binding requires of a receiver: an RFC 7230 quoted-string is unquoted
// first, then one round of percent-decoding is applied (upper- or
// lower-case hex). A '%' not followed by two hex digits is taken
// literally, so that senders which do not percent-encode interoperate
// where the value is unambiguous. It fails on a malformed quoted-string
// and on a result that is not valid UTF-8 (such as the overlong %C0%A0).
func DecodeHeaderValue(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		u, err := unquote(s)
		if err != nil {
			return "", err
		}
		s = u
	}
	i := strings.IndexByte(s, '%')
	if i < 0 {
		if !utf8.ValidString(s) {
			return "", errUTF8
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			b = append(b, c) // a bare '%' at the end
			continue
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			// A '%' that starts no escape is taken literally: senders
			// that do not percent-encode (sdk-go among them) send a
			// value such as "100% sure" as it is.
			b = append(b, c)
			continue
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	if !utf8.Valid(b) {
		return "", errUTF8
	}
	return string(b), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unquote reads s as one RFC 7230 quoted-string:
//
//	quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
//	qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
//	quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text )
func unquote(s string) (string, error) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", errQuotedString
	}
	inner := s[1 : len(s)-1]
	b := make([]byte, 0, len(inner))
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '\\':
			i++
			if i == len(inner) || !quotable(inner[i]) {
				return "", errQuotedString
			}
			b = append(b, inner[i])
		case c == '"' || !quotable(c):
			return "", errQuotedString
		default:
			b = append(b, c)
		}
	}
	return string(b), nil
}

// quotable reports whether c may appear in a quoted-string (as qdtext, or
// after a backslash): HTAB, SP, VCHAR or obs-text.
func quotable(c byte) bool {
	return c == '\t' || (c >= ' ' && c != 0x7F)
}
