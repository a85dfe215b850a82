package policy

import (
	"net/http"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		status int
		want   Outcome
	}{
		{0, Retryable}, // no response: connection, TLS or timeout error
		{200, Delivered}, {201, Delivered}, {202, Delivered}, {204, Delivered},
		{301, Permanent}, {302, Permanent}, {307, Permanent}, // redirects are never followed
		{400, Permanent}, {401, Permanent}, {403, Permanent}, {413, Permanent}, {415, Permanent}, {422, Permanent},
		{404, Retryable}, {408, Retryable}, {409, Retryable}, {425, Retryable}, {429, Retryable},
		{410, Gone},
		{500, Retryable}, {502, Retryable}, {503, Retryable}, {504, Retryable},
	}
	for _, tt := range tests {
		if got := DefaultRetry.Classify(tt.status); got != tt.want {
			t.Errorf("Classify(%d) = %s, want %s", tt.status, got, tt.want)
		}
	}
}

func TestClassify_SubscriptionOverrides(t *testing.T) {
	r := Retry{PermanentStatus: []int{500}, RetryableStatus: []int{400}}.WithDefaults()
	if got := r.Classify(500); got != Permanent {
		t.Errorf("500 with override = %s, want permanent", got)
	}
	if got := r.Classify(400); got != Retryable {
		t.Errorf("400 with override = %s, want retryable", got)
	}
	if got := r.Classify(200); got != Delivered {
		t.Errorf("200 = %s: overrides must not touch 2xx", got)
	}
}

func TestCap_GrowsToTheMaximum(t *testing.T) {
	r := DefaultRetry
	want := []time.Duration{5 * time.Second, 30 * time.Second, 3 * time.Minute, 18 * time.Minute, 108 * time.Minute, 10 * time.Hour, 10 * time.Hour}
	for i, w := range want {
		if got := r.Cap(i + 1); got != w {
			t.Errorf("Cap(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := r.Cap(1000); got != r.MaximumInterval {
		t.Errorf("Cap(1000) = %s, want the maximum", got)
	}
}

func TestWithDefaults_KeepsSetFields(t *testing.T) {
	r := Retry{InitialInterval: time.Second, MaximumAttempts: 3}.WithDefaults()
	if r.InitialInterval != time.Second || r.MaximumAttempts != 3 || r.MaximumAge != DefaultRetry.MaximumAge ||
		r.BackoffCoefficient != DefaultRetry.BackoffCoefficient {
		t.Errorf("WithDefaults = %+v", r)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"2", 2 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"9223372036854775807", MaxRetryAfter},
		{"31536000000", MaxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(1000 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
	}
	for _, tt := range tests {
		if got := ParseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestPausesSink(t *testing.T) {
	for status, want := range map[int]bool{429: true, 503: true, 500: false, 502: false, 200: false} {
		if got := PausesSink(status); got != want {
			t.Errorf("PausesSink(%d) = %v", status, got)
		}
	}
}
