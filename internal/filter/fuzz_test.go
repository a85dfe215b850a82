package filter

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

// FuzzCompileSQL checks that any CESQL text either fails to compile with a
// parse error or compiles to a filter that evaluates without panicking.
func FuzzCompileSQL(f *testing.F) {
	for _, s := range []string{
		"TRUE", "type = 'com.example.order.created'", "subject LIKE 'orders/%' AND EXISTS tenant",
		"priority + 1", "priority / 0 = 1", "ABS(-2147483648) = 2147483647", "NOSUCH(type)",
		"type IN ('a', 'b', tenant)", "NOT (urgent OR FALSE)", "-(-priority) >= 5", "CONCAT(type, '.', subject)",
		"type = ", "1 +", "type = 'a' garbage", "((((", "'unterminated", "a ! b", "",
	} {
		f.Add(s)
	}
	full, bare := orderEvent(f), bareEvent(f)
	f.Fuzz(func(t *testing.T, sql string) {
		filter, err := Compile([]Expression{{SQL: sql}})
		if err != nil {
			return
		}
		filter.Match(full)
		filter.Match(bare)
		filter.Match(nil)
	})
}

// FuzzValidate checks that any JSON filters array either fails validation
// or compiles into a Filter and a Set that match without panicking and
// agree with each other.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`[{"exact": {"type": "com.example.order.created"}}]`,
		`[{"prefix": {"type": "com."}}, {"suffix": {"subject": "/42"}}]`,
		`[{"all": [{"any": [{"exact": {"tenant": "acme"}}, {"not": {"sql": "priority > 3"}}]}]}]`,
		`[{"any": [{"exact": {"type": "a"}}, {"exact": {"type": "com.example.order.created"}}]}]`,
		`[{"all": []}]`, `[{"not": {}}]`, `[{}]`, `[{"exact": {"": ""}}]`, `[{"sql": "type = "}]`,
	} {
		f.Add([]byte(s))
	}
	full, bare := orderEvent(f), bareEvent(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var filters []Expression
		if json.Unmarshal(data, &filters) != nil {
			return
		}
		verr := Validate(filters)
		filter, err := Compile(filters)
		if (verr == nil) != (err == nil) {
			t.Fatalf("Validate error %v but Compile error %v", verr, err)
		}
		rules := []Rule{{ID: "r", Filters: filters}}
		set, serr := NewSet(rules)
		if (serr == nil) != (err == nil) {
			t.Fatalf("NewSet error %v but Compile error %v", serr, err)
		}
		if err != nil {
			return
		}
		for _, e := range []*eventForFuzz{{"full", full}, {"bare", bare}} {
			want := filter.Match(e.event)
			got := len(set.Match(e.event, nil)) == 1
			if got != want {
				t.Fatalf("%s event: Set.Match = %v, Filter.Match = %v", e.name, got, want)
			}
		}
	})
}

type eventForFuzz struct {
	name  string
	event *event.Event
}

// TestCompile_Concurrent compiles CESQL from several goroutines at once, as
// an API server does; run with -race.
func TestCompile_Concurrent(t *testing.T) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if _, err := Compile([]Expression{{SQL: "subject LIKE 'orders/%' AND (priority > 3 OR tenant IN ('a', 'b'))"}}); err != nil {
					t.Error(err)
					return
				}
				if _, err := Compile([]Expression{{SQL: "type = "}}); err == nil {
					t.Error("Compile accepted a syntax error")
					return
				}
			}
		})
	}
	wg.Wait()
}
