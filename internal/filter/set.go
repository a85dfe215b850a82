package filter

import (
	"fmt"
	"maps"
	"slices"
	"strings"

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
// indexed on the event types they can accept, as proven by Types and by the
// filters: an exact "type" or a prefix "type" at the top level or inside a
// top-level all, or an any whose every branch fixes the type exactly.
// Matching an event then evaluates only the rules indexed under its type or
// under a prefix of it, plus the rules with no type constraint.
//
// A Set is immutable and safe for concurrent use. Update makes a new Set
// from an old one at a cost that follows the rules changed and the
// lengths of the index lists they are in, not the number of rules.
type Set struct {
	byType     map[string][]ruleRef // by exact type, in rule order
	byPrefix   map[string][]ruleRef // by type prefix, in rule order
	prefixLens []int                // the distinct lengths of byPrefix's keys, ascending
	untyped    []ruleRef            // rules with no type constraint, in rule order
	size       int
	next       uint64 // the order of the next rule added
}

// ruleRef is a rule in an index list; ord is its place in rule order.
type ruleRef struct {
	ord  uint64
	rule *setRule
}

type setRule struct {
	id     string
	source string
	filter Filter
}

// CompiledRule is a rule compiled for a Set, so that a set of many rules
// can be indexed again without compiling the rules that did not change.
type CompiledRule struct {
	rule       setRule
	constraint typeConstraint
}

// CompileRule compiles one rule.
func CompileRule(r Rule) (*CompiledRule, error) {
	f, err := Compile(r.Filters)
	if err != nil {
		return nil, fmt.Errorf("rule %q: %w", r.ID, err)
	}
	return &CompiledRule{rule: setRule{id: r.ID, source: r.Source, filter: *f}, constraint: ruleTypes(r)}, nil
}

// NewSet compiles and indexes rules. It fails on the first rule whose
// filters do not validate, naming the rule.
func NewSet(rules []Rule) (*Set, error) {
	compiled := make([]*CompiledRule, len(rules))
	for i, r := range rules {
		c, err := CompileRule(r)
		if err != nil {
			return nil, err
		}
		compiled[i] = c
	}
	return IndexSet(compiled), nil
}

// IndexSet indexes compiled rules into a Set, in the order given (the
// order Match reports them in).
func IndexSet(rules []*CompiledRule) *Set {
	return (&Set{}).Update(nil, rules)
}

// Update returns a Set without the rules removed (as given to IndexSet or
// Update before) and with the rules added, after all the others in rule
// order. s is unchanged.
func (s *Set) Update(removed, added []*CompiledRule) *Set {
	next := &Set{
		byType: maps.Clone(s.byType), byPrefix: maps.Clone(s.byPrefix), prefixLens: s.prefixLens,
		untyped: s.untyped, size: s.size, next: s.next,
	}
	if next.byType == nil {
		next.byType = map[string][]ruleRef{}
	}
	if next.byPrefix == nil {
		next.byPrefix = map[string][]ruleRef{}
	}
	// A list is copied the first time this update changes it, so that s
	// keeps its own.
	copiedTypes, copiedPrefixes := map[string]bool{}, map[string]bool{}
	prefixesChanged := false
	edit := func(index map[string][]ruleRef, copied map[string]bool, key string, f func([]ruleRef) []ruleRef) {
		l := index[key]
		if !copied[key] {
			l, copied[key] = slices.Clone(l), true
		}
		if l = f(l); len(l) == 0 {
			delete(index, key)
		} else {
			index[key] = l
		}
	}
	var untypedCopied bool
	each := func(c *CompiledRule, f func([]ruleRef) []ruleRef) {
		switch c.constraint.kind {
		case anyType:
			if !untypedCopied {
				next.untyped, untypedCopied = slices.Clone(next.untyped), true
			}
			next.untyped = f(next.untyped)
		case typePrefix:
			before := len(next.byPrefix)
			edit(next.byPrefix, copiedPrefixes, c.constraint.prefix, f)
			prefixesChanged = prefixesChanged || len(next.byPrefix) != before
		case typeOneOf:
			// An empty set (Types and filters disagree) never matches:
			// the rule is in no list.
			for t := range c.constraint.types {
				edit(next.byType, copiedTypes, t, f)
			}
		}
	}
	for _, c := range removed {
		each(c, func(l []ruleRef) []ruleRef {
			return slices.DeleteFunc(l, func(r ruleRef) bool { return r.rule == &c.rule })
		})
		next.size--
	}
	for _, c := range added {
		ref := ruleRef{ord: next.next, rule: &c.rule}
		next.next++
		each(c, func(l []ruleRef) []ruleRef { return append(l, ref) })
		next.size++
	}
	if prefixesChanged {
		next.prefixLens = nil
		for p := range next.byPrefix {
			if !slices.Contains(next.prefixLens, len(p)) {
				next.prefixLens = append(next.prefixLens, len(p))
			}
		}
		slices.Sort(next.prefixLens)
	}
	return next
}

// Len returns the number of rules in s.
func (s *Set) Len() int { return s.size }

// Match appends to dst the IDs of the rules that match e, in rule order,
// and returns the extended slice.
func (s *Set) Match(e *event.Event, dst []string) []string {
	if s == nil || s.size == 0 {
		return dst
	}
	v := getView(e)
	defer putView(v)

	// Gather the candidate lists. They are in rule order and disjoint
	// (each rule is in one index), so merging them keeps rule order.
	t := v.get(attribute{kind: attrType})
	lists := v.lists[:0]
	if l := s.byType[t]; len(l) > 0 {
		lists = append(lists, l)
	}
	for _, n := range s.prefixLens {
		if n > len(t) {
			break
		}
		if l := s.byPrefix[t[:n]]; len(l) > 0 {
			lists = append(lists, l)
		}
	}
	if len(s.untyped) > 0 {
		lists = append(lists, s.untyped)
	}
	v.lists = lists // keep any growth for the next match

	for {
		next := -1
		for j := range lists {
			if len(lists[j]) > 0 && (next < 0 || lists[j][0].ord < lists[next][0].ord) {
				next = j
			}
		}
		if next < 0 {
			return dst
		}
		r := lists[next][0].rule
		lists[next] = lists[next][1:]

		// A rule reached through the type index accepts this type by
		// construction, so only its source and filters are left to check.
		if r.source != "" && v.get(attribute{kind: attrSource}) != r.source {
			continue
		}
		if r.filter.match(v) {
			dst = append(dst, r.id)
		}
	}
}

// typeConstraint is what a rule or expression requires of the event type.
type typeConstraint struct {
	kind   constraintKind
	types  map[string]struct{} // typeOneOf; may be empty: no type matches
	prefix string              // typePrefix
}

type constraintKind uint8

const (
	anyType constraintKind = iota
	typeOneOf
	typePrefix
)

// ruleTypes returns the event types r can match. It only narrows what the
// rule proves: a rule is never left out of a type it could match.
func ruleTypes(r Rule) typeConstraint {
	var c typeConstraint
	if len(r.Types) > 0 {
		c = oneOf(r.Types...)
	}
	for i := range r.Filters {
		c = intersect(c, expressionTypes(&r.Filters[i]))
	}
	return c
}

// expressionTypes returns the event types x can be true for. x has been
// validated.
func expressionTypes(x *Expression) typeConstraint {
	switch {
	case x.Exact != nil:
		if t, ok := x.Exact["type"]; ok {
			return oneOf(t)
		}
	case x.Prefix != nil:
		if p, ok := x.Prefix["type"]; ok {
			return typeConstraint{kind: typePrefix, prefix: p}
		}
	case x.All != nil:
		var c typeConstraint
		for i := range x.All {
			c = intersect(c, expressionTypes(&x.All[i]))
		}
		return c
	case x.Any != nil:
		union := oneOf()
		for i := range x.Any {
			c := expressionTypes(&x.Any[i])
			if c.kind != typeOneOf {
				return typeConstraint{} // this branch may accept other types
			}
			maps.Copy(union.types, c.types)
		}
		return union
	}
	return typeConstraint{}
}

func oneOf(types ...string) typeConstraint {
	c := typeConstraint{kind: typeOneOf, types: make(map[string]struct{}, len(types))}
	for _, t := range types {
		c.types[t] = struct{}{}
	}
	return c
}

// intersect returns the constraint that satisfies both a and b.
func intersect(a, b typeConstraint) typeConstraint {
	switch {
	case a.kind == anyType:
		return b
	case b.kind == anyType:
		return a
	case a.kind == typePrefix && b.kind == typePrefix:
		switch {
		case strings.HasPrefix(b.prefix, a.prefix):
			return b
		case strings.HasPrefix(a.prefix, b.prefix):
			return a
		}
		return oneOf() // no type has both prefixes
	case a.kind == typePrefix:
		a, b = b, a
	}
	// a is a set of types; b is a set or a prefix.
	out := oneOf()
	for t := range a.types {
		if b.kind == typePrefix && strings.HasPrefix(t, b.prefix) {
			out.types[t] = struct{}{}
		} else if _, ok := b.types[t]; ok {
			out.types[t] = struct{}{}
		}
	}
	return out
}
