package handshake

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
)

const origin = "herald.example.com"

// answer returns a Respond that gives every request the same status and
// header pairs.
func answer(status int, kv ...string) heraldtest.Respond {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return func(int, *http.Request) (int, http.Header) { return status, h }
}

func TestValidate_Outcomes(t *testing.T) {
	tests := []struct {
		name       string
		respond    heraldtest.Respond
		rate       int
		callback   string
		want       Outcome
		wantRate   int
		wantReason string // substring
	}{
		{
			name:    "GrantedForOurOrigin",
			respond: answer(200, HeaderAllowedOrigin, origin),
			want:    Granted,
		},
		{
			name:    "GrantedOn204",
			respond: answer(204, HeaderAllowedOrigin, origin, HeaderAllowedRate, "*"),
			want:    Granted,
		},
		{
			name:    "OriginComparedCaseInsensitivelyIgnoringRootDot",
			respond: answer(200, HeaderAllowedOrigin, "HERALD.Example.COM."),
			want:    Granted,
		},
		{
			name:     "GrantedWithRate",
			respond:  answer(200, HeaderAllowedOrigin, origin, HeaderAllowedRate, "100"),
			rate:     120,
			want:     Granted,
			wantRate: 100,
		},
		{
			name:       "GrantedWithUnlimitedRate",
			respond:    answer(200, HeaderAllowedOrigin, origin, HeaderAllowedRate, "*"),
			rate:       120,
			want:       Granted,
			wantRate:   0,
			wantReason: "no rate limit",
		},
		{
			name:       "RateRequestedButNotReturnedGrantsRequestedRate",
			respond:    answer(200, HeaderAllowedOrigin, origin),
			rate:       120,
			want:       Granted,
			wantRate:   120,
			wantReason: "WebHook-Allowed-Rate missing",
		},
		{
			name:    "WildcardOriginGranted",
			respond: answer(200, HeaderAllowedOrigin, "*", HeaderAllowedRate, "30"),
			want:    Granted, wantRate: 30,
		},
		{
			name:    "AllowWithPostGranted",
			respond: answer(200, HeaderAllowedOrigin, origin, "Allow", "OPTIONS, POST"),
			want:    Granted,
		},
		{
			name:       "StatusWithoutHeaderIsNotConsent",
			respond:    answer(200),
			want:       Refused,
			wantReason: "WebHook-Allowed-Origin missing",
		},
		{
			name:       "StatusWithoutHeaderIsPendingWithCallback",
			respond:    answer(200),
			callback:   "https://herald.example.com/handshake/callback?key=s3cret",
			want:       Pending,
			wantReason: "WebHook-Allowed-Origin missing",
		},
		{
			name:       "EmptyOriginHeaderIsNotConsent",
			respond:    answer(200, HeaderAllowedOrigin, ""),
			want:       Refused,
			wantReason: "WebHook-Allowed-Origin missing",
		},
		{
			name:       "MethodNotAllowedMeansNoHandshake",
			respond:    answer(405),
			callback:   "https://herald.example.com/handshake/callback?key=s3cret",
			want:       Refused,
			wantReason: "405 Method Not Allowed: the sink does not implement the handshake",
		},
		{
			name:       "NotFoundMeansNoHandshake",
			respond:    answer(404),
			want:       Refused,
			wantReason: "404 Not Found: the sink does not implement the handshake",
		},
		{
			name:       "NotImplementedMeansNoHandshake",
			respond:    answer(501),
			want:       Refused,
			wantReason: "501 Not Implemented: the sink does not implement the handshake",
		},
		{
			name:       "ClientErrorRefusesEvenWithHeader",
			respond:    answer(403, HeaderAllowedOrigin, origin),
			want:       Refused,
			wantReason: "403 Forbidden",
		},
		{
			name:       "OtherOriginRefused",
			respond:    answer(200, HeaderAllowedOrigin, "other.example.com"),
			want:       Refused,
			wantReason: "another origin",
		},
		{
			name:       "OriginWithOurNameAsPrefixRefused",
			respond:    answer(200, HeaderAllowedOrigin, origin+".attacker.tld"),
			want:       Refused,
			wantReason: "another origin",
		},
		{
			name:       "SeveralOriginsRefused",
			respond:    answer(200, HeaderAllowedOrigin, "other.example.com", HeaderAllowedOrigin, origin),
			want:       Refused,
			wantReason: "several",
		},
		{
			name:       "ZeroRateRefused",
			respond:    answer(200, HeaderAllowedOrigin, origin, HeaderAllowedRate, "0"),
			rate:       120,
			want:       Refused,
			wantReason: "invalid WebHook-Allowed-Rate",
		},
		{
			name:       "NonNumericRateRefused",
			respond:    answer(200, HeaderAllowedOrigin, origin, HeaderAllowedRate, "fast"),
			want:       Refused,
			wantReason: "invalid WebHook-Allowed-Rate",
		},
		{
			name:       "AllowWithoutPostRefused",
			respond:    answer(200, HeaderAllowedOrigin, origin, "Allow", "GET, OPTIONS"),
			want:       Refused,
			wantReason: "does not include POST",
		},
		{
			name:       "AllowWithoutPostRefusedEvenWithCallback",
			respond:    answer(200, "Allow", "GET, OPTIONS"),
			callback:   "https://herald.example.com/handshake/callback?key=s3cret",
			want:       Refused,
			wantReason: "does not include POST",
		},
	}
	c := NewClient(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := heraldtest.NewReceiver(t, tt.respond)
			got, err := c.Validate(t.Context(), Request{Sink: sink.URL, Origin: origin, Rate: tt.rate, CallbackURL: tt.callback})
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got.Outcome != tt.want || got.AllowedRate != tt.wantRate {
				t.Errorf("got %v at rate %d (%q), want %v at rate %d", got.Outcome, got.AllowedRate, got.Reason, tt.want, tt.wantRate)
			}
			if !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", got.Reason, tt.wantReason)
			}
			if got.StatusCode == 0 {
				t.Errorf("StatusCode not set")
			}
		})
	}
}

func TestValidate_SendsHandshakeHeaders(t *testing.T) {
	type seen struct {
		method, uri string
		header      http.Header
	}
	tests := []struct {
		name       string
		req        Request
		wantHeader map[string]string // "" means must be absent
	}{
		{
			name: "AllHeaders",
			req: Request{
				Origin:      origin,
				Rate:        120,
				CallbackURL: "https://herald.example.com/cb?key=abc",
				Headers:     map[string]string{"Authorization": "Bearer t0ken", "X-Tenant": "acme"},
			},
			wantHeader: map[string]string{
				HeaderRequestOrigin:   origin,
				HeaderRequestRate:     "120",
				HeaderRequestCallback: "https://herald.example.com/cb?key=abc",
				"Authorization":       "Bearer t0ken",
				"X-Tenant":            "acme",
			},
		},
		{
			name: "OnlyOriginWhenNoRateOrCallback",
			req:  Request{Origin: origin},
			wantHeader: map[string]string{
				HeaderRequestOrigin:   origin,
				HeaderRequestRate:     "",
				HeaderRequestCallback: "",
			},
		},
		{
			name: "HandshakeHeadersWinOverExtraHeaders",
			req: Request{
				Origin:  origin,
				Headers: map[string]string{"webhook-request-origin": "spoof.example.com", HeaderRequestRate: "9"},
			},
			wantHeader: map[string]string{
				HeaderRequestOrigin: origin,
				HeaderRequestRate:   "",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan seen, 1)
			sink := heraldtest.NewReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
				got <- seen{r.Method, r.URL.RequestURI(), r.Header.Clone()}
				return http.StatusOK, http.Header{HeaderAllowedOrigin: {origin}}
			})
			tt.req.Sink = sink.URL + "?sub=42&access_token=q"
			if _, err := NewClient(nil).Validate(t.Context(), tt.req); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			s := <-got
			if s.method != http.MethodOptions {
				t.Errorf("method = %s, want OPTIONS", s.method)
			}
			if s.uri != "/hook?sub=42&access_token=q" {
				t.Errorf("request URI = %s, want the exact sink with its query", s.uri)
			}
			for name, want := range tt.wantHeader {
				if vs := s.header.Values(name); want == "" && len(vs) > 0 {
					t.Errorf("%s = %q, want it absent", name, vs)
				} else if want != "" && (len(vs) != 1 || vs[0] != want) {
					t.Errorf("%s = %q, want %q", name, vs, want)
				}
			}
		})
	}
}

func TestValidate_DoesNotFollowRedirects(t *testing.T) {
	tests := []struct {
		name string
		hc   *http.Client
	}{
		{"DefaultClient", nil},
		{"CallerClientThatFollowsRedirects", &http.Client{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := heraldtest.NewReceiver(t, answer(200, HeaderAllowedOrigin, origin))
			sink := heraldtest.NewReceiver(t, answer(http.StatusTemporaryRedirect, "Location", target.URL))
			got, err := NewClient(tt.hc).Validate(t.Context(), Request{Sink: sink.URL, Origin: origin})
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got.Outcome != Refused || got.StatusCode != http.StatusTemporaryRedirect {
				t.Errorf("got %v (%d), want refused (307)", got.Outcome, got.StatusCode)
			}
			if !strings.Contains(got.Reason, "redirects are not followed") {
				t.Errorf("Reason = %q", got.Reason)
			}
			if n := len(target.Requests()); n != 0 {
				t.Errorf("redirect target got %d requests, want 0", n)
			}
			if tt.hc != nil && tt.hc.CheckRedirect != nil {
				t.Errorf("NewClient changed the caller's client")
			}
		})
	}
}

func TestValidate_RetryableStatusIsError(t *testing.T) {
	tests := []struct {
		name           string
		respond        heraldtest.Respond
		wantStatus     int
		wantRetryAfter time.Duration
	}{
		{"ServiceUnavailableWithRetryAfter", answer(503, "Retry-After", "7"), 503, 7 * time.Second},
		{"TooManyRequests", answer(429, "Retry-After", "120"), 429, 2 * time.Minute},
		{"InternalServerErrorEvenWithHeader", answer(500, HeaderAllowedOrigin, origin), 500, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := heraldtest.NewReceiver(t, tt.respond)
			got, err := NewClient(nil).Validate(t.Context(), Request{Sink: sink.URL, Origin: origin})
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *StatusError", err)
			}
			if se.StatusCode != tt.wantStatus || se.RetryAfter != tt.wantRetryAfter {
				t.Errorf("got %d retry after %s, want %d retry after %s", se.StatusCode, se.RetryAfter, tt.wantStatus, tt.wantRetryAfter)
			}
			if errors.Is(err, ErrInvalidRequest) {
				t.Errorf("a retryable error must not wrap ErrInvalidRequest")
			}
			if got.Outcome == Granted || got.StatusCode != tt.wantStatus {
				t.Errorf("Result = %+v", got)
			}
		})
	}
}

func TestValidate_TimeoutIsError(t *testing.T) {
	release := make(chan struct{})
	sink := heraldtest.NewReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return http.StatusOK, http.Header{HeaderAllowedOrigin: {origin}}
	})
	t.Cleanup(func() { close(release) }) // runs before the receiver closes

	t.Run("ClientTimeout", func(t *testing.T) {
		c := NewClient(&http.Client{Timeout: 50 * time.Millisecond})
		_, err := c.Validate(t.Context(), Request{Sink: sink.URL, Origin: origin})
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a timeout", err)
		}
	})
	t.Run("ContextDeadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := NewClient(nil).Validate(ctx, Request{Sink: sink.URL, Origin: origin})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestValidate_TransportErrorHidesSinkQuery(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more

	_, err := NewClient(nil).Validate(t.Context(), Request{Sink: url + "/hook?access_token=s3cret", Origin: origin})
	if err == nil {
		t.Fatal("Validate succeeded against a closed server")
	}
	if errors.Is(err, ErrInvalidRequest) {
		t.Errorf("a transport error must be retryable, got %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the sink's query: %v", err)
	}
}

func TestValidate_InvalidRequestSendsNothing(t *testing.T) {
	sink := heraldtest.NewReceiver(t, answer(200, HeaderAllowedOrigin, origin))
	tests := []struct {
		name string
		req  Request
	}{
		{"NoOrigin", Request{Sink: sink.URL}},
		{"BlankOrigin", Request{Sink: sink.URL, Origin: "  "}},
		{"OriginWithNewline", Request{Sink: sink.URL, Origin: "a.example.com\r\nX-Evil: 1"}},
		{"NegativeRate", Request{Sink: sink.URL, Origin: origin, Rate: -1}},
		{"NoSink", Request{Origin: origin}},
		{"RelativeSink", Request{Sink: "/hook", Origin: origin}},
		{"NonHTTPSink", Request{Sink: "ftp://example.com/hook", Origin: origin}},
		{"RelativeCallback", Request{Sink: sink.URL, Origin: origin, CallbackURL: "/cb"}},
		{"BadHeaderName", Request{Sink: sink.URL, Origin: origin, Headers: map[string]string{"Bad Name": "x"}}},
		{"BadHeaderValue", Request{Sink: sink.URL, Origin: origin, Headers: map[string]string{"Authorization": "Bearer x\ny"}}},
	}
	c := NewClient(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Validate(t.Context(), tt.req)
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("err = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if n := len(sink.Requests()); n != 0 {
		t.Errorf("sink got %d requests, want 0", n)
	}
}

func TestValidate_ConcurrentUse(t *testing.T) {
	sink := heraldtest.NewReceiver(t, answer(200, HeaderAllowedOrigin, origin, HeaderAllowedRate, "60"))
	c := NewClient(nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			got, err := c.Validate(t.Context(), Request{Sink: sink.URL, Origin: origin, Rate: 60})
			if err == nil && got.Outcome != Granted {
				err = errors.New("not granted: " + got.Reason)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestOutcome_String(t *testing.T) {
	for o, want := range map[Outcome]string{Refused: "refused", Pending: "pending", Granted: "granted", 9: "Outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(o), got, want)
		}
	}
	var r Result
	if r.Outcome != Refused {
		t.Errorf("zero Result is %v, want refused", r.Outcome)
	}
}
