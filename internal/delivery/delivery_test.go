package delivery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttpsdk "github.com/cloudevents/sdk-go/v2/protocol/http"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/signing"
	"github.com/heraldhq/herald/internal/policy"
)

// received is one request as a test server saw it.
type received struct {
	method string
	header http.Header
	body   []byte
}

// recorder is a loopback server that records each request and answers
// with respond (204 when nil).
func recorder(t testing.TB, respond http.HandlerFunc) (*httptest.Server, <-chan received) {
	t.Helper()
	ch := make(chan received, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- received{r.Method, r.Header.Clone(), body}
		if respond != nil {
			respond(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func testEvent(t testing.TB) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("evt-1")
	e.SetSource("https://orders.example.com")
	e.SetType("com.example.order.created")
	e.SetSubject("Euro € 😀")
	e.SetTime(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	e.SetExtension("tenant", "acme")
	if err := e.SetData("application/json", map[string]int{"order": 42}); err != nil {
		t.Fatal(err)
	}
	return &e
}

func testRequest(t testing.TB, sink string) (*Request, string) {
	t.Helper()
	secret := signing.NewSecret()
	s, err := signing.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return &Request{
		WebhookID: "msg_01jtestdelivery",
		Event:     testEvent(t),
		Sink:      sink,
		Signer:    s,
		Headers:   map[string]string{"Authorization": "Bearer token-1"},
	}, secret
}

func TestSend_SignsRequestAndSetsWebhookHeaders(t *testing.T) {
	srv, got := recorder(t, nil)
	req, secret := testRequest(t, srv.URL)
	before := time.Now().Unix()
	res := NewSender().Send(context.Background(), req)
	after := time.Now().Unix()
	if res.Err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("Send = %+v", res)
	}
	r := <-got
	if r.method != http.MethodPost {
		t.Errorf("method = %s", r.method)
	}
	for k, want := range map[string]string{
		"webhook-id":      "msg_01jtestdelivery",
		"user-agent":      "Herald/1",
		"authorization":   "Bearer token-1",
		"content-type":    "application/json",
		"idempotency-key": "",
	} {
		if v := r.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	ts, err := strconv.ParseInt(r.header.Get("webhook-timestamp"), 10, 64)
	if err != nil || ts < before || ts > after {
		t.Errorf("webhook-timestamp = %q, want Unix seconds in [%d, %d]", r.header.Get("webhook-timestamp"), before, after)
	}

	v, err := signing.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(r.header, r.body, time.Unix(ts, 0)); err != nil {
		t.Errorf("our Verifier: %v", err)
	}
	ref, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Verify(r.body, r.header); err != nil {
		t.Errorf("reference library: %v", err)
	}
}

func TestSend_BinaryModeHeadersDecodeBack(t *testing.T) {
	srv, got := recorder(t, nil)
	req, _ := testRequest(t, srv.URL)
	if res := NewSender().Send(context.Background(), req); res.StatusCode != http.StatusNoContent {
		t.Fatalf("Send = %+v", res)
	}
	r := <-got
	if v := r.header.Get("ce-subject"); v != "Euro%20%E2%82%AC%20%F0%9F%98%80" {
		t.Errorf("ce-subject on the wire = %q", v)
	}
	hr := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(r.body))
	hr.Header = r.header
	events, err := cehttp.ReadRequest(hr, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	e := events[0]
	if e.Subject() != "Euro € 😀" || e.ID() != "evt-1" || e.Type() != "com.example.order.created" ||
		e.Source() != "https://orders.example.com" || e.Extensions()["tenant"] != "acme" ||
		string(e.Data()) != `{"order":42}` || e.DataContentType() != "application/json" {
		t.Errorf("decoded event:\n%s", e)
	}
}

func TestSend_StructuredModeParsesWithSDK(t *testing.T) {
	srv, got := recorder(t, nil)
	req, _ := testRequest(t, srv.URL)
	req.Mode = policy.ContentStructured
	if res := NewSender().Send(context.Background(), req); res.StatusCode != http.StatusNoContent {
		t.Fatalf("Send = %+v", res)
	}
	r := <-got
	if ct := r.header.Get("Content-Type"); ct != "application/cloudevents+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if len(r.header.Values("ce-id")) != 0 {
		t.Error("structured mode sent ce- headers")
	}
	hr := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(r.body))
	hr.Header = r.header
	e, err := cehttpsdk.NewEventFromHTTPRequest(hr)
	if err != nil {
		t.Fatal(err)
	}
	if e.Subject() != "Euro € 😀" || e.ID() != "evt-1" || string(e.Data()) != `{"order":42}` {
		t.Errorf("sdk-go decoded:\n%s", e)
	}
}

func TestSend_DoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followed.Add(1)
	}))
	defer target.Close()
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL, code)
			})
			req, _ := testRequest(t, srv.URL)
			res := NewSender().Send(context.Background(), req)
			if res.Err != nil || res.StatusCode != code {
				t.Errorf("Send = status %d, err %v; want %d, nil", res.StatusCode, res.Err, code)
			}
			if got := res.Outcome(policy.DefaultRetry); got != policy.Permanent {
				t.Errorf("Outcome = %s", got)
			}
		})
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("redirect target got %d requests", n)
	}
}

func TestSend_TimeoutGivesErrAndNoStatus(t *testing.T) {
	release := make(chan struct{})
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	req, _ := testRequest(t, srv.URL)
	res := NewSender(WithTimeout(20*time.Millisecond)).Send(context.Background(), req)
	if res.StatusCode != 0 || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("Send = status %d, err %v; want 0, deadline exceeded", res.StatusCode, res.Err)
	}
	if got := res.Outcome(policy.DefaultRetry); got != policy.Retryable {
		t.Errorf("Outcome = %s", got)
	}
}

func TestSend_CallerCancellationGivesErr(t *testing.T) {
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	req, _ := testRequest(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-got; cancel() }()
	res := NewSender().Send(ctx, req)
	if res.StatusCode != 0 || !errors.Is(res.Err, context.Canceled) {
		t.Errorf("Send = status %d, err %v; want 0, canceled", res.StatusCode, res.Err)
	}
}

func TestSend_TruncatesResponseBody(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	tests := []struct {
		name string
		body []byte
		want []byte
	}{
		{"empty", nil, nil},
		{"small", []byte("ok"), []byte("ok")},
		{"exactly 4 KiB", big[:4096], big[:4096]},
		{"16 KiB", big, big[:policy.MaxResponseBody]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write(tt.body)
			})
			req, _ := testRequest(t, srv.URL)
			res := NewSender().Send(context.Background(), req)
			if res.StatusCode != 500 || !bytes.Equal(res.Body, tt.want) {
				t.Errorf("Send = status %d, %d body bytes; want 500, %d", res.StatusCode, len(res.Body), len(tt.want))
			}
		})
	}
}

func TestSend_ParsesRetryAfter(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		min     time.Duration
		max     time.Duration
		outcome policy.Outcome
	}{
		{"absent", "", 0, 0, policy.Retryable},
		{"seconds", "120", 120 * time.Second, 120 * time.Second, policy.Retryable},
		{"HTTP-date an hour ahead", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), 30 * time.Minute, time.Hour, policy.Retryable},
		{"HTTP-date in the past", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0, 0, policy.Retryable},
		{"garbage", "soon", 0, 0, policy.Retryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.value != "" {
					w.Header().Set("Retry-After", tt.value)
				}
				w.WriteHeader(http.StatusTooManyRequests)
			})
			req, _ := testRequest(t, srv.URL)
			res := NewSender().Send(context.Background(), req)
			if res.StatusCode != http.StatusTooManyRequests || res.RetryAfter < tt.min || res.RetryAfter > tt.max {
				t.Errorf("Send = status %d, RetryAfter %v; want 429, in [%v, %v]", res.StatusCode, res.RetryAfter, tt.min, tt.max)
			}
			if got := res.Outcome(policy.DefaultRetry); got != tt.outcome {
				t.Errorf("Outcome = %s", got)
			}
		})
	}
}

func TestSend_ReusesConnections(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(bytes.Repeat([]byte("x"), 10<<10)) // more than is kept
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s := NewSender()
	req, _ := testRequest(t, srv.URL)
	for range 20 {
		if res := s.Send(context.Background(), req); res.StatusCode != 200 {
			t.Fatalf("Send = %+v", res)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential sends opened %d connections, want 1", n)
	}
}

func TestSend_ConcurrentUse(t *testing.T) {
	srv, _ := recorder(t, nil)
	s := NewSender()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 50 {
		wg.Go(func() {
			req, _ := testRequest(t, srv.URL)
			if res := s.Send(context.Background(), req); res.StatusCode != http.StatusNoContent {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of 50 concurrent sends failed", n)
	}
}

func TestSend_ConnectionRefusedGivesErr(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	req, _ := testRequest(t, "http://"+addr+"/hook")
	res := NewSender().Send(context.Background(), req)
	if res.StatusCode != 0 || res.Err == nil || errors.Is(res.Err, ErrInvalidRequest) {
		t.Errorf("Send = %+v, want a transport error", res)
	}
	if got := res.Outcome(policy.DefaultRetry); got != policy.Retryable {
		t.Errorf("Outcome = %s", got)
	}
}

func TestSend_RejectsInvalidRequests(t *testing.T) {
	srv, got := recorder(t, nil)
	tests := []struct {
		name   string
		modify func(r *Request)
	}{
		{"no event", func(r *Request) { r.Event = nil }},
		{"no signer", func(r *Request) { r.Signer = nil }},
		{"empty webhook id", func(r *Request) { r.WebhookID = "" }},
		{"webhook id with a dot", func(r *Request) { r.WebhookID = "msg_a.b" }},
		{"unknown mode", func(r *Request) { r.Mode = "xml" }},
		{"sink not a URL", func(r *Request) { r.Sink = "http://[::1" }},
		{"sink with another scheme", func(r *Request) { r.Sink = "ftp://example.com/" }},
		{"static ce- header", func(r *Request) { r.Headers = map[string]string{"ce-id": "x"} }},
		{"static webhook- header", func(r *Request) { r.Headers = map[string]string{"Webhook-Signature": "v1,x"} }},
		{"static Content-Type", func(r *Request) { r.Headers = map[string]string{"Content-Type": "text/plain"} }},
		{"static header with CRLF", func(r *Request) { r.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }},
		{"static header name with space", func(r *Request) { r.Headers = map[string]string{"X A": "a"} }},
		{"invalid event", func(r *Request) { r.Event.Context.(*event.EventContextV1).ID = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := testRequest(t, srv.URL)
			tt.modify(req)
			res := NewSender().Send(context.Background(), req)
			if !errors.Is(res.Err, ErrInvalidRequest) || res.StatusCode != 0 {
				t.Errorf("Send = %+v, want ErrInvalidRequest", res)
			}
			if got := res.Outcome(policy.DefaultRetry); got != policy.Permanent {
				t.Errorf("Outcome = %s, want permanent", got)
			}
		})
	}
	select {
	case r := <-got:
		t.Errorf("an invalid request reached the server: %v", r.header)
	default:
	}
}

func TestCheckHeader(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		ok          bool
	}{
		{"Authorization", "Bearer x", true},
		{"X-Custom", "a\tb", true},
		{"WebHook-Request-Origin", "herald.example.com", false},
		{"ce-source", "x", false},
		{"Host", "x", false},
		{"connection", "close", false},
		{"X-A", "\x00", false},
		{"", "x", false},
		{"X:A", "x", false},
	} {
		if err := CheckHeader(tt.name, tt.value); (err == nil) != tt.ok {
			t.Errorf("CheckHeader(%q, %q) = %v, want ok=%v", tt.name, tt.value, err, tt.ok)
		}
	}
}

func TestWithUserAgent(t *testing.T) {
	srv, got := recorder(t, nil)
	req, _ := testRequest(t, srv.URL)
	NewSender(WithUserAgent("Herald/1 (test)")).Send(context.Background(), req)
	if ua := (<-got).header.Get("User-Agent"); ua != "Herald/1 (test)" {
		t.Errorf("User-Agent = %q", ua)
	}
}

func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s := NewSender()
	defer s.CloseIdleConnections()
	req, _ := testRequest(b, srv.URL)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := s.Send(context.Background(), req); res.StatusCode != http.StatusNoContent {
				b.Errorf("Send = %+v", res)
				return
			}
		}
	})
}

func TestSend_BatchedModeSendsEveryEventInOneRequest(t *testing.T) {
	srv, got := recorder(t, nil)
	req, _ := testRequest(t, srv.URL)
	second := testEvent(t)
	second.SetID("evt-2")
	req.Mode = policy.ContentBatched
	req.Batch = []*event.Event{req.Event, second}
	req.Event = nil
	if res := NewSender().Send(context.Background(), req); res.StatusCode != http.StatusNoContent {
		t.Fatalf("Send = %+v", res)
	}
	r := <-got
	hr := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(r.body))
	hr.Header = r.header
	evs, err := cehttp.ReadRequest(hr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].ID() != "evt-1" || evs[1].ID() != "evt-2" {
		t.Errorf("batch = %v", evs)
	}
}

func TestSend_BearerTokenAndOrigin(t *testing.T) {
	srv, got := recorder(t, nil)
	req, _ := testRequest(t, srv.URL)
	req.Headers = nil
	req.BearerToken = "s3cret"
	req.Origin = "herald.example.com"
	NewSender().Send(context.Background(), req)
	r := <-got
	if a := r.header.Get("Authorization"); a != "Bearer s3cret" {
		t.Errorf("Authorization = %q", a)
	}
	if o := r.header.Get("WebHook-Request-Origin"); o != "herald.example.com" {
		t.Errorf("WebHook-Request-Origin = %q", o)
	}
}
