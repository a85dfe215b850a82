// Package delivery builds, signs and sends one webhook request and reports
// what happened.
//
// A Sender makes exactly one HTTP attempt per Send: it never follows
// redirects and never retries (retries belong to the delivery workflow).
// The request is a POST of the event in CloudEvents binary mode (or
// structured or batched mode), signed per Standard Webhooks. An event
// without data is sent in structured mode whatever the subscription's
// mode, since a webhook request must carry a payload.
package delivery

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/signing"
	"github.com/heraldhq/herald/internal/egress"
	"github.com/heraldhq/herald/internal/policy"
)

// DefaultUserAgent is the User-Agent of every delivery request unless
// WithUserAgent says otherwise.
const DefaultUserAgent = "Herald/1"

// ErrInvalidRequest is returned (wrapped, in Result.Err) when the request
// could not be built: a bad webhook id, sink, mode or event. Retrying
// cannot help; Result.Outcome reports it as policy.Permanent.
var ErrInvalidRequest = errors.New("delivery: invalid request")

// Request is one webhook delivery attempt to make.
type Request struct {
	WebhookID string // "msg_..."; never contains '.'
	Event     *event.Event
	// Batch, in policy.ContentBatched mode, holds the events to send in one
	// request instead of Event.
	Batch   []*event.Event
	Sink    string
	Signer  *signing.Signer
	Headers map[string]string  // static headers from the subscription
	Mode    policy.ContentMode // binary (default), structured or batched
	// BearerToken, if set, is sent as "Authorization: Bearer <token>".
	BearerToken string
	// Origin, if set, is sent as WebHook-Request-Origin, as every delivery
	// after a validation handshake must be.
	Origin string
	// Trace, if set, holds W3C Trace Context headers (traceparent,
	// tracestate) of the attempt's span, sent as they are.
	Trace map[string]string
}

// Result is what happened to one attempt.
type Result struct {
	StatusCode int           // 0 when no response
	Latency    time.Duration // from sending the request to reading the kept body
	Err        error         // transport/timeout/TLS error, or nil
	Body       []byte        // first policy.MaxResponseBody bytes of the response
	RetryAfter time.Duration // parsed Retry-After (policy.ParseRetryAfter), 0 if none
}

// Outcome classifies r with the retry policy p: a request that could not
// be built (ErrInvalidRequest) or that went to an address Herald may not
// connect to (egress.ErrForbidden) is Permanent; otherwise p.Classify decides
// by status code (0, no response, is Retryable).
func (r Result) Outcome(p policy.Retry) policy.Outcome {
	if r.StatusCode == 0 && (errors.Is(r.Err, ErrInvalidRequest) || errors.Is(r.Err, egress.ErrForbidden)) {
		return policy.Permanent
	}
	return p.Classify(r.StatusCode)
}

// Sender sends webhook requests. It is safe for concurrent use; make one
// and share it, so that connections are reused.
type Sender struct {
	// rt is called directly, not through an http.Client: one attempt is
	// one request (a redirect is the answer, never followed), the
	// request's context carries the timeout, and Client.Do's header
	// copies and checks cost ~6% of a send (docs/benchmarks.md).
	rt        http.RoundTripper
	timeout   time.Duration
	userAgent []string
}

// Option configures a Sender.
type Option func(*config)

type config struct {
	guard           *egress.Guard
	roots           *x509.CertPool
	timeout         time.Duration
	transport       http.RoundTripper
	userAgent       string
	maxConnsPerHost int
	maxIdlePerHost  int
}

// WithGuard makes the Sender refuse to connect to the addresses g
// forbids, checked on every address it dials (after DNS), and send no
// request through a proxy (a proxy would dial for it, unchecked). A
// refused connection is a permanent failure of that attempt
// (Result.Outcome), with the reason in Result.Err.
func WithGuard(g *egress.Guard) Option {
	return func(c *config) { c.guard = g }
}

// WithTimeout sets how long one request may take, from dialing to reading
// the kept part of the response body. The default is policy.RequestTimeout.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithTransport makes the Sender use rt instead of its own tuned
// http.Transport (for example to add an SSRF-guarding dialer). The
// connection options below do not apply to it.
func WithTransport(rt http.RoundTripper) Option {
	return func(c *config) { c.transport = rt }
}

// WithUserAgent sets the User-Agent header. The default is DefaultUserAgent.
func WithUserAgent(ua string) Option {
	return func(c *config) { c.userAgent = ua }
}

// WithRootCAs sets the certificate authorities trusted for sinks; the
// default, nil, is the system's.
func WithRootCAs(roots *x509.CertPool) Option {
	return func(c *config) { c.roots = roots }
}

// WithMaxConnsPerHost caps the connections (in use, dialing or idle) to one
// host. The default, 0, is no cap.
func WithMaxConnsPerHost(n int) Option {
	return func(c *config) { c.maxConnsPerHost = n }
}

// WithMaxIdleConnsPerHost sets how many idle keep-alive connections are
// kept per host. The default is 1024, enough for thousands of requests per
// second to one receiver without re-dialing.
func WithMaxIdleConnsPerHost(n int) Option {
	return func(c *config) { c.maxIdlePerHost = n }
}

// ConnectTimeout bounds dialing a sink and its TLS handshake, apart from
// the request's own timeout: a sink that does not accept connections
// fails fast.
const ConnectTimeout = 5 * time.Second

// NewSender returns a Sender with the given options.
func NewSender(opts ...Option) *Sender {
	c := config{
		timeout:        policy.RequestTimeout,
		userAgent:      DefaultUserAgent,
		maxIdlePerHost: 1024,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.timeout <= 0 {
		c.timeout = policy.RequestTimeout
	}

	rt := c.transport
	if rt == nil {
		rt = newTransport(c)
	}
	return &Sender{rt: rt, timeout: c.timeout, userAgent: []string{c.userAgent}}
}

func newTransport(c config) *http.Transport {
	return NewTransport(c.guard, c.roots, c.maxConnsPerHost, c.maxIdlePerHost)
}

// NewTransport returns the http.Transport of Herald's outbound requests:
// dials checked by guard (nil: none), ConnectTimeout for connecting and
// the TLS handshake, HTTP/2 where offered, TLS 1.2 at least with roots
// (nil: the system's) as the trusted authorities, no compression, and
// per-host connection limits. Every outbound request Herald makes
// (deliveries, handshakes, callbacks) uses one.
func NewTransport(guard *egress.Guard, roots *x509.CertPool, maxConnsPerHost, maxIdlePerHost int) *http.Transport {
	dialer := &net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}
	proxy := http.ProxyFromEnvironment
	if guard != nil && !guard.AllowPrivate {
		dialer.Control = guard.Control
		proxy = nil
	}
	return &http.Transport{
		Proxy:                 proxy,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0, // no global cap: MaxIdleConnsPerHost bounds each host
		MaxIdleConnsPerHost:   maxIdlePerHost,
		MaxConnsPerHost:       maxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   ConnectTimeout,
		ExpectContinueTimeout: time.Second,
		// Delivery bodies are not compressed, and a receiver's response
		// body is kept as sent.
		DisableCompression: true,
	}
}

// SinkHost is the host of a sink URL as operators search for it
// (HeraldSinkHost): lower-cased, with its port unless it is the scheme's
// default; "" if the URL does not parse.
func SinkHost(sink string) string {
	u, err := url.Parse(sink)
	if err != nil || u.Host == "" {
		return ""
	}
	return OriginHost(Origin(sink))
}

// OriginHost is the SinkHost of every sink URL of origin (as Origin
// returns it).
func OriginHost(origin string) string {
	scheme, hostPort, ok := strings.Cut(origin, "://")
	if !ok {
		return ""
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return hostPort
	}
	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return hostPort
}

// Origin is the origin of a sink URL, "scheme://host:port" with the
// scheme's default port made explicit and the host lower-cased: requests
// to one origin share its connections and its limits. A URL that does not
// parse is its own origin.
func Origin(sink string) string {
	u, err := url.Parse(sink)
	if err != nil || u.Host == "" {
		return sink
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// BearerTokenPrefix starts every bearer token Herald generates, so that
// secret scanners can find a leaked one.
const BearerTokenPrefix = "hbt_"

// NewBearerToken returns a new access token for a sink: BearerTokenPrefix
// and 256 random bits, base64url.
func NewBearerToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return BearerTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// CloseIdleConnections closes the Sender's idle keep-alive connections.
func (s *Sender) CloseIdleConnections() {
	if c, ok := s.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// maxDrain is how much of an unread response body is read and discarded so
// that the connection can be reused; beyond it the connection is closed.
const maxDrain = 64 << 10

// Send makes one attempt to deliver r and reports the result: the status
// code when the receiver answered, or Err when it did not (or when r was
// invalid, see ErrInvalidRequest).
func (s *Sender) Send(ctx context.Context, r *Request) Result {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := s.build(ctx, r)
	if err != nil {
		return Result{Err: err}
	}

	start := time.Now()
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return Result{Latency: time.Since(start), Err: err}
	}
	defer func() {
		// Drain a little so the connection goes back to the pool.
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
		_ = resp.Body.Close()
	}()

	res := Result{StatusCode: resp.StatusCode}
	// A body that fails or times out part-way is kept as far as it was
	// read: the status code already says what the receiver decided.
	res.Body, _ = readLimited(resp.Body)
	res.Latency = time.Since(start)
	if v := resp.Header.Get("Retry-After"); v != "" {
		res.RetryAfter = policy.ParseRetryAfter(strings.TrimSpace(v), time.Now())
		if res.RetryAfter < 0 { // huge delay-seconds overflow in ParseRetryAfter
			res.RetryAfter = 0
		}
	}
	return res
}

// bodyBufs holds scratch buffers for reading response bodies, so that the
// common empty or short response costs no 4 KiB allocation.
var bodyBufs = sync.Pool{New: func() any { return new([policy.MaxResponseBody]byte) }}

// readLimited returns a copy of the first policy.MaxResponseBody bytes of
// r (nil when r is empty).
func readLimited(r io.Reader) ([]byte, error) {
	buf := bodyBufs.Get().(*[policy.MaxResponseBody]byte)
	defer bodyBufs.Put(buf)
	m, err := io.ReadFull(r, buf[:])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	if m == 0 {
		return nil, err
	}
	return bytes.Clone(buf[:m]), err
}

// CheckHeader reports whether a subscription may set header name to value
// on its deliveries. It refuses names that are not HTTP tokens, values
// with control characters, and the headers the Sender owns: Content-Type,
// ce-*, webhook-*, User-Agent, Idempotency-Key and the framing and
// hop-by-hop headers. The subscription API should apply it on create and
// update; Send applies it again and fails with ErrInvalidRequest.
func CheckHeader(name, value string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("header name %q is not a token", name)
		}
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "ce-") || strings.HasPrefix(lower, "webhook-") {
		return fmt.Errorf("header %q is reserved", name)
	}
	switch lower {
	case "content-type", "content-length", "content-encoding", "transfer-encoding", "te", "trailer",
		"connection", "keep-alive", "upgrade", "host", "user-agent", "idempotency-key", "x-idempotency-key",
		"expect", "proxy-connection":
		return fmt.Errorf("header %q is reserved", name)
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7F {
			return fmt.Errorf("header %q: value has a control character", name)
		}
	}
	return nil
}

// isTokenChar reports whether c may appear in an RFC 9110 token.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// build makes the signed HTTP request for r.
func (s *Sender) build(ctx context.Context, r *Request) (*http.Request, error) {
	switch {
	case r == nil || (r.Event == nil && r.Mode != policy.ContentBatched) || (r.Mode == policy.ContentBatched && len(r.Batch) == 0):
		return nil, fmt.Errorf("%w: no event", ErrInvalidRequest)
	case r.Signer == nil:
		return nil, fmt.Errorf("%w: no signer", ErrInvalidRequest)
	case r.WebhookID == "" || strings.ContainsAny(r.WebhookID, ". \t\r\n"):
		return nil, fmt.Errorf("%w: webhook id %q", ErrInvalidRequest, r.WebhookID)
	}

	h := make(http.Header, 16+len(r.Headers))
	for k, v := range r.Headers {
		if err := CheckHeader(k, v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
		h.Set(k, v)
	}
	var body []byte
	var err error
	mode := r.Mode
	if (mode == policy.ContentBinary || mode == "") && cehttp.NeedsPayload(r.Event) {
		// A webhook must carry a payload: an event without data goes in
		// structured mode, whose body is the event itself.
		mode = policy.ContentStructured
	}
	switch mode {
	case policy.ContentBinary, "":
		body, err = cehttp.WriteBinary(h, r.Event)
	case policy.ContentStructured:
		var ct string
		ct, body, err = cehttp.WriteStructured(r.Event)
		h["Content-Type"] = []string{ct}
	case policy.ContentBatched:
		var ct string
		ct, body, err = cehttp.WriteBatch(r.Batch)
		h["Content-Type"] = []string{ct}
	default:
		return nil, fmt.Errorf("%w: content mode %q", ErrInvalidRequest, r.Mode)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Sink, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: sink: %w", ErrInvalidRequest, err)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, fmt.Errorf("%w: sink scheme %q", ErrInvalidRequest, req.URL.Scheme)
	}
	for k, v := range r.Trace {
		h.Set(k, v)
	}
	ts := time.Now()
	h["Webhook-Id"] = []string{r.WebhookID}
	h["Webhook-Timestamp"] = []string{strconv.FormatInt(ts.Unix(), 10)}
	h["Webhook-Signature"] = []string{r.Signer.Sign(r.WebhookID, ts, body)}
	h["User-Agent"] = s.userAgent
	if r.BearerToken != "" {
		h["Authorization"] = []string{"Bearer " + r.BearerToken}
	}
	if r.Origin != "" {
		h["Webhook-Request-Origin"] = []string{r.Origin}
	}
	// Deliveries are idempotent (receivers dedupe on webhook-id), so let
	// the transport replay the request if a reused keep-alive connection
	// turns out to be closed. A nil value is not sent on the wire.
	h["Idempotency-Key"] = nil
	req.Header = h
	return req, nil
}
