package filter

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	cesql "github.com/cloudevents/sdk-go/sql/v2"
	"github.com/cloudevents/sdk-go/v2/event"
)

// PathError reports an invalid filter expression. Path locates it in the
// subscription's filters array, as in "filters[1].all[0].exact".
type PathError struct {
	Path string
	Err  error
}

func (e *PathError) Error() string { return e.Path + ": " + e.Err.Error() }

func (e *PathError) Unwrap() error { return e.Err }

var (
	errNoDialect     = errors.New("exactly one dialect must be set")
	errEmpty         = errors.New("must not be empty")
	errEmptyAttrName = errors.New("empty attribute name")
)

// Validate checks filter expressions as the Subscriptions API requires:
// exactly one dialect per expression; exact, prefix and suffix with at least
// one attribute, and non-empty names and values; all and any non-empty; sql
// a CESQL expression that parses. The error is a *PathError naming the first
// offending expression, e.g. "filters[1].all: must not be empty".
func Validate(exprs []Expression) error {
	_, err := Compile(exprs)
	return err
}

// Filter is a compiled list of filter expressions. It is immutable and safe
// for concurrent use. The zero Filter matches every event.
type Filter struct {
	nodes []node
}

// Compile validates expressions (see Validate) and compiles them for
// matching; CESQL is parsed here, once.
func Compile(exprs []Expression) (*Filter, error) {
	nodes := make([]node, len(exprs))
	for i := range exprs {
		n, err := compileExpression(&exprs[i], fmt.Sprintf("filters[%d]", i))
		if err != nil {
			return nil, err
		}
		nodes[i] = n
	}
	orderByCost(nodes)
	return &Filter{nodes: nodes}, nil
}

// Match reports whether every expression is true for e. A Filter with no
// expressions matches every event.
func (f *Filter) Match(e *event.Event) bool {
	if f == nil || len(f.nodes) == 0 {
		return true
	}
	v := getView(e)
	defer putView(v)
	return f.match(v)
}

func (f *Filter) match(v *eventView) bool {
	for i := range f.nodes {
		if !f.nodes[i].match(v) {
			return false
		}
	}
	return true
}

type op uint8

const (
	opExact op = iota
	opPrefix
	opSuffix
	opAll
	opAny
	opNot
	opSQL
)

// node is one compiled expression.
type node struct {
	op    op
	tests []attributeTest // exact, prefix, suffix
	nodes []node          // all, any; not has exactly one
	sql   cesql.Expression
	cost  int // how expensive match is, relative to other nodes
}

type attributeTest struct {
	attr  attribute
	value string
}

func (n *node) match(v *eventView) bool {
	switch n.op {
	case opExact:
		for i := range n.tests {
			if v.get(n.tests[i].attr) != n.tests[i].value {
				return false
			}
		}
		return true
	case opPrefix:
		for i := range n.tests {
			if !strings.HasPrefix(v.get(n.tests[i].attr), n.tests[i].value) {
				return false
			}
		}
		return true
	case opSuffix:
		for i := range n.tests {
			if !strings.HasSuffix(v.get(n.tests[i].attr), n.tests[i].value) {
				return false
			}
		}
		return true
	case opAll:
		for i := range n.nodes {
			if !n.nodes[i].match(v) {
				return false
			}
		}
		return true
	case opAny:
		for i := range n.nodes {
			if n.nodes[i].match(v) {
				return true
			}
		}
		return false
	case opNot:
		return !n.nodes[0].match(v)
	case opSQL:
		return evalSQL(n.sql, v.event)
	}
	return false
}

// sqlCost makes any expression containing CESQL sort after every expression
// without it.
const sqlCost = 1 << 20

func compileExpression(x *Expression, path string) (node, error) {
	if dialects(x) != 1 {
		return node{}, &PathError{Path: path, Err: errNoDialect}
	}
	switch {
	case x.Exact != nil:
		return compileTests(opExact, x.Exact, path+".exact")
	case x.Prefix != nil:
		return compileTests(opPrefix, x.Prefix, path+".prefix")
	case x.Suffix != nil:
		return compileTests(opSuffix, x.Suffix, path+".suffix")
	case x.All != nil:
		return compileList(opAll, x.All, path+".all")
	case x.Any != nil:
		return compileList(opAny, x.Any, path+".any")
	case x.Not != nil:
		inner, err := compileExpression(x.Not, path+".not")
		if err != nil {
			return node{}, err
		}
		return node{op: opNot, nodes: []node{inner}, cost: inner.cost + 1}, nil
	default:
		expr, err := parseSQL(x.SQL)
		if err != nil {
			return node{}, &PathError{Path: path + ".sql", Err: err}
		}
		return node{op: opSQL, sql: expr, cost: sqlCost}, nil
	}
}

// dialects counts the dialects set in x. A dialect is set when its field is
// non-nil (so JSON "all": [] is set, and empty), or for sql non-empty.
func dialects(x *Expression) int {
	n := 0
	for _, set := range []bool{x.Exact != nil, x.Prefix != nil, x.Suffix != nil, x.All != nil, x.Any != nil, x.Not != nil, x.SQL != ""} {
		if set {
			n++
		}
	}
	return n
}

func compileTests(o op, m map[string]string, path string) (node, error) {
	if len(m) == 0 {
		return node{}, &PathError{Path: path, Err: errEmpty}
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names) // deterministic errors and evaluation order
	tests := make([]attributeTest, 0, len(m))
	for _, name := range names {
		if name == "" {
			return node{}, &PathError{Path: path, Err: errEmptyAttrName}
		}
		if m[name] == "" {
			return node{}, &PathError{Path: path, Err: fmt.Errorf("empty value for attribute %q", name)}
		}
		tests = append(tests, attributeTest{attr: attributeNamed(name), value: m[name]})
	}
	return node{op: o, tests: tests, cost: len(tests)}, nil
}

func compileList(o op, xs []Expression, path string) (node, error) {
	if len(xs) == 0 {
		return node{}, &PathError{Path: path, Err: errEmpty}
	}
	nodes := make([]node, len(xs))
	cost := 0
	for i := range xs {
		n, err := compileExpression(&xs[i], fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return node{}, err
		}
		nodes[i] = n
		cost += n.cost
	}
	orderByCost(nodes)
	return node{op: o, nodes: nodes, cost: cost}, nil
}

// orderByCost puts cheap expressions first. Expressions have no side
// effects, so the order of an AND or OR list does not change its result,
// and CESQL then runs only when everything cheaper has passed (all) or
// failed (any).
func orderByCost(nodes []node) {
	slices.SortStableFunc(nodes, func(a, b node) int { return a.cost - b.cost })
}
