package handshake

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestParseAllowedRate(t *testing.T) {
	tests := []struct {
		in            string
		wantRate      int
		wantUnlimited bool
		wantErr       bool
	}{
		{"", 0, false, false},
		{"*", 0, true, false},
		{" * ", 0, true, false},
		{"100", 100, false, false},
		{"1", 1, false, false},
		{"\t60 ", 60, false, false},
		{"060", 60, false, false},
		{"0", 0, false, true},
		{"000", 0, false, true},
		{"-5", 0, false, true},
		{"+5", 0, false, true},
		{"1.5", 0, false, true},
		{"1e3", 0, false, true},
		{"10 20", 0, false, true},
		{"**", 0, false, true},
		{"fast", 0, false, true},
		{"99999999999999999999999", 0, false, true},
	}
	for _, tt := range tests {
		rate, unlimited, err := ParseAllowedRate(tt.in)
		if rate != tt.wantRate || unlimited != tt.wantUnlimited || (err != nil) != tt.wantErr {
			t.Errorf("ParseAllowedRate(%q) = %d, %v, %v; want %d, %v, error %v", tt.in, rate, unlimited, err, tt.wantRate, tt.wantUnlimited, tt.wantErr)
		}
	}
}

func FuzzParseAllowedRate(f *testing.F) {
	for _, s := range []string{"", "*", "100", "0", "-1", "+1", " 7 ", "060", "1.5", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		rate, unlimited, err := ParseAllowedRate(v)
		trimmed := strings.Trim(v, " \t")
		switch {
		case err != nil:
			if rate != 0 || unlimited {
				t.Fatalf("ParseAllowedRate(%q) = %d, %v with error %v", v, rate, unlimited, err)
			}
		case unlimited:
			if trimmed != "*" || rate != 0 {
				t.Fatalf("ParseAllowedRate(%q) = %d, unlimited", v, rate)
			}
		case rate == 0:
			if trimmed != "" {
				t.Fatalf("ParseAllowedRate(%q) = absent, want a rate or an error", v)
			}
		default:
			// A rate is only ever the decimal digits of the value.
			if rate < 0 || strconv.Itoa(rate) != strings.TrimLeft(trimmed, "0") {
				t.Fatalf("ParseAllowedRate(%q) = %d", v, rate)
			}
		}
	})
}

func TestParseGrant(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		rate      string // WebHook-Allowed-Rate on the callback, "" = absent
		requested int
		want      int
		wantErr   bool
	}{
		{"BrowserGetWithoutRateGrantsRequestedRate", http.MethodGet, "", 120, 120, false},
		{"GetWithoutRateAndNoneRequestedIsUnlimited", http.MethodGet, "", 0, 0, false},
		{"PostWithRate", http.MethodPost, "50", 120, 50, false},
		{"PostWithUnlimitedRate", http.MethodPost, "*", 120, 0, false},
		{"InvalidRate", http.MethodPost, "lots", 120, 0, true},
		{"OtherMethod", http.MethodPut, "50", 120, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "https://herald.example.com/handshake/callback?key=s3cret", nil)
			if tt.rate != "" {
				r.Header.Set(HeaderAllowedRate, tt.rate)
			}
			got, err := ParseGrant(r, tt.requested)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("ParseGrant = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
