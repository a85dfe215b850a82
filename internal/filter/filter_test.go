package filter

import (
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

type m = map[string]string

func TestFilter_Match(t *testing.T) {
	full := orderEvent(t)
	bare := bareEvent(t)
	tests := []struct {
		name    string
		event   *event.Event
		filters []Expression
		want    bool
	}{
		{"no filters match everything", full, nil, true},

		// exact
		{"exact type", full, []Expression{{Exact: m{"type": "com.example.order.created"}}}, true},
		{"exact type other value", full, []Expression{{Exact: m{"type": "com.example.order.deleted"}}}, false},
		{"exact value is case-sensitive", full, []Expression{{Exact: m{"type": "com.example.ORDER.created"}}}, false},
		{"exact name is case-sensitive", full, []Expression{{Exact: m{"Type": "com.example.order.created"}}}, false},
		{"exact keys are ANDed, all true", full, []Expression{{Exact: m{"type": "com.example.order.created", "subject": "orders/42"}}}, true},
		{"exact keys are ANDed, one false", full, []Expression{{Exact: m{"type": "com.example.order.created", "subject": "orders/43"}}}, false},
		{"exact id", full, []Expression{{Exact: m{"id": "evt-1"}}}, true},
		{"exact source as given", full, []Expression{{Exact: m{"source": "https://example.com/orders"}}}, true},
		{"exact relative source", bare, []Expression{{Exact: m{"source": "/orders"}}}, true},
		{"exact specversion", full, []Expression{{Exact: m{"specversion": "1.0"}}}, true},
		{"exact datacontenttype", full, []Expression{{Exact: m{"datacontenttype": "application/json"}}}, true},
		{"exact dataschema", full, []Expression{{Exact: m{"dataschema": "https://example.com/schemas/order.json"}}}, true},
		{"exact time is RFC 3339 in UTC", full, []Expression{{Exact: m{"time": "2024-01-02T02:04:05.6Z"}}}, true},
		{"exact time with the event's own offset does not match", full, []Expression{{Exact: m{"time": "2024-01-02T03:04:05.6+01:00"}}}, false},
		{"exact string extension", full, []Expression{{Exact: m{"tenant": "acme"}}}, true},
		{"exact integer extension in decimal", full, []Expression{{Exact: m{"priority": "5"}}}, true},
		{"exact boolean extension", full, []Expression{{Exact: m{"urgent": "true"}}}, true},
		{"exact boolean extension is lower case", full, []Expression{{Exact: m{"urgent": "TRUE"}}}, false},
		{"exact binary extension in base64", full, []Expression{{Exact: m{"blob": "AQID"}}}, true},
		{"exact URI extension", full, []Expression{{Exact: m{"ref": "https://example.com/ref"}}}, true},
		{"exact timestamp extension", full, []Expression{{Exact: m{"created": "2023-12-31T23:00:00Z"}}}, true},
		{"exact missing subject is false", bare, []Expression{{Exact: m{"subject": "orders/42"}}}, false},
		{"exact missing time is false", bare, []Expression{{Exact: m{"time": "2024-01-02T02:04:05.6Z"}}}, false},
		{"exact missing extension is false", bare, []Expression{{Exact: m{"tenant": "acme"}}}, false},
		{"exact extension name is case-sensitive", full, []Expression{{Exact: m{"Tenant": "acme"}}}, false},

		// prefix
		{"prefix type", full, []Expression{{Prefix: m{"type": "com.example."}}}, true},
		{"prefix is case-sensitive", full, []Expression{{Prefix: m{"type": "COM.example."}}}, false},
		{"prefix equal to the whole value", full, []Expression{{Prefix: m{"subject": "orders/42"}}}, true},
		{"prefix longer than the value", full, []Expression{{Prefix: m{"subject": "orders/42/items"}}}, false},
		{"prefix keys are ANDed", full, []Expression{{Prefix: m{"type": "com.", "subject": "users/"}}}, false},
		{"prefix extension", full, []Expression{{Prefix: m{"tenant": "ac"}}}, true},
		{"prefix time", full, []Expression{{Prefix: m{"time": "2024-01-02T"}}}, true},
		{"prefix missing attribute is false", bare, []Expression{{Prefix: m{"subject": "o"}}}, false},
		{"prefix missing extension is false", bare, []Expression{{Prefix: m{"tenant": "a"}}}, false},

		// suffix
		{"suffix type", full, []Expression{{Suffix: m{"type": ".created"}}}, true},
		{"suffix is case-sensitive", full, []Expression{{Suffix: m{"type": ".Created"}}}, false},
		{"suffix keys are ANDed", full, []Expression{{Suffix: m{"type": ".created", "subject": "/42"}}}, true},
		{"suffix keys are ANDed, one false", full, []Expression{{Suffix: m{"type": ".created", "subject": "/43"}}}, false},
		{"suffix integer extension", full, []Expression{{Suffix: m{"priority": "5"}}}, true},
		{"suffix missing attribute is false", bare, []Expression{{Suffix: m{"subject": "42"}}}, false},

		// all, any, not
		{"all true", full, []Expression{{All: []Expression{{Exact: m{"tenant": "acme"}}, {Prefix: m{"subject": "orders/"}}}}}, true},
		{"all with one false", full, []Expression{{All: []Expression{{Exact: m{"tenant": "acme"}}, {Prefix: m{"subject": "users/"}}}}}, false},
		{"any with one true", full, []Expression{{Any: []Expression{{Exact: m{"tenant": "other"}}, {Suffix: m{"subject": "/42"}}}}}, true},
		{"any with none true", full, []Expression{{Any: []Expression{{Exact: m{"tenant": "other"}}, {Suffix: m{"subject": "/43"}}}}}, false},
		{"not inverts true", full, []Expression{{Not: &Expression{Exact: m{"tenant": "acme"}}}}, false},
		{"not inverts false", full, []Expression{{Not: &Expression{Exact: m{"tenant": "other"}}}}, true},
		{"not of a missing attribute is true", bare, []Expression{{Not: &Expression{Exact: m{"tenant": "acme"}}}}, true},
		{"double not", full, []Expression{{Not: &Expression{Not: &Expression{Exact: m{"tenant": "acme"}}}}}, true},
		{"nested all of any and not", full, []Expression{{All: []Expression{
			{Any: []Expression{{Exact: m{"type": "x"}}, {Prefix: m{"type": "com.example.order."}}}},
			{Not: &Expression{Any: []Expression{{Exact: m{"tenant": "globex"}}, {Exact: m{"urgent": "false"}}}}},
		}}}, true},
		{"nested any of all", full, []Expression{{Any: []Expression{
			{All: []Expression{{Exact: m{"tenant": "acme"}}, {Exact: m{"priority": "6"}}}},
			{All: []Expression{{Exact: m{"tenant": "globex"}}, {Exact: m{"priority": "5"}}}},
		}}}, false},
		{"top-level filters are ANDed", full, []Expression{{Exact: m{"tenant": "acme"}}, {Suffix: m{"type": ".deleted"}}}, false},

		// sql
		{"sql true", full, []Expression{{SQL: "type = 'com.example.order.created' AND priority > 3"}}, true},
		{"sql false", full, []Expression{{SQL: "priority > 10"}}, false},
		{"sql literal TRUE", full, []Expression{{SQL: "TRUE"}}, true},
		{"sql keywords in any case", full, []Expression{{SQL: "subject like 'orders/%' and exists tenant"}}, true},
		{"sql string result is false", full, []Expression{{SQL: "'true'"}}, false},
		{"sql integer result is false", full, []Expression{{SQL: "priority + 1"}}, false},
		{"sql attribute as string result is false", full, []Expression{{SQL: "tenant"}}, false},
		{"sql missing attribute is false", bare, []Expression{{SQL: "subject = 'orders/42'"}}, false},
		{"sql NOT of an error is still false", bare, []Expression{{SQL: "NOT (subject = 'orders/42')"}}, false},
		{"sql EXISTS of a missing attribute", bare, []Expression{{SQL: "NOT EXISTS subject"}}, true},
		{"sql division by zero is false", full, []Expression{{SQL: "priority / 0 = 1"}}, false},
		{"sql error with a result is false", full, []Expression{{SQL: "ABS(-2147483648) = 2147483647"}}, false},
		{"sql unknown function is false", full, []Expression{{SQL: "NOSUCH(type)"}}, false},
		{"sql inside not", full, []Expression{{Not: &Expression{SQL: "tenant = 'globex'"}}}, true},
		{"sql inside any after a cheap true branch", full, []Expression{{Any: []Expression{{SQL: "1 / 0 = 1"}, {Exact: m{"tenant": "acme"}}}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.filters)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if got := f.Match(tt.event); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			// Matching twice gives the same answer (nothing leaks between
			// matches through the pooled attribute cache).
			if got := f.Match(tt.event); got != tt.want {
				t.Errorf("second Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFilter_MatchV03Event(t *testing.T) {
	e := event.New(event.CloudEventsVersionV03)
	e.SetID("evt-3")
	e.SetSource("https://example.com/legacy")
	e.SetType("com.example.legacy")
	e.SetSubject("s")
	e.SetExtension("tenant", "acme")
	tests := []struct {
		name   string
		filter Expression
		want   bool
	}{
		{"specversion", Expression{Exact: m{"specversion": "0.3"}}, true},
		{"source", Expression{Exact: m{"source": "https://example.com/legacy"}}, true},
		{"type prefix", Expression{Prefix: m{"type": "com.example."}}, true},
		{"subject", Expression{Exact: m{"subject": "s"}}, true},
		{"extension", Expression{Exact: m{"tenant": "acme"}}, true},
		{"missing time", Expression{Prefix: m{"time": "2"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile([]Expression{tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Match(&e); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFilter_MatchEventWithoutContextNeverPanics(t *testing.T) {
	for i, e := range []*event.Event{nil, {}} {
		for _, tt := range []struct {
			filter Expression
			want   bool
		}{
			{Expression{Exact: m{"type": "t"}}, false},
			{Expression{Not: &Expression{Exact: m{"type": "t"}}}, true},
			{Expression{SQL: "TRUE"}, true},
			{Expression{SQL: "type = 't'"}, false},
		} {
			f, err := Compile([]Expression{tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Match(e); got != tt.want {
				t.Errorf("event %d: Match with %+v = %v, want %v", i, tt.filter, got, tt.want)
			}
		}
	}
}

func TestFilter_ZeroValueMatchesEverything(t *testing.T) {
	var f Filter
	if !f.Match(bareEvent(t)) {
		t.Error("zero Filter did not match")
	}
	var nilFilter *Filter
	if !nilFilter.Match(bareEvent(t)) {
		t.Error("nil *Filter did not match")
	}
}

// A view caches formatted attribute values within one match and source
// strings across matches; a changed event must still be read afresh.
func TestFilter_MatchSeesChangesBetweenCalls(t *testing.T) {
	e := orderEvent(t)
	f, err := Compile([]Expression{{Exact: m{"source": "https://example.com/orders", "time": "2024-01-02T02:04:05.6Z", "priority": "5"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(e) {
		t.Fatal("first Match = false, want true")
	}
	for _, change := range []func(){
		func() { e.SetSource("https://example.com/users") },
		func() { e.SetSource("https://example.com/orders"); e.SetExtension("priority", 6) },
		func() { e.SetExtension("priority", 5); e.SetTime(e.Time().Add(time.Second)) },
	} {
		change()
		if f.Match(e) {
			t.Errorf("Match after a change = true, want false")
		}
	}
}
