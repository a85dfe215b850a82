package receiver

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/signing"
)

// got is one call of the handler function.
type got struct {
	event     event.Event
	webhookID string
}

// start serves NewHandler(fn, opts...) on a loopback server; fn records
// each event and returns fail.
func start(t *testing.T, fail error, opts ...Option) (*httptest.Server, <-chan got) {
	t.Helper()
	calls := make(chan got, 10)
	h, err := NewHandler(func(ctx context.Context, e event.Event) error {
		calls <- got{e, WebhookID(ctx)}
		return fail
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, calls
}

func newEvent(t *testing.T) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("evt-1")
	e.SetSource("https://orders.example.com")
	e.SetType("com.example.order.created")
	e.SetSubject("Euro € 😀")
	if err := e.SetData("application/json", map[string]int{"order": 42}); err != nil {
		t.Fatal(err)
	}
	return &e
}

// deliver sends the test event to sink as Herald's sender does: in binary
// or structured mode, signed per Standard Webhooks, and returns the
// status. (Herald's own sender is checked against this handler in
// internal/delivery.)
func deliver(t *testing.T, sink string, signer *signing.Signer, structured bool) int {
	t.Helper()
	e := newEvent(t)
	h := http.Header{}
	var body []byte
	var err error
	if structured {
		var ct string
		ct, body, err = cehttp.WriteStructured(e)
		h.Set("Content-Type", ct)
	} else {
		body, err = cehttp.WriteBinary(h, e)
	}
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h.Set("webhook-id", "msg_receivertest")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", signer.Sign("msg_receivertest", now, body))
	return post(t, sink, h, body)
}

func mustSigner(t *testing.T, keys ...string) *signing.Signer {
	t.Helper()
	s, err := signing.NewSigner(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHandler_AcceptsHeraldDelivery(t *testing.T) {
	secret := signing.NewSecret()
	signingKey, publicKey := signing.NewSigningKey()
	tests := []struct {
		name       string
		keys       []string // receiver's
		signer     *signing.Signer
		structured bool
	}{
		{"v1 binary", []string{secret}, mustSigner(t, secret), false},
		{"v1 structured", []string{secret}, mustSigner(t, secret), true},
		{"v1a binary", []string{publicKey}, mustSigner(t, signingKey), false},
		{"rotation: receiver has only the old secret", []string{secret}, mustSigner(t, signing.NewSecret(), secret), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := start(t, nil, WithSecrets(tt.keys...))
			if code := deliver(t, srv.URL, tt.signer, tt.structured); code != http.StatusNoContent {
				t.Fatalf("status %d", code)
			}
			c := <-calls
			if c.event.Subject() != "Euro € 😀" || c.event.ID() != "evt-1" || string(c.event.Data()) != `{"order":42}` {
				t.Errorf("event:\n%s", c.event)
			}
			if c.webhookID != "msg_receivertest" {
				t.Errorf("WebhookID = %q", c.webhookID)
			}
		})
	}
}

func TestHandler_RejectsBadSignatureWith401(t *testing.T) {
	secret := signing.NewSecret()
	srv, calls := start(t, nil, WithSecrets(secret))
	if code := deliver(t, srv.URL, mustSigner(t, signing.NewSecret()), false); code != http.StatusUnauthorized {
		t.Errorf("wrong secret: status %d, want 401", code)
	}

	body := []byte(`{"order":42}`)
	sign := func(ts time.Time, b []byte) http.Header {
		h := binaryHeaders()
		h.Set("webhook-id", "msg_1")
		h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
		h.Set("webhook-signature", mustSigner(t, secret).Sign("msg_1", ts, b))
		return h
	}
	tests := []struct {
		name   string
		header http.Header
		body   []byte
	}{
		{"unsigned", binaryHeaders(), body},
		{"body changed after signing", sign(time.Now(), body), []byte(`{"order":43}`)},
		{"timestamp 10 minutes old", sign(time.Now().Add(-10*time.Minute), body), body},
		{"timestamp 10 minutes ahead", sign(time.Now().Add(10*time.Minute), body), body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := post(t, srv.URL, tt.header, tt.body); code != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", code)
			}
		})
	}
	select {
	case c := <-calls:
		t.Errorf("handler called for a rejected request: %s", c.event)
	default:
	}
}

func binaryHeaders() http.Header {
	return http.Header{
		"Content-Type":   {"application/json"},
		"Ce-Specversion": {"1.0"},
		"Ce-Id":          {"evt-1"},
		"Ce-Source":      {"/orders"},
		"Ce-Type":        {"com.example.order.created"},
	}
}

func post(t *testing.T, url string, h http.Header, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// signed returns h signed with secret over body.
func signed(t *testing.T, secret string, h http.Header, body []byte) http.Header {
	t.Helper()
	now := time.Now()
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", mustSigner(t, secret).Sign("msg_1", now, body))
	return h
}

func TestHandler_StatusCodes(t *testing.T) {
	secret := signing.NewSecret()
	body := []byte(`{"order":42}`)
	without := func(k string) http.Header { h := binaryHeaders(); h.Del(k); return h }
	with := func(k, v string) http.Header { h := binaryHeaders(); h.Set(k, v); return h }
	tests := []struct {
		name   string
		fail   error
		header http.Header
		body   []byte
		want   int
		called bool
	}{
		{"valid event", nil, binaryHeaders(), body, http.StatusNoContent, true},
		{"function fails", errors.New("db down"), binaryHeaders(), body, http.StatusInternalServerError, true},
		{"no ce-specversion", nil, without("Ce-Specversion"), body, http.StatusBadRequest, false},
		{"no ce-id", nil, without("Ce-Id"), body, http.StatusBadRequest, false},
		{"invalid UTF-8 in header", nil, with("Ce-Subject", "%C0%A0"), body, http.StatusBadRequest, false},
		{"structured, not JSON", nil, http.Header{"Content-Type": {"application/cloudevents+json"}}, []byte("{"), http.StatusBadRequest, false},
		{"structured protobuf", nil, http.Header{"Content-Type": {"application/cloudevents+protobuf"}}, []byte("x"), http.StatusUnsupportedMediaType, false},
		{"body over the limit", nil, binaryHeaders(), bytes.Repeat([]byte("x"), 2048), http.StatusRequestEntityTooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := start(t, tt.fail, WithSecrets(secret), WithMaxBodySize(1024))
			if code := post(t, srv.URL, signed(t, secret, tt.header, tt.body), tt.body); code != tt.want {
				t.Errorf("status %d, want %d", code, tt.want)
			}
			select {
			case <-calls:
				if !tt.called {
					t.Error("handler function called")
				}
			default:
				if tt.called {
					t.Error("handler function not called")
				}
			}
		})
	}
}

func TestHandler_BatchCallsFunctionPerEvent(t *testing.T) {
	srv, calls := start(t, nil, WithoutVerification())
	body := []byte(`[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t"}]`)
	if code := post(t, srv.URL, http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, body); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	if a, b := <-calls, <-calls; a.event.ID() != "1" || b.event.ID() != "2" {
		t.Errorf("events %s, %s", a.event.ID(), b.event.ID())
	}
}

func TestHandler_WithoutVerificationAcceptsUnsigned(t *testing.T) {
	srv, calls := start(t, nil, WithoutVerification())
	if code := post(t, srv.URL, binaryHeaders(), []byte(`{}`)); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	if c := <-calls; c.event.ID() != "evt-1" || c.webhookID != "" {
		t.Errorf("event %s, webhook id %q", c.event.ID(), c.webhookID)
	}
}

func TestHandler_WithToleranceAcceptsOlderTimestamps(t *testing.T) {
	secret := signing.NewSecret()
	body := []byte(`{}`)
	ts := time.Now().Add(-10 * time.Minute)
	h := binaryHeaders()
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", mustSigner(t, secret).Sign("msg_1", ts, body))

	strict, _ := start(t, nil, WithSecrets(secret))
	if code := post(t, strict.URL, h, body); code != http.StatusUnauthorized {
		t.Errorf("default tolerance: status %d, want 401", code)
	}
	lenient, _ := start(t, nil, WithSecrets(secret), WithTolerance(time.Hour))
	if code := post(t, lenient.URL, h, body); code != http.StatusNoContent {
		t.Errorf("1h tolerance: status %d, want 204", code)
	}
}

func TestHandler_Methods(t *testing.T) {
	plain, _ := start(t, nil, WithoutVerification())
	withOrigins, _ := start(t, nil, WithoutVerification(), WithAllowedOrigins("herald.example.com"))
	anyOrigin, _ := start(t, nil, WithoutVerification(), WithAllowedOrigins("*"))
	tests := []struct {
		name        string
		url         string
		method      string
		header      http.Header
		want        int
		wantAllowed string // WebHook-Allowed-Origin
		wantRate    string
	}{
		{"GET", plain.URL, http.MethodGet, nil, http.StatusMethodNotAllowed, "", ""},
		{"OPTIONS without WithAllowedOrigins", plain.URL, http.MethodOptions, http.Header{"Webhook-Request-Origin": {"herald.example.com"}}, http.StatusMethodNotAllowed, "", ""},
		{"OPTIONS from an allowed origin", withOrigins.URL, http.MethodOptions, http.Header{"Webhook-Request-Origin": {"Herald.Example.com"}, "Webhook-Request-Rate": {"120"}}, http.StatusOK, "Herald.Example.com", "*"},
		{"OPTIONS from a suffix-extended origin", withOrigins.URL, http.MethodOptions, http.Header{"Webhook-Request-Origin": {"herald.example.com.attacker.tld"}}, http.StatusForbidden, "", ""},
		{"OPTIONS without origin", withOrigins.URL, http.MethodOptions, nil, http.StatusBadRequest, "", ""},
		{"OPTIONS, any origin allowed", anyOrigin.URL, http.MethodOptions, http.Header{"Webhook-Request-Origin": {"x.example"}}, http.StatusOK, "x.example", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.url, nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if got := resp.Header.Get("WebHook-Allowed-Origin"); got != tt.wantAllowed {
				t.Errorf("WebHook-Allowed-Origin = %q, want %q", got, tt.wantAllowed)
			}
			if got := resp.Header.Get("WebHook-Allowed-Rate"); got != tt.wantRate {
				t.Errorf("WebHook-Allowed-Rate = %q, want %q", got, tt.wantRate)
			}
			if !strings.Contains(resp.Header.Get("Allow"), "POST") && tt.want != http.StatusOK {
				t.Errorf("Allow = %q", resp.Header.Get("Allow"))
			}
		})
	}
}

func TestNewHandler_Errors(t *testing.T) {
	fn := func(context.Context, event.Event) error { return nil }
	tests := []struct {
		name string
		fn   func(context.Context, event.Event) error
		opts []Option
	}{
		{"nil function", nil, []Option{WithoutVerification()}},
		{"no secrets", fn, nil},
		{"malformed secret", fn, []Option{WithSecrets("whsec_!!")}},
		{"secret without prefix", fn, []Option{WithSecrets("c2VjcmV0")}},
		{"secrets and WithoutVerification", fn, []Option{WithSecrets(signing.NewSecret()), WithoutVerification()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewHandler(tt.fn, tt.opts...); err == nil {
				t.Error("NewHandler succeeded, want error")
			}
		})
	}
}
