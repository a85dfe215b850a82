package filter

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestValidate_Errors(t *testing.T) {
	valid := Expression{Exact: m{"type": "t"}}
	tests := []struct {
		name    string
		filters []Expression
		want    string
	}{
		{"no dialect", []Expression{valid, valid, {}}, "filters[2]: exactly one dialect must be set"},
		{"two dialects", []Expression{{Exact: m{"type": "t"}, Prefix: m{"type": "t"}}}, "filters[0]: exactly one dialect must be set"},
		{"sql and exact", []Expression{{Exact: m{"type": "t"}, SQL: "TRUE"}}, "filters[0]: exactly one dialect must be set"},
		{"empty exact", []Expression{{Exact: m{}}}, "filters[0].exact: must not be empty"},
		{"empty prefix", []Expression{{Prefix: m{}}}, "filters[0].prefix: must not be empty"},
		{"empty suffix", []Expression{{Suffix: m{}}}, "filters[0].suffix: must not be empty"},
		{"exact empty attribute name", []Expression{{Exact: m{"": "x"}}}, "filters[0].exact: empty attribute name"},
		{"prefix empty attribute name", []Expression{{Prefix: m{"type": "t", "": "x"}}}, "filters[0].prefix: empty attribute name"},
		{"exact empty value", []Expression{{Exact: m{"type": ""}}}, `filters[0].exact: empty value for attribute "type"`},
		{"suffix empty value", []Expression{{Suffix: m{"subject": ""}}}, `filters[0].suffix: empty value for attribute "subject"`},
		{"empty all", []Expression{valid, {All: []Expression{}}}, "filters[1].all: must not be empty"},
		{"empty any", []Expression{{Any: []Expression{}}}, "filters[0].any: must not be empty"},
		{"not without a dialect", []Expression{{Not: &Expression{}}}, "filters[0].not: exactly one dialect must be set"},
		{"nested path", []Expression{{All: []Expression{valid, {Not: &Expression{Any: []Expression{valid, {Exact: m{"": "x"}}}}}}}}, "filters[0].all[1].not.any[1].exact: empty attribute name"},
		{"sql syntax error", []Expression{{SQL: "type = 'a' garbage"}}, "filters[0].sql: parse error at line 1, column 12: extraneous input 'garbage' expecting <EOF>"},
		{"sql that makes sdk-go's parser panic", []Expression{{SQL: "type = "}}, "filters[0].sql: parse error at line 1, column 8: mismatched input '<EOF>'"},
		{"sql lexer error", []Expression{{SQL: "a ! b"}}, "filters[0].sql: parse error at line 1, column 3: token recognition error at: '! '"},
		{"sql blank", []Expression{{SQL: "  "}}, "filters[0].sql: parse error at line 1, column 3"},
		{"nested sql", []Expression{{Any: []Expression{valid, {SQL: "1 +"}}}}, "filters[0].any[1].sql: parse error at line 1, column 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.filters)
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Validate = %q, want it to start with %q", err, tt.want)
			}
			var pe *PathError
			if !errors.As(err, &pe) || !strings.HasPrefix(tt.want, pe.Path+": ") {
				t.Errorf("error %v is not a *PathError with the path of %q", err, tt.want)
			}
			if _, cerr := Compile(tt.filters); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Compile error %v, want the Validate error %v", cerr, err)
			}
		})
	}
}

func TestValidate_AcceptsEveryDialect(t *testing.T) {
	filters := []Expression{
		{Exact: m{"type": "t", "tenant": "acme"}},
		{Prefix: m{"subject": "orders/"}},
		{Suffix: m{"type": ".created"}},
		{All: []Expression{{Exact: m{"a": "b"}}}},
		{Any: []Expression{{Exact: m{"a": "b"}}, {Not: &Expression{SQL: "EXISTS a"}}}},
		{Not: &Expression{Prefix: m{"a": "b"}}},
		{SQL: "type LIKE 'com.example.%' AND (priority > 3 OR urgent)"},
	}
	if err := Validate(filters); err != nil {
		t.Fatal(err)
	}
	if err := Validate(nil); err != nil {
		t.Fatalf("Validate(nil) = %v", err)
	}
}

// The Subscriptions API receives filters as JSON: an empty array or object
// is a dialect that is set and empty, not an absent one.
func TestValidate_JSON(t *testing.T) {
	tests := []struct {
		json string
		want string // "" for valid
	}{
		{`[{"exact": {"type": "t"}}, {"not": {"prefix": {"subject": "a/"}}}]`, ""},
		{`[{"sql": "EXISTS tenant"}]`, ""},
		{`[{"all": []}]`, "filters[0].all: must not be empty"},
		{`[{"exact": {}}]`, "filters[0].exact: must not be empty"},
		{`[{"any": [{"exact": {"type": "t"}}]}, {"not": {}}]`, "filters[1].not: exactly one dialect must be set"},
		{`[{}]`, "filters[0]: exactly one dialect must be set"},
		{`[{"sql": ""}]`, "filters[0]: exactly one dialect must be set"},
		{`[{"exact": {"type": "t"}, "suffix": {"type": "t"}}]`, "filters[0]: exactly one dialect must be set"},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			var filters []Expression
			if err := json.Unmarshal([]byte(tt.json), &filters); err != nil {
				t.Fatal(err)
			}
			err := Validate(filters)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}
