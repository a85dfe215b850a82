// Package handshake asks a webhook sink for consent to deliveries: the sender
// side of the CloudEvents webhook validation handshake (OPTIONS with
// WebHook-Request-Origin).
//
// Validate sends one OPTIONS request to the sink and reads the answer. Consent
// is the WebHook-Allowed-Origin response header naming Herald's origin (or
// "*") on a 2xx response; the status code alone never grants anything. How a
// response is read:
//
//	3xx                    Refused: redirects are never followed
//	404, 405, 501          Refused: the sink does not implement the handshake
//	429, other 5xx         error (*StatusError): retry later
//	other non-2xx          Refused
//	2xx, Allow without POST                     Refused
//	2xx, no WebHook-Allowed-Origin, callback    Pending: the sink may grant later
//	2xx, no WebHook-Allowed-Origin, no callback Refused
//	2xx, WebHook-Allowed-Origin for another     Refused
//	2xx, invalid WebHook-Allowed-Rate           Refused
//	2xx, WebHook-Allowed-Origin ours or "*"     Granted
//
// A sink that grants later calls the callback URL (GET or POST); ParseGrant
// reads that request.
package handshake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/policy"
)

// Header names of the validation handshake.
const (
	HeaderRequestOrigin   = "WebHook-Request-Origin"
	HeaderRequestRate     = "WebHook-Request-Rate"
	HeaderRequestCallback = "WebHook-Request-Callback"
	HeaderAllowedOrigin   = "WebHook-Allowed-Origin"
	HeaderAllowedRate     = "WebHook-Allowed-Rate"
)

// ErrInvalidRequest is wrapped by the error Validate returns when the Request
// itself is unusable (no origin, a bad sink URL, a negative rate, a header
// that cannot be sent). Such an error is permanent: retrying cannot help.
var ErrInvalidRequest = errors.New("handshake: invalid request")

// Request is one validation request: whom to ask and what to ask for.
type Request struct {
	// Sink is the exact sink URL. The OPTIONS request goes to it, query
	// included. It must be an absolute http or https URL; whether plain
	// http is acceptable is the caller's policy.
	Sink string
	// Origin is sent as WebHook-Request-Origin: the DNS name of the sending
	// system. Required.
	Origin string
	// Rate is sent as WebHook-Request-Rate, in requests per minute. 0 means
	// not sent.
	Rate int
	// CallbackURL is sent as WebHook-Request-Callback, so the sink can grant
	// consent later. "" means not sent.
	CallbackURL string
	// Headers are extra static headers sent with the OPTIONS request, such
	// as Authorization. The handshake's own WebHook-Request-* headers win
	// over any of the same name here.
	Headers map[string]string
}

// Outcome is what the sink answered.
type Outcome int

// The zero Outcome is Refused, so an unset Result never reads as consent.
const (
	// Refused: no consent. Send nothing to the sink.
	Refused Outcome = iota
	// Pending: no consent yet, but a callback URL was offered and the sink
	// may still grant through it.
	Pending
	// Granted: the sink consents to deliveries from the origin.
	Granted
)

// String returns "refused", "pending" or "granted".
func (o Outcome) String() string {
	switch o {
	case Refused:
		return "refused"
	case Pending:
		return "pending"
	case Granted:
		return "granted"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is the sink's answer to a validation request.
type Result struct {
	Outcome Outcome
	// AllowedRate is the granted rate in requests per minute, read from
	// WebHook-Allowed-Rate. 0 means no limit: "*", or the header absent
	// when no rate was requested. When a rate was requested and the header
	// is absent, the grant is taken to be for the requested rate (the spec
	// requires the header then; Herald is lenient and says so in Reason).
	// A sink may grant more than was requested; the caller decides whether
	// to use it.
	AllowedRate int
	// StatusCode is the HTTP status of the OPTIONS response.
	StatusCode int
	// Reason explains the outcome for people, e.g.
	// "WebHook-Allowed-Origin missing".
	Reason string
}

// StatusError is the error Validate returns when the sink answers 429 or a
// 5xx other than 501: a temporary failure, to be retried no sooner than
// RetryAfter (0 when the sink did not say).
type StatusError struct {
	StatusCode int
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("handshake: sink answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Client sends validation requests. It is safe for concurrent use.
type Client struct {
	hc *http.Client
}

// NewClient returns a Client that sends with a copy of hc whose redirects are
// never followed, whatever hc's CheckRedirect says. If hc is nil it uses a
// client with a 15 s timeout (policy.RequestTimeout).
func NewClient(hc *http.Client) *Client {
	var c http.Client
	if hc != nil {
		c = *hc
	} else {
		c.Timeout = policy.RequestTimeout
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{hc: &c}
}

// maxDrain is how much of a response body is read, and thrown away, so that
// the connection can be reused.
const maxDrain = 64 << 10

// Validate asks the sink in r for consent with an OPTIONS request.
//
// Protocol outcomes, refusals included, are in the Result and come with a
// nil error. The error is non-nil when no answer was read: a transport
// failure or timeout, or a 429 or 5xx (*StatusError); all of those are worth
// retrying. The one exception is an error wrapping ErrInvalidRequest, which
// is permanent and means no request was sent.
func (c *Client) Validate(ctx context.Context, r Request) (Result, error) {
	req, err := newRequest(ctx, r)
	if err != nil {
		return Result{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The sink's query may carry an access_token: keep it out of errors.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			ue.URL = redact(req.URL)
		}
		return Result{}, fmt.Errorf("handshake: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))

	return read(resp, r)
}

// newRequest checks r and builds its OPTIONS request.
func newRequest(ctx context.Context, r Request) (*http.Request, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(r.Origin) == "" {
		return nil, invalid("Origin is required")
	}
	if !validHeaderValue(r.Origin) {
		return nil, invalid("Origin %q cannot be sent as a header", r.Origin)
	}
	if r.Rate < 0 {
		return nil, invalid("Rate %d is negative", r.Rate)
	}
	u, err := url.Parse(r.Sink)
	if err != nil {
		return nil, invalid("Sink is not a valid URL") // the error would repeat its query
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalid("Sink %q is not an absolute http or https URL", redact(u))
	}
	if r.CallbackURL != "" {
		cu, err := url.Parse(r.CallbackURL)
		if err != nil || !cu.IsAbs() || cu.Host == "" || !validHeaderValue(r.CallbackURL) {
			return nil, invalid("CallbackURL is not an absolute URL")
		}
	}
	for name, value := range r.Headers {
		if !validHeaderName(name) {
			return nil, invalid("header name %q is not a valid token", name)
		}
		if !validHeaderValue(value) {
			return nil, invalid("header %s has a value that cannot be sent", name)
		}
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, r.Sink, nil)
	if err != nil {
		return nil, invalid("%v", err)
	}
	for name, value := range r.Headers {
		req.Header.Set(name, value)
	}
	req.Header.Set(HeaderRequestOrigin, r.Origin)
	req.Header.Del(HeaderRequestRate)
	req.Header.Del(HeaderRequestCallback)
	if r.Rate > 0 {
		req.Header.Set(HeaderRequestRate, strconv.Itoa(r.Rate))
	}
	if r.CallbackURL != "" {
		req.Header.Set(HeaderRequestCallback, r.CallbackURL)
	}
	return req, nil
}

// read turns the sink's response into a Result, or an error for statuses
// worth retrying.
func read(resp *http.Response, r Request) (Result, error) {
	code := resp.StatusCode
	res := Result{Outcome: Refused, StatusCode: code}
	status := strconv.Itoa(code) + " " + http.StatusText(code)

	switch {
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed || code == http.StatusNotImplemented:
		res.Reason = status + ": the sink does not implement the handshake"
		return res, nil
	case code == http.StatusTooManyRequests || code >= 500:
		return res, &StatusError{
			StatusCode: code,
			RetryAfter: policy.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	case code >= 300 && code < 400:
		res.Reason = status + ": redirects are not followed"
		if loc := resp.Header.Get("Location"); loc != "" {
			res.Reason += " (Location " + quote(loc) + ")"
		}
		return res, nil
	case code < 200 || code >= 300:
		res.Reason = status + ": the sink refused the handshake"
		return res, nil
	}

	if allow, ok := resp.Header["Allow"]; ok && !allowsPost(allow) {
		res.Reason = "Allow header " + quote(strings.Join(allow, ", ")) + " does not include POST"
		return res, nil
	}

	origins := nonEmpty(resp.Header.Values(HeaderAllowedOrigin))
	switch {
	case len(origins) == 0 && r.CallbackURL != "":
		res.Outcome = Pending
		res.Reason = HeaderAllowedOrigin + " missing: waiting for a grant through the callback URL"
		return res, nil
	case len(origins) == 0:
		res.Reason = HeaderAllowedOrigin + " missing"
		return res, nil
	case len(origins) > 1:
		res.Reason = "several " + HeaderAllowedOrigin + " values: " + quote(strings.Join(origins, ", "))
		return res, nil
	case origins[0] != "*" && !sameHost(origins[0], r.Origin):
		res.Reason = HeaderAllowedOrigin + " " + quote(origins[0]) + " is for another origin than " + quote(r.Origin)
		return res, nil
	}

	rateValue := resp.Header.Get(HeaderAllowedRate)
	rate, unlimited, err := ParseAllowedRate(rateValue)
	if err != nil {
		res.Reason = "invalid " + HeaderAllowedRate + " " + quote(rateValue)
		return res, nil
	}

	res.Outcome = Granted
	res.Reason = "granted to " + quote(origins[0])
	switch {
	case unlimited:
		res.Reason += " with no rate limit"
	case rate > 0:
		res.AllowedRate = rate
		res.Reason += fmt.Sprintf(" at %d requests per minute", rate)
	case r.Rate > 0:
		// The spec requires WebHook-Allowed-Rate when a rate was requested.
		// Leniently read its absence as consent to the requested rate.
		res.AllowedRate = r.Rate
		res.Reason += fmt.Sprintf("; %s missing although %d requests per minute were requested: assuming the requested rate", HeaderAllowedRate, r.Rate)
	default:
		res.Reason += " with no rate limit given"
	}
	return res, nil
}

// allowsPost reports whether the Allow header values list POST.
func allowsPost(values []string) bool {
	for _, v := range values {
		for m := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(m), http.MethodPost) {
				return true
			}
		}
	}
	return false
}

// nonEmpty returns the values that are not blank, trimmed.
func nonEmpty(values []string) []string {
	var out []string
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// sameHost reports whether two DNS names are equal: case-insensitively, and
// ignoring one trailing dot (the root).
func sameHost(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(strings.TrimSpace(b), "."))
}

// quote quotes a value read from the sink for a Reason, cut to a length that
// is fit for logs.
func quote(s string) string {
	const maxLen = 128
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}

// redact returns u without its query and user info, which may carry secrets.
func redact(u *url.URL) string {
	v := *u
	v.User = nil
	if v.RawQuery != "" {
		v.RawQuery = "..."
	}
	v.Fragment = ""
	return v.String()
}

// validHeaderName reports whether s is an HTTP token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be sent as a header value: no
// control characters other than horizontal tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7F {
			return false
		}
	}
	return true
}
