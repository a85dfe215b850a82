package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/internal/policy"
)

// Limits of the callback grants of the validation handshake.
const (
	// CallbackTimeout bounds one callback grant request.
	CallbackTimeout = policy.CallbackTimeout
	// MaxCallbacksInFlight is the most callback grants sent at once; a
	// handshake beyond it answers 503 with Retry-After.
	MaxCallbacksInFlight = policy.MaxCallbacksInFlight
	// maxCallbackURL is the longest callback URL accepted.
	maxCallbackURL = policy.MaxCallbackURL
)

// serveOptions answers the CloudEvents webhook validation handshake
// (http-webhook.md section 4). No API key is needed: the handshake only
// tells a sender that this endpoint expects its traffic.
//
//   - No WebHook-Request-Origin: 400.
//   - An origin not in AllowedOrigins (exact, case-insensitive): 403,
//     without WebHook-Allowed-* headers.
//   - An allowed origin: 200 with WebHook-Allowed-Origin set to the origin
//     as requested (never "*") and WebHook-Allowed-Rate.
//   - An allowed origin with WebHook-Request-Callback, when
//     AutoGrantCallbacks is set: 200 without the WebHook-Allowed-*
//     headers (the spec's callback flow), then a POST to the callback URL
//     carrying them. The URL must be https and on the origin or one of its
//     subdomains, so a handshake cannot point Herald at another host.
func (in *Ingest) serveOptions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", allowedMethods)
	origin, ok := singleHeader(r.Header, "WebHook-Request-Origin")
	if !ok || origin == "" {
		writeProblem(w, http.StatusBadRequest, "the validation handshake needs exactly one WebHook-Request-Origin header",
			[]Violation{{Field: "WebHook-Request-Origin", Description: "required, once"}})
		return
	}
	if rate, ok := singleHeader(r.Header, "WebHook-Request-Rate"); !ok || rate != "" {
		if n, err := strconv.ParseUint(rate, 10, 31); !ok || err != nil || n == 0 {
			writeProblem(w, http.StatusBadRequest, "WebHook-Request-Rate must be one positive integer (requests per minute)",
				[]Violation{{Field: "WebHook-Request-Rate", Description: "must be a positive integer"}})
			return
		}
	}
	if !in.originAllowed(origin) {
		writeProblem(w, http.StatusForbidden, "this sender's origin is not allowed to deliver here", nil)
		return
	}
	callback, ok := singleHeader(r.Header, "WebHook-Request-Callback")
	if !ok {
		writeProblem(w, http.StatusBadRequest, "more than one WebHook-Request-Callback header",
			[]Violation{{Field: "WebHook-Request-Callback", Description: "at most once"}})
		return
	}
	if callback == "" || !in.opts.AutoGrantCallbacks {
		// Grant now, in the response. A sender that offered a callback
		// also accepts an immediate grant.
		w.Header().Set("WebHook-Allowed-Origin", origin)
		w.Header().Set("WebHook-Allowed-Rate", in.allowedRate())
		w.WriteHeader(http.StatusOK)
		return
	}
	u, err := callbackURL(callback, origin)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "unusable WebHook-Request-Callback",
			[]Violation{{Field: "WebHook-Request-Callback", Description: err.Error()}})
		return
	}
	if !in.startGrant(u, origin) {
		w.Header().Set("Retry-After", "10")
		writeProblem(w, http.StatusServiceUnavailable, "too many callback grants in flight; retry the handshake later", nil)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// singleHeader returns the value of a header that may appear at most
// once; ok is false when it appears more often.
func singleHeader(h http.Header, name string) (v string, ok bool) {
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	default:
		return "", false
	}
}

// originAllowed reports whether origin is exactly one of AllowedOrigins,
// ignoring case. There is no prefix, suffix or wildcard matching.
func (in *Ingest) originAllowed(origin string) bool {
	for _, o := range in.opts.AllowedOrigins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// allowedRate is the WebHook-Allowed-Rate value: "*" or requests per
// minute.
func (in *Ingest) allowedRate() string {
	if in.opts.Rate <= 0 {
		return "*"
	}
	return strconv.Itoa(in.opts.Rate)
}

// callbackURL parses a WebHook-Request-Callback value and checks that
// Herald may call it for origin: an https URL, without user info, whose
// host is origin or a subdomain of it.
func callbackURL(raw, origin string) (*url.URL, error) {
	if len(raw) > maxCallbackURL {
		return nil, errors.New("longer than " + strconv.Itoa(maxCallbackURL) + " characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("must be an absolute https URL")
	}
	if u.User != nil {
		return nil, errors.New("must not carry user information")
	}
	host, o := strings.ToLower(u.Hostname()), strings.ToLower(origin)
	if host != o && !strings.HasSuffix(host, "."+o) {
		return nil, errors.New("its host must be the origin or a subdomain of it")
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// startGrant sends the callback grant in the background, unless
// MaxCallbacksInFlight are already in flight or the receiver is closed.
func (in *Ingest) startGrant(u *url.URL, origin string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return false
	}
	select {
	case in.callbacks <- struct{}{}:
	default:
		return false
	}
	in.inFlight.Add(1)
	go func() {
		defer in.inFlight.Done()
		defer func() { <-in.callbacks }()
		in.grant(u, origin)
	}()
	return true
}

// grant POSTs the grant to the callback URL. A failure is only logged: the
// sender retries its handshake when it sees no grant.
func (in *Ingest) grant(u *url.URL, origin string) {
	ctx, cancel := context.WithTimeout(in.ctx, CallbackTimeout)
	defer cancel()
	log := in.opts.Logger.With("origin", origin, "callback_host", u.Host) // the URL itself holds a secret
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), http.NoBody)
	if err != nil {
		log.Warn("handshake callback: build request", "err", err)
		return
	}
	req.Header.Set("WebHook-Allowed-Origin", origin)
	req.Header.Set("WebHook-Allowed-Rate", in.allowedRate())
	resp, err := in.client.Do(req)
	if err != nil {
		log.Warn("handshake callback failed", "err", redactURL(err))
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		log.Warn("handshake callback refused", "status", resp.StatusCode)
		return
	}
	log.Info("handshake granted by callback", "status", resp.StatusCode)
}

// redactURL drops the URL (which holds the callback's secret) from a
// client error.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
