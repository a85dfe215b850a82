package filter

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Rule is one subscription's matching criteria. An event matches when its
// source equals Source (if set), its type is one of Types (if any), and
// every filter expression is true.
type Rule struct {
	ID      string
	Source  string
	Types   []string
	Filters []Expression
}

// Set matches events against many rules. Rules are compiled once and
// indexed on event type, taken from Types and from type constraints in the
// filters (a top-level exact "type", also inside a top-level all, or an any
// whose every branch fixes the type), so matching an event evaluates only
// the rules that accept its type plus the rules with no type constraint.
//
// A Set is immutable and safe for concurrent use.
type Set struct {
	rules   []setRule
	byType  map[string][]int32 // rule indexes, ascending
	untyped []int32            // rules with no type constraint, ascending
}

type setRule struct {
	id     string
	source string
	filter Filter
}

// NewSet compiles and indexes rules. It fails on the first rule whose
// filters do not validate, naming the rule.
func NewSet(rules []Rule) (*Set, error) {
	if len(rules) > math.MaxInt32 {
		return nil, fmt.Errorf("too many rules: %d", len(rules))
	}
	s := &Set{
		rules:  make([]setRule, len(rules)),
		byType: make(map[string][]int32),
	}
	for i, r := range rules {
		f, err := Compile(r.Filters)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.ID, err)
		}
		s.rules[i] = setRule{id: r.ID, source: r.Source, filter: *f}

		types, constrained := ruleTypes(r)
		if !constrained {
			s.untyped = append(s.untyped, int32(i))
			continue
		}
		// An empty constraint (Types and filters disagree) can never
		// match: the rule is in no list.
		for _, t := range slices.Sorted(maps.Keys(types)) {
			s.byType[t] = append(s.byType[t], int32(i))
		}
	}
	return s, nil
}

// Match appends to dst the IDs of the rules that match e, in rule order,
// and returns the extended slice.
func (s *Set) Match(e *event.Event, dst []string) []string {
	if s == nil || len(s.rules) == 0 {
		return dst
	}
	v := getView(e)
	defer putView(v)

	// Both lists are ascending and disjoint: merge them to keep rule order.
	typed, untyped := s.byType[v.get(attribute{kind: attrType})], s.untyped
	for len(typed) > 0 || len(untyped) > 0 {
		var i int32
		if len(untyped) == 0 || (len(typed) > 0 && typed[0] < untyped[0]) {
			i, typed = typed[0], typed[1:]
		} else {
			i, untyped = untyped[0], untyped[1:]
		}
		// A rule in the typed list accepts this type by construction, so
		// only its source and filters are left to check.
		r := &s.rules[i]
		if r.source != "" && v.get(attribute{kind: attrSource}) != r.source {
			continue
		}
		if r.filter.match(v) {
			dst = append(dst, r.id)
		}
	}
	return dst
}

// ruleTypes returns the set of event types r can match, or constrained
// false if r can match any type. It only narrows what the filters prove:
// a rule is never left out of a type it could match.
func ruleTypes(r Rule) (types map[string]struct{}, constrained bool) {
	if len(r.Types) > 0 {
		types, constrained = make(map[string]struct{}, len(r.Types)), true
		for _, t := range r.Types {
			types[t] = struct{}{}
		}
	}
	for i := range r.Filters {
		if ft, ok := expressionTypes(&r.Filters[i]); ok {
			types, constrained = intersect(types, constrained, ft), true
		}
	}
	return types, constrained
}

// expressionTypes returns the set of event types x can be true for, when x
// limits the type at all. x has been validated.
func expressionTypes(x *Expression) (map[string]struct{}, bool) {
	switch {
	case x.Exact != nil:
		if t, ok := x.Exact["type"]; ok {
			return map[string]struct{}{t: {}}, true
		}
	case x.All != nil:
		var types map[string]struct{}
		constrained := false
		for i := range x.All {
			if ct, ok := expressionTypes(&x.All[i]); ok {
				types, constrained = intersect(types, constrained, ct), true
			}
		}
		return types, constrained
	case x.Any != nil:
		types := make(map[string]struct{})
		for i := range x.Any {
			ct, ok := expressionTypes(&x.Any[i])
			if !ok {
				return nil, false // this branch may accept any type
			}
			maps.Copy(types, ct)
		}
		return types, true
	}
	return nil, false
}

// intersect narrows the constraint (a, aConstrained) by b.
func intersect(a map[string]struct{}, aConstrained bool, b map[string]struct{}) map[string]struct{} {
	if !aConstrained {
		return b
	}
	out := make(map[string]struct{})
	for t := range a {
		if _, ok := b[t]; ok {
			out[t] = struct{}{}
		}
	}
	return out
}
