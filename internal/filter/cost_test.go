package filter

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/internal/policy"
)

// concatWS nests CONCAT_WS n deep over subject, each level tripling the
// string: the shape of the 541-character filter that once took a node's
// memory on its first matching event.
func concatWS(n int) string {
	s := "subject"
	for range n {
		s = "CONCAT_WS(" + s + ", " + s + ", " + s + ")"
	}
	return "LENGTH(" + s + ") > 0"
}

// TestSQL_HostileFiltersAreRefusedAtCreate: filters built to be expensive
// are refused when the subscription is created, before any event meets
// them, and each error says why.
func TestSQL_HostileFiltersAreRefusedAtCreate(t *testing.T) {
	tests := []struct {
		name, sql, want string
	}{
		{"CONCAT_WS nested to grow a string exponentially", concatWS(3), "times as long as the event's attributes"},
		{"a 4 MB NOT NOT ...", strings.Repeat("NOT ", 1<<20) + "TRUE", "bytes; at most"},
		{"NOT nested deeper than the limit", strings.Repeat("NOT ", policy.MaxFilterDepth+1) + "TRUE", "nest"},
		{"more function calls than the limit", strings.TrimSuffix(strings.Repeat("LENGTH(subject) > 0 AND ", policy.MaxFilterCalls+1), " AND "), "function calls"},
		{"a separator repeated into a huge string", "LENGTH(CONCAT_WS('" + strings.Repeat("x", 1500) + "', " + strings.TrimSuffix(strings.Repeat("'a', ", 100), ", ") + ")) > 0", "bytes from its literals"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := Validate([]Expression{{SQL: tt.sql}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error saying %q", err, tt.want)
			}
			t.Logf("refused in %s: %v", time.Since(start), err)
		})
	}
}

// TestSQL_OrdinaryFiltersStayAccepted: the bounds leave room for what
// people write, string functions included.
func TestSQL_OrdinaryFiltersStayAccepted(t *testing.T) {
	for _, sql := range []string{
		"type = 'com.example.order.created' AND subject LIKE 'orders/%'",
		"CONCAT(source, '/', subject) = 'https://example.com/orders/orders/42'",
		"LOWER(tenant) IN ('acme', 'globex') OR priority > 3",
		"CONCAT_WS('-', tenant, subject) = 'acme-orders/42'",
		strings.TrimSuffix(strings.Repeat("type = 'x' OR ", 200), " OR ") + " OR TRUE", // long chains do not nest work
		strings.Repeat("NOT ", 10) + "FALSE",
	} {
		f, err := Compile([]Expression{{SQL: sql}})
		if err != nil {
			t.Errorf("Compile(%.60q...): %v", sql, err)
			continue
		}
		_ = f.Match(orderEvent(t))
	}
	f, err := Compile([]Expression{{SQL: "CONCAT_WS('-', tenant, subject) = 'acme-orders/42'"}})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(orderEvent(t)) {
		t.Error("CONCAT_WS filter does not match")
	}
	var e *event.Event
	_ = f.Match(e)
}
