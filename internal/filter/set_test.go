package filter

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

func TestSet_Match(t *testing.T) {
	rules := []Rule{
		{ID: "all"},
		{ID: "created", Types: []string{"com.example.order.created"}},
		{ID: "deleted", Types: []string{"com.example.order.deleted"}},
		{ID: "created-or-deleted", Types: []string{"com.example.order.deleted", "com.example.order.created"}},
		{ID: "source", Source: "https://example.com/orders"},
		{ID: "other-source", Source: "https://example.com/users", Types: []string{"com.example.order.created"}},
		{ID: "exact-type-filter", Filters: []Expression{{Exact: m{"type": "com.example.order.created"}}}},
		{ID: "exact-type-in-all", Filters: []Expression{{All: []Expression{{Prefix: m{"subject": "orders/"}}, {Exact: m{"type": "com.example.order.created", "tenant": "acme"}}}}}},
		{ID: "any-of-types", Filters: []Expression{{Any: []Expression{{Exact: m{"type": "a"}}, {Exact: m{"type": "com.example.order.created"}}}}}},
		{ID: "any-with-untyped-branch", Filters: []Expression{{Any: []Expression{{Exact: m{"type": "a"}}, {Exact: m{"tenant": "acme"}}}}}},
		{ID: "types-and-filter-disagree", Types: []string{"com.example.order.created"}, Filters: []Expression{{Exact: m{"type": "b"}}}},
		{ID: "two-exact-type-filters-disagree", Filters: []Expression{{Exact: m{"type": "com.example.order.created"}}, {Exact: m{"type": "b"}}}},
		{ID: "type-prefix", Filters: []Expression{{Prefix: m{"type": "com.example.order."}}}},
		{ID: "not-type", Filters: []Expression{{Not: &Expression{Exact: m{"type": "com.example.order.created"}}}}},
		{ID: "sql", Types: []string{"com.example.order.created"}, Filters: []Expression{{SQL: "priority > 3"}}},
		{ID: "sql-false", Filters: []Expression{{SQL: "priority > 30"}}},
		{ID: "duplicate-types", Types: []string{"com.example.order.created", "com.example.order.created"}},
		{ID: "all", Types: []string{"com.example.order.created"}}, // IDs need not be unique
		{ID: "prefix-and-exact-disagree", Filters: []Expression{{Prefix: m{"type": "com.example.user."}}, {Exact: m{"type": "com.example.order.created"}}}},
		{ID: "nested-prefixes", Filters: []Expression{{Prefix: m{"type": "com."}}, {All: []Expression{{Prefix: m{"type": "com.example.order."}}}}}},
		{ID: "disjoint-prefixes", Filters: []Expression{{Prefix: m{"type": "com."}}, {Prefix: m{"type": "org."}}}},
		{ID: "types-within-prefix", Types: []string{"com.example.order.created", "com.example.user.created"}, Filters: []Expression{{Prefix: m{"type": "com.example.order."}}}},
		{ID: "short-prefix", Filters: []Expression{{Prefix: m{"type": "c"}}}},
		{ID: "prefix-longer-than-type", Filters: []Expression{{Prefix: m{"type": "com.example.order.created.v2"}}}},
	}
	s, err := NewSet(rules)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"all", "created", "created-or-deleted", "source", "exact-type-filter", "exact-type-in-all",
		"any-of-types", "any-with-untyped-branch", "type-prefix", "sql", "duplicate-types", "all",
		"nested-prefixes", "types-within-prefix", "short-prefix",
	}
	got := s.Match(orderEvent(t), nil)
	if !slices.Equal(got, want) {
		t.Errorf("Match =\n%q\nwant\n%q", got, want)
	}

	// Matching appends to dst.
	got = s.Match(orderEvent(t), []string{"keep"})
	if !slices.Equal(got, append([]string{"keep"}, want...)) {
		t.Errorf("Match with dst = %q, want %q prepended with keep", got, want)
	}

	other := orderEvent(t)
	other.SetType("com.example.user.created")
	want = []string{"all", "source", "any-with-untyped-branch", "not-type", "short-prefix"}
	if got := s.Match(other, nil); !slices.Equal(got, want) {
		t.Errorf("Match(other type) = %q, want %q", got, want)
	}
}

func TestSet_EmptySetMatchesNothing(t *testing.T) {
	s, err := NewSet(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Match(orderEvent(t), nil); len(got) != 0 {
		t.Errorf("Match = %q, want none", got)
	}
}

func TestNewSet_ErrorNamesTheRule(t *testing.T) {
	_, err := NewSet([]Rule{
		{ID: "good", Filters: []Expression{{Exact: m{"type": "t"}}}},
		{ID: "bad", Filters: []Expression{{Exact: m{"type": "t"}}, {All: []Expression{}}}},
	})
	want := `rule "bad": filters[1].all: must not be empty`
	if err == nil || err.Error() != want {
		t.Fatalf("NewSet = %v, want %q", err, want)
	}
	var pe *PathError
	if !errors.As(err, &pe) || pe.Path != "filters[1].all" {
		t.Errorf("error %v does not unwrap to a *PathError for filters[1].all", err)
	}
}

// TestSet_MatchEqualsBruteForce checks the type index against evaluating
// every rule in turn, over random rules and events.
func TestSet_MatchEqualsBruteForce(t *testing.T) {
	for seed := range uint64(20) {
		g := newRandomGen(seed)
		rules := make([]Rule, 300)
		for i := range rules {
			rules[i] = g.rule(i)
		}
		s, err := NewSet(rules)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		var got []string
		matchedSome := 0
		events := make([]*event.Event, 200)
		for i := range events {
			events[i] = g.event()
		}
		wants := bruteForce(t, rules, events...)
		for i, e := range events {
			want := wants[i]
			got = s.Match(e, got[:0])
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d: event %v\nSet.Match = %q\nbrute force = %q", seed, e, got, want)
			}
			if len(want) > 0 {
				matchedSome++
			}
		}
		if matchedSome < 50 {
			t.Errorf("seed %d: only %d of 200 events matched any rule; the generator is too strict to test much", seed, matchedSome)
		}
	}
}

// bruteForce returns, for each event, the IDs of the rules it matches,
// evaluating each rule in turn.
func bruteForce(t *testing.T, rules []Rule, events ...*event.Event) [][]string {
	t.Helper()
	filters := make([]*Filter, len(rules))
	for i, r := range rules {
		f, err := Compile(r.Filters)
		if err != nil {
			t.Fatal(err)
		}
		filters[i] = f
	}
	out := make([][]string, len(events))
	for j, e := range events {
		for i, r := range rules {
			if r.Source != "" && e.Source() != r.Source {
				continue
			}
			if len(r.Types) > 0 && !slices.Contains(r.Types, e.Type()) {
				continue
			}
			if filters[i].Match(e) {
				out[j] = append(out[j], r.ID)
			}
		}
	}
	return out
}

func TestSet_ConcurrentMatch(t *testing.T) {
	g := newRandomGen(99)
	rules := make([]Rule, 200)
	for i := range rules {
		rules[i] = g.rule(i)
	}
	s, err := NewSet(rules)
	if err != nil {
		t.Fatal(err)
	}
	events := make([]*event.Event, 50)
	want := make([][]string, len(events))
	for i := range events {
		events[i] = g.event()
		want[i] = s.Match(events[i], nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			var got []string
			for round := range 20 {
				for i, e := range events {
					got = s.Match(e, got[:0])
					if !slices.Equal(got, want[i]) {
						errs <- fmt.Errorf("worker %d round %d event %d: got %q, want %q", w, round, i, got, want[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSet_UpdateEqualsIndexingAgain: a Set updated rule by rule matches as
// evaluating the same rules in the same order one by one does,
// and the Set it was updated from still matches as before.
func TestSet_UpdateEqualsIndexingAgain(t *testing.T) {
	type rule struct {
		r Rule
		c *CompiledRule
	}
	for seed := range uint64(10) {
		g := newRandomGen(seed)
		newRule := func(i int) rule {
			r := g.rule(i)
			c, err := CompileRule(r)
			if err != nil {
				t.Fatal(err)
			}
			return rule{r, c}
		}
		var rules []rule
		for i := range 200 {
			rules = append(rules, newRule(i))
		}
		compiled := func() (cs []*CompiledRule) {
			for _, r := range rules {
				cs = append(cs, r.c)
			}
			return cs
		}
		s := IndexSet(compiled())
		events := make([]*event.Event, 100)
		for i := range events {
			events[i] = g.event()
		}
		matches := func(s *Set) string {
			var out strings.Builder
			for _, e := range events {
				fmt.Fprintln(&out, s.Match(e, nil))
			}
			return out.String()
		}
		want := func() string {
			var out strings.Builder
			var rs []Rule
			for _, r := range rules {
				rs = append(rs, r.r)
			}
			for _, ids := range bruteForce(t, rs, events...) {
				fmt.Fprintln(&out, ids)
			}
			return out.String()
		}
		for step := range 20 {
			before := matches(s)
			// Take out a few rules (by identity) and add some after the rest.
			var removed, added []*CompiledRule
			for range 1 + g.r.IntN(5) {
				i := g.r.IntN(len(rules))
				removed = append(removed, rules[i].c)
				rules = slices.Delete(rules, i, i+1)
			}
			for range g.r.IntN(6) {
				r := newRule(1000 + step*10 + len(added))
				added = append(added, r.c)
				rules = append(rules, r)
			}
			updated := s.Update(removed, added)
			if matches(s) != before {
				t.Fatalf("seed %d step %d: Update changed the Set it was called on", seed, step)
			}
			if got, want := matches(updated), want(); got != want {
				t.Fatalf("seed %d step %d: the updated Set matches\n%s\nbrute force matches\n%s", seed, step, got, want)
			}
			if updated.Len() != len(rules) {
				t.Fatalf("seed %d step %d: Len %d, want %d", seed, step, updated.Len(), len(rules))
			}
			s = updated
		}
	}
}

// randomGen draws rules and events from small pools of values, so that
// rules and events often meet.
type randomGen struct {
	r *rand.Rand
}

var (
	genTypes    = []string{"com.example.a.created", "com.example.a.deleted", "com.example.b.created", "com.example.b.updated", "org.other.c"}
	genSources  = []string{"https://example.com/a", "https://example.com/b", "/relative"}
	genSubjects = []string{"orders/1", "orders/2", "users/1"}
	genTenants  = []string{"acme", "globex"}
	genSQL      = []string{
		"TRUE", "tenant = 'acme'", "priority > 2", "subject LIKE 'orders/%'", "EXISTS tenant",
		"type = 'com.example.a.created'", "'not a boolean'", "priority + 1", "priority / 0 = 1",
	}
)

func newRandomGen(seed uint64) *randomGen {
	return &randomGen{r: rand.New(rand.NewPCG(seed, 1))}
}

func (g *randomGen) pick(values []string) string { return values[g.r.IntN(len(values))] }

func (g *randomGen) rule(i int) Rule {
	r := Rule{ID: fmt.Sprintf("r%d", i)}
	if g.r.IntN(4) == 0 {
		r.Source = g.pick(genSources)
	}
	if g.r.IntN(2) == 0 {
		for range 1 + g.r.IntN(2) {
			r.Types = append(r.Types, g.pick(genTypes))
		}
	}
	for range g.r.IntN(3) {
		r.Filters = append(r.Filters, g.expression(2))
	}
	return r
}

// attributeValue returns an attribute name and a value it may have.
func (g *randomGen) attributeValue() (string, string) {
	switch g.r.IntN(6) {
	case 0, 1:
		return "type", g.pick(genTypes)
	case 2:
		return "source", g.pick(genSources)
	case 3:
		return "subject", g.pick(genSubjects)
	case 4:
		return "tenant", g.pick(genTenants)
	default:
		return "priority", fmt.Sprint(g.r.IntN(4))
	}
}

func (g *randomGen) expression(depth int) Expression {
	n := 4
	if depth > 0 {
		n = 7
	}
	switch g.r.IntN(n) {
	case 0:
		return Expression{Exact: g.tests(func(v string) string { return v })}
	case 1:
		return Expression{Prefix: g.tests(func(v string) string { return v[:1+g.r.IntN(len(v))] })}
	case 2:
		return Expression{Suffix: g.tests(func(v string) string { return v[g.r.IntN(len(v)):] })}
	case 3:
		return Expression{SQL: g.pick(genSQL)}
	case 4:
		return Expression{All: g.list(depth - 1)}
	case 5:
		return Expression{Any: g.list(depth - 1)}
	default:
		x := g.expression(depth - 1)
		return Expression{Not: &x}
	}
}

func (g *randomGen) tests(value func(string) string) map[string]string {
	tests := map[string]string{}
	for range 1 + g.r.IntN(2) {
		name, v := g.attributeValue()
		tests[name] = value(v)
	}
	return tests
}

func (g *randomGen) list(depth int) []Expression {
	xs := make([]Expression, 1+g.r.IntN(3))
	for i := range xs {
		xs[i] = g.expression(depth)
	}
	return xs
}

func (g *randomGen) event() *event.Event {
	e := event.New()
	e.SetID("id")
	e.SetSource(g.pick(genSources))
	e.SetType(g.pick(genTypes))
	if g.r.IntN(10) == 0 {
		e.SetType("com.example.unknown")
	}
	if g.r.IntN(4) != 0 {
		e.SetSubject(g.pick(genSubjects))
	}
	if g.r.IntN(3) != 0 {
		e.SetExtension("tenant", g.pick(genTenants))
	}
	if g.r.IntN(3) != 0 {
		e.SetExtension("priority", g.r.IntN(4))
	}
	return &e
}

// BenchmarkSetMatch10000 matches events against 10,000 rules: most
// subscribe to one or two of 1,000 event types, some add a subject prefix,
// a source or an extension filter, some select a whole family of types by
// prefix (no type index), and a few use CESQL.
func BenchmarkSetMatch10000(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const nTypes = 1000
	types := make([]string, nTypes)
	for i := range types {
		types[i] = fmt.Sprintf("com.example.svc%02d.entity%02d.%s", i/50, i%50/5, []string{"created", "updated", "deleted", "archived", "restored"}[i%5])
	}
	sources := make([]string, 20)
	for i := range sources {
		sources[i] = fmt.Sprintf("https://svc%02d.example.com/events", i)
	}
	someTypes := func() []string {
		ts := []string{types[r.IntN(nTypes)]}
		if r.IntN(3) == 0 {
			ts = append(ts, types[r.IntN(nTypes)])
		}
		return ts
	}
	rules := make([]Rule, 10_000)
	counts := map[string]int{}
	for i := range rules {
		rule := Rule{ID: fmt.Sprintf("sub-%05d", i)}
		var kind string
		switch p := r.IntN(1000); {
		case p < 700:
			kind, rule.Types = "types only", someTypes()
		case p < 850:
			kind, rule.Types = "types + subject prefix", someTypes()
			rule.Filters = []Expression{{Prefix: m{"subject": fmt.Sprintf("tenant-%d/", r.IntN(100))}}}
		case p < 920:
			kind, rule.Types = "types + source", someTypes()
			rule.Source = sources[r.IntN(len(sources))]
		case p < 970:
			kind, rule.Types = "types + exact extension", someTypes()
			rule.Filters = []Expression{{Exact: m{"tenant": fmt.Sprintf("tenant-%d", r.IntN(100))}}}
		case p < 990:
			kind = "type family prefix (unindexed)"
			rule.Filters = []Expression{{Prefix: m{"type": fmt.Sprintf("com.example.svc%02d.", r.IntN(20))}}}
		case p < 995:
			kind = "exact type + CESQL"
			rule.Filters = []Expression{{Exact: m{"type": types[r.IntN(nTypes)]}}, {SQL: "priority > 3 AND subject LIKE 'tenant-1%'"}}
		case p < 999:
			kind, rule.Types = "types + CESQL", someTypes()
			rule.Filters = []Expression{{SQL: fmt.Sprintf("tenant = 'tenant-%d' OR priority >= 9", r.IntN(100))}}
		default:
			kind = "CESQL only (unindexed)"
			rule.Filters = []Expression{{SQL: "urgent AND priority > 8"}}
		}
		counts[kind]++
		rules[i] = rule
	}
	s, err := NewSet(rules)
	if err != nil {
		b.Fatal(err)
	}
	events := make([]*event.Event, 1024)
	for i := range events {
		e := event.New()
		e.SetID(fmt.Sprint(i))
		e.SetSource(sources[r.IntN(len(sources))])
		e.SetType(types[r.IntN(nTypes)])
		e.SetSubject(fmt.Sprintf("tenant-%d/orders/%d", r.IntN(100), i))
		e.SetExtension("tenant", fmt.Sprintf("tenant-%d", r.IntN(100)))
		e.SetExtension("priority", r.IntN(10))
		e.SetExtension("urgent", r.IntN(2) == 0)
		events[i] = &e
	}
	if testing.Verbose() {
		var kinds []string
		for k, n := range counts {
			kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
		}
		slices.Sort(kinds)
		b.Logf("rule mix: %s; untyped rules: %d", strings.Join(kinds, ", "), len(s.untyped))
	}

	dst := make([]string, 0, 64)
	matches := 0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dst = s.Match(events[i%len(events)], dst[:0])
		matches += len(dst)
		i++
	}
	b.ReportMetric(float64(matches)/float64(i), "matches/op")
}
