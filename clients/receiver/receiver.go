// Package receiver lets a Go service receive Herald's webhooks: it verifies
// the signature and decodes the CloudEvent.
//
// Mount the handler NewHandler returns on the URL a subscription delivers
// to. For each request it checks the Standard Webhooks signature (before
// reading the event), decodes the CloudEvent from binary, structured or
// batched mode, and calls your function. The response tells Herald what
// happened:
//
//	204 No Content          your function returned nil: delivered
//	400 Bad Request         the request is not a valid CloudEvent: not retried
//	401 Unauthorized        missing or bad signature, or a stale timestamp: not retried
//	405 Method Not Allowed  not a POST (or OPTIONS without WithAllowedOrigins)
//	413 Content Too Large   the body is over WithMaxBodySize: not retried
//	415 Unsupported Media   an event format other than JSON: not retried
//	500 Internal Error      your function returned an error: Herald retries
//
// Herald may deliver an event more than once; use WebhookID (or the
// event's source and id) to drop duplicates.
package receiver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/signing"
)

// DefaultMaxBodySize is the largest request body accepted unless
// WithMaxBodySize says otherwise.
const DefaultMaxBodySize = 1 << 20

// Option configures the handler NewHandler returns.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	secrets        []string
	noVerification bool
	tolerance      time.Duration
	maxBody        int64
	origins        []string
}

// WithSecrets sets the keys that webhook signatures are checked against:
// the subscription's "whsec_" secret, or a "whpk_" public key for
// Ed25519-signed subscriptions. Pass both the old and the new key while a
// secret is being rotated. Verification is required unless
// WithoutVerification is given.
func WithSecrets(secrets ...string) Option {
	return optionFunc(func(c *config) { c.secrets = append(c.secrets, secrets...) })
}

// WithoutVerification accepts requests without checking their signature.
// Use it only in tests or behind something that has already verified them.
func WithoutVerification() Option {
	return optionFunc(func(c *config) { c.noVerification = true })
}

// WithTolerance sets how far a request's webhook-timestamp may be from the
// local clock, in either direction. The default is 5 minutes.
func WithTolerance(d time.Duration) Option {
	return optionFunc(func(c *config) { c.tolerance = d })
}

// WithMaxBodySize sets the largest request body accepted, in bytes. The
// default is DefaultMaxBodySize.
func WithMaxBodySize(n int64) Option {
	return optionFunc(func(c *config) { c.maxBody = n })
}

// WithAllowedOrigins answers the CloudEvents webhook validation handshake:
// an OPTIONS request whose WebHook-Request-Origin is one of origins (DNS
// names, compared case-insensitively; "*" allows any) is granted, with no
// rate limit. Without this option OPTIONS is answered 405.
func WithAllowedOrigins(origins ...string) Option {
	return optionFunc(func(c *config) { c.origins = append(c.origins, origins...) })
}

// handler is the http.Handler NewHandler returns.
type handler struct {
	fn       func(context.Context, event.Event) error
	verifier *signing.Verifier // nil: no verification
	maxBody  int64
	origins  []string
}

// NewHandler returns an http.Handler that verifies each webhook, decodes
// its CloudEvent and calls fn with it. fn runs with the request's context;
// a nil return answers 204, an error answers 500 so that Herald retries.
// A batched request calls fn once per event, in order, and stops at the
// first error.
//
// NewHandler fails if fn is nil, if a key is malformed, or if neither
// WithSecrets nor WithoutVerification is given (or both are).
func NewHandler(fn func(ctx context.Context, e event.Event) error, opts ...Option) (http.Handler, error) {
	if fn == nil {
		return nil, errors.New("receiver: nil handler function")
	}
	c := config{maxBody: DefaultMaxBodySize}
	for _, o := range opts {
		o.apply(&c)
	}
	h := &handler{fn: fn, maxBody: c.maxBody, origins: c.origins}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodySize
	}
	switch {
	case c.noVerification && len(c.secrets) > 0:
		return nil, errors.New("receiver: both WithSecrets and WithoutVerification given")
	case c.noVerification:
	case len(c.secrets) == 0:
		return nil, errors.New("receiver: WithSecrets is required (or WithoutVerification)")
	default:
		v, err := signing.NewVerifier(c.secrets...)
		if err != nil {
			return nil, err
		}
		v.Tolerance = c.tolerance
		h.verifier = v
	}
	return h, nil
}

type webhookIDKey struct{}

// WebhookID returns the webhook-id of the request being handled: the same
// on every retry of one delivery, so it identifies duplicates. It returns
// "" outside a handler.
func WebhookID(ctx context.Context) string {
	id, _ := ctx.Value(webhookIDKey{}).(string)
	return id
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		h.handshake(w, r)
		return
	default:
		w.Header().Set("Allow", h.allow())
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	if h.verifier != nil {
		if err := h.verifier.Verify(r.Header, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
	}

	// Decode from the bytes already read (and verified).
	dr := r.WithContext(r.Context())
	dr.Body = io.NopCloser(bytes.NewReader(body))
	dr.ContentLength = int64(len(body))
	events, err := cehttp.ReadRequest(dr, 0)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, cehttp.ErrUnsupportedFormat) {
			code = http.StatusUnsupportedMediaType
		}
		http.Error(w, err.Error(), code)
		return
	}

	ctx := r.Context()
	if id := r.Header.Get(signing.HeaderID); id != "" {
		ctx = context.WithValue(ctx, webhookIDKey{}, id)
	}
	for _, e := range events {
		if err := h.fn(ctx, e); err != nil {
			// The error may hold internals: keep it off the wire.
			http.Error(w, "handler failed", http.StatusInternalServerError)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) allow() string {
	if len(h.origins) > 0 {
		return "POST, OPTIONS"
	}
	return "POST"
}

// handshake answers the CloudEvents webhook validation request.
func (h *handler) handshake(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", h.allow())
	if len(h.origins) == 0 {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	origin := strings.TrimSpace(r.Header.Get("WebHook-Request-Origin"))
	if origin == "" {
		http.Error(w, "missing WebHook-Request-Origin", http.StatusBadRequest)
		return
	}
	for _, o := range h.origins {
		if o == "*" || strings.EqualFold(o, origin) {
			w.Header().Set("WebHook-Allowed-Origin", origin)
			if r.Header.Get("WebHook-Request-Rate") != "" {
				w.Header().Set("WebHook-Allowed-Rate", "*")
			}
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	http.Error(w, "origin not allowed", http.StatusForbidden)
}
