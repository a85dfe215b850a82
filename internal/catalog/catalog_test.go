package catalog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/signing"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func insert(t *testing.T, s *sqlite.Store, id string, state store.SubscriptionState, types ...string) {
	t.Helper()
	insertFor(t, s, store.DefaultTenant, id, state, types...)
}

func insertFor(t *testing.T, s *sqlite.Store, tenant, id string, state store.SubscriptionState, types ...string) {
	t.Helper()
	now := time.Now()
	if err := s.SubscriptionInsert(context.Background(), &store.Subscription{
		ID: id, Tenant: tenant, Sink: "https://example.com/" + id, Protocol: "HTTP", Types: types, State: state,
		Secrets: []store.Secret{{Key: signing.NewSecret()}}, CreatedAt: now, UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
}

// insertGranted inserts an active subscription to sink that its sink
// granted rate requests a minute, pausing alone if alone.
func insertGranted(t *testing.T, s *sqlite.Store, id, sink string, rate int, alone bool) {
	t.Helper()
	now := time.Now()
	if err := s.SubscriptionInsert(context.Background(), &store.Subscription{
		ID: id, Tenant: store.DefaultTenant, Sink: sink, Protocol: "HTTP", State: store.SubscriptionActive,
		AllowedRate: rate, SubscriptionPauseOnly: alone,
		Secrets: []store.Secret{{Key: signing.NewSecret()}}, CreatedAt: now, UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
}

func matchIDs(c *catalog.Catalog, typ string) map[string]bool {
	return matchTenant(c, "", typ)
}

func matchTenant(c *catalog.Catalog, tenant, typ string) map[string]bool {
	e := event.New()
	e.SetID("1")
	e.SetSource("/s")
	e.SetType(typ)
	out := map[string]bool{}
	for _, en := range c.Match(&e, tenant, nil) {
		out[en.Subscription.ID] = true
	}
	return out
}

func TestMatch_TakesSubscriptionsInEveryState(t *testing.T) {
	s := openStore(t)
	insert(t, s, "sub_active", store.SubscriptionActive, "t")
	insert(t, s, "sub_pending", store.SubscriptionPendingValidation, "t")
	insert(t, s, "sub_disabled", store.SubscriptionDisabled, "t")
	insert(t, s, "sub_suspended", store.SubscriptionSuspended, "t")
	insert(t, s, "sub_other", store.SubscriptionActive, "other")
	c := catalog.New(s, nil)
	if err := c.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := matchIDs(c, "t")
	if len(got) != 4 || !got["sub_active"] || !got["sub_pending"] || !got["sub_disabled"] || !got["sub_suspended"] {
		t.Errorf("matched %v, want every subscription of the type (a disabled or suspended one's deliveries are held)", got)
	}
	if en, ok := c.Get("sub_disabled"); !ok || en.Subscription.State != store.SubscriptionDisabled {
		t.Errorf("Get(sub_disabled) = %v, %v", en, ok)
	}
	if _, ok := c.Get("sub_none"); ok {
		t.Error("Get found a subscription that does not exist")
	}
}

func TestMatch_ATenantsEventsMatchOnlyItsSubscriptions(t *testing.T) {
	s := openStore(t)
	insertFor(t, s, "acme", "sub_acme", store.SubscriptionActive, "t")
	insertFor(t, s, "globex", "sub_globex", store.SubscriptionActive, "t")
	insertFor(t, s, "acme", "sub_acme_off", store.SubscriptionDisabled, "t")
	c := catalog.New(s, nil)
	if err := c.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := matchTenant(c, "acme", "t"); len(got) != 2 || !got["sub_acme"] || !got["sub_acme_off"] {
		t.Errorf("acme's event matched %v, want acme's two", got)
	}
	if got := matchTenant(c, "", "t"); len(got) != 3 {
		t.Errorf("an event of no tenant matched %v, want every tenant's subscription", got)
	}
	if got := matchTenant(c, "initech", "t"); len(got) != 0 {
		t.Errorf("initech's event matched %v, want none", got)
	}
	ids := c.Tenant("acme")
	if len(ids) != 2 {
		t.Errorf("Tenant(acme) = %v, want its two subscriptions", ids)
	}
}

func TestReload_SeesChangesAndOnlyReadsWhenTheStoreChanged(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	insert(t, s, "sub_1", store.SubscriptionActive, "a")
	c := catalog.New(s, nil)
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	before, _ := c.Get("sub_1")
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := c.Get("sub_1"); again != before {
		t.Error("a reload with nothing changed rebuilt the snapshot")
	}
	// A change made elsewhere (another node) is seen at the next reload.
	if _, err := s.SubscriptionUpdate(ctx, "sub_1", func(sub *store.Subscription) error {
		sub.Types = []string{"b"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := matchIDs(c, "b"); got["sub_1"] {
		t.Fatal("the catalog saw the change before reloading")
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := matchIDs(c, "b"); !got["sub_1"] {
		t.Error("the reload did not see the new type")
	}
	if got := matchIDs(c, "a"); got["sub_1"] {
		t.Error("the old type still matches after the reload")
	}
	if err := s.SubscriptionDelete(ctx, "sub_1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("sub_1"); ok {
		t.Error("a deleted subscription is still in the catalog")
	}
}

func TestSigner_DropsARotatedKeyWhenItsOverlapEnds(t *testing.T) {
	now := time.Now()
	old, cur := signing.NewSecret(), signing.NewSecret()
	en, err := catalog.NewEntry(&store.Subscription{ID: "sub_1", Secrets: []store.Secret{
		{Key: cur}, {Key: old, ExpiresAt: now.Add(time.Hour)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(at time.Time) string {
		s, err := en.Signer(at)
		if err != nil {
			t.Fatal(err)
		}
		return s.Sign("msg_1", at, []byte("body"))
	}
	if got := sign(now); len(strings.Fields(got)) != 2 {
		t.Errorf("during the overlap: %q, want two signatures", got)
	}
	if got := sign(now.Add(2 * time.Hour)); len(strings.Fields(got)) != 1 {
		t.Errorf("after the overlap: %q, want one signature", got)
	}
}

// readCounter counts what a catalog reads from its store.
type readCounter struct {
	*sqlite.Store
	lists, changes, changed atomic.Int64
}

func (r *readCounter) SubscriptionList(ctx context.Context, p store.SubscriptionListParams) ([]*store.Subscription, error) {
	r.lists.Add(1)
	return r.Store.SubscriptionList(ctx, p)
}

func (r *readCounter) SubscriptionChanges(ctx context.Context, after int64) (store.SubscriptionChanges, error) {
	ch, err := r.Store.SubscriptionChanges(ctx, after)
	r.changes.Add(1)
	r.changed.Add(int64(len(ch.Changed) + len(ch.Deleted)))
	return ch, err
}

// TestReload_ReadsOnlyWhatChangedAfterTheFirstLoad: after one full load,
// a reload reads only the subscriptions written or deleted since, and
// the catalog matches as a full load would.
func TestReload_ReadsOnlyWhatChangedAfterTheFirstLoad(t *testing.T) {
	ctx := context.Background()
	s := &readCounter{Store: openStore(t)}
	for i := range 50 {
		insert(t, s.Store, fmt.Sprintf("sub_%02d", i), store.SubscriptionActive, "a")
	}
	c := catalog.New(s, nil)
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	insert(t, s.Store, "sub_new", store.SubscriptionActive, "a")
	if err := s.SubscriptionDelete(ctx, "sub_07"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SubscriptionUpdate(ctx, "sub_08", func(sub *store.Subscription) error { sub.Types = []string{"b"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SubscriptionUpdate(ctx, "sub_09", func(sub *store.Subscription) error { sub.State = store.SubscriptionDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if l, ch, n := s.lists.Load(), s.changes.Load(), s.changed.Load(); l != 1 || ch != 1 || n != 4 {
		t.Errorf("reads: %d full lists, %d change reads of %d subscriptions; want 1, 1, 4", l, ch, n)
	}
	full := catalog.New(s.Store, nil)
	if err := full.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"a", "b"} {
		if got, want := matchIDs(c, typ), matchIDs(full, typ); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("type %s: the reloaded catalog matches %v, a full load %v", typ, got, want)
		}
	}
	if got := matchIDs(c, "a"); got["sub_07"] || !got["sub_09"] || got["sub_08"] || !got["sub_new"] {
		t.Errorf("matched %v: want the new and the disabled subscription (its deliveries are held), not the deleted or retyped ones", got)
	}
	if en, _ := c.Get("sub_09"); en == nil || en.Subscription.State != store.SubscriptionDisabled {
		t.Errorf("the reloaded catalog has sub_09 as %+v, want disabled", en)
	}
}

// BenchmarkReload measures, at 100,000 subscriptions, a first full load,
// a reload after one change, and matching; it reports the catalog's heap
// per subscription.
func BenchmarkReload(b *testing.B) {
	ctx := context.Background()
	s := openStore(b)
	const n = 100_000
	now := time.Now()
	for i := range n {
		if err := s.SubscriptionInsert(ctx, &store.Subscription{
			ID: fmt.Sprintf("sub_%06d", i), Sink: "https://example.com/hook", Protocol: "HTTP",
			Types: []string{fmt.Sprintf("com.example.t%d", i%1000)}, State: store.SubscriptionActive,
			Secrets: []store.Secret{{Key: signing.NewSecret()}}, CreatedAt: now, UpdatedAt: now,
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("full-100000", func(b *testing.B) {
		var before, after runtime.MemStats
		for b.Loop() {
			runtime.GC()
			runtime.ReadMemStats(&before)
			c := catalog.New(s, nil)
			if err := c.Reload(ctx); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(c)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-bytes/subscription")
	})
	c := catalog.New(s, nil)
	if err := c.Reload(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("one-change-100000", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if _, err := s.SubscriptionUpdate(ctx, "sub_000001", func(sub *store.Subscription) error {
				sub.Types = []string{fmt.Sprintf("com.example.x%d", i)}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			if err := c.Reload(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("match-100000", func(b *testing.B) {
		e := event.New()
		e.SetID("1")
		e.SetSource("/s")
		e.SetType("com.example.t42")
		var dst []*catalog.Entry
		for b.Loop() {
			dst = c.Match(&e, "", dst[:0])
		}
		if len(dst) != n/1000 {
			b.Fatalf("matched %d, want %d", len(dst), n/1000)
		}
	})
}

// TestOnEnabled_ToldOfEverySubscriptionNoLongerHeld: a reload tells of a
// suspended or disabled subscription made active, and of nothing else.
func TestOnEnabled_ToldOfEverySubscriptionNoLongerHeld(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	insert(t, s, "sub_suspended", store.SubscriptionSuspended, "t")
	insert(t, s, "sub_disabled", store.SubscriptionDisabled, "t")
	insert(t, s, "sub_active", store.SubscriptionActive, "t")
	insert(t, s, "sub_stays", store.SubscriptionSuspended, "t")
	c := catalog.New(s, nil)
	var told []string
	c.OnEnabled(func(id string) { told = append(told, id) })
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if len(told) != 0 {
		t.Fatalf("the first load told of %v", told)
	}
	for id, st := range map[string]store.SubscriptionState{
		"sub_suspended": store.SubscriptionActive, "sub_disabled": store.SubscriptionActive, "sub_active": store.SubscriptionDisabled,
	} {
		if _, err := s.SubscriptionUpdate(ctx, id, func(sub *store.Subscription) error { sub.State = st; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SubscriptionUpdate(ctx, "sub_stays", func(sub *store.Subscription) error { sub.StateReason = "still"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	slices.Sort(told)
	if fmt.Sprint(told) != "[sub_disabled sub_suspended]" {
		t.Errorf("told of %v, want sub_disabled and sub_suspended", told)
	}
}

// TestOriginRate_IsTheLowestGrantOnTheOriginAndFollowsChanges: the
// subscriptions on one sink origin share the lowest rate any of them was
// granted, whatever their paths; one that pauses alone neither shares it
// nor lowers it; and a reload that changes, deletes or moves one
// subscription updates the rate seen through the others' entries, which
// the reload did not touch.
func TestOriginRate_IsTheLowestGrantOnTheOriginAndFollowsChanges(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	add := func(id, sink string, rate int, alone bool) { insertGranted(t, s, id, sink, rate, alone) }
	add("sub_fast", "https://hooks.example.com/fast", 600, false)
	add("sub_slow", "https://hooks.example.com:443/slow", 60, false)
	add("sub_free", "https://hooks.example.com/free", 0, false)
	add("sub_alone", "https://hooks.example.com/alone", 6, true)
	add("sub_other", "https://other.example.com/x", 120, false)
	c := catalog.New(s, nil)
	reload := func() {
		t.Helper()
		if err := c.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rate := func(id string) int {
		t.Helper()
		en, ok := c.Get(id)
		if !ok {
			t.Fatalf("%s is not in the catalog", id)
		}
		return en.OriginRate()
	}
	check := func(when string, want map[string]int) {
		t.Helper()
		for id, w := range want {
			if got := rate(id); got != w {
				t.Errorf("%s: %s's origin rate is %d, want %d", when, id, got, w)
			}
		}
	}
	reload()
	free, _ := c.Get("sub_free") // kept across the reloads below: none changes it
	check("loaded", map[string]int{"sub_fast": 60, "sub_slow": 60, "sub_free": 60, "sub_alone": 0, "sub_other": 120})

	if _, err := s.SubscriptionUpdate(ctx, "sub_slow", func(sub *store.Subscription) error { sub.AllowedRate = 30; return nil }); err != nil {
		t.Fatal(err)
	}
	reload()
	check("a lower grant", map[string]int{"sub_fast": 30, "sub_free": 30, "sub_other": 120})
	if got := free.OriginRate(); got != 30 {
		t.Errorf("an entry the reload did not replace sees %d, want 30", got)
	}

	if _, err := s.SubscriptionUpdate(ctx, "sub_slow", func(sub *store.Subscription) error {
		sub.Sink = "https://other.example.com/slow"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	reload()
	check("moved to another origin", map[string]int{"sub_fast": 600, "sub_free": 600, "sub_slow": 30, "sub_other": 30})

	if err := s.SubscriptionDelete(ctx, "sub_slow"); err != nil {
		t.Fatal(err)
	}
	if err := s.SubscriptionDelete(ctx, "sub_fast"); err != nil {
		t.Fatal(err)
	}
	reload()
	check("deleted", map[string]int{"sub_free": 0, "sub_other": 120})
	if got := free.OriginRate(); got != 0 {
		t.Errorf("with no grant left on its origin, an untouched entry sees %d, want 0", got)
	}
	add("sub_back", "https://hooks.example.com/back", 90, false)
	reload()
	check("granted again", map[string]int{"sub_free": 90, "sub_back": 90, "sub_alone": 0})
	if got := free.OriginRate(); got != 90 {
		t.Errorf("an entry kept since the first load sees %d after a new grant on its origin, want 90", got)
	}
}

// TestSharedHosts_SubscriptionsThereKeepOutOfTheirOriginsSharing: on a
// host named shared (exactly, or under a *.domain), a subscription is
// Alone, as with subscription_pause_only: its grant neither lowers nor
// takes the origin's; a host merely ending like a shared one is not.
func TestSharedHosts_SubscriptionsThereKeepOutOfTheirOriginsSharing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	add := func(id, sink string, rate int) { insertGranted(t, s, id, sink, rate, false) }
	add("sub_inbox_a", "https://inbox.example/a", 1)
	add("sub_inbox_b", "https://INBOX.example/b", 600)
	add("sub_tunnel", "https://me.tunnel.example/x", 1)
	add("sub_apex", "https://tunnel.example/x", 60)
	add("sub_apex2", "https://tunnel.example/y", 30)
	add("sub_lookalike", "https://notinbox.example/x", 60)
	c := catalog.New(s, nil)
	c.SharedHosts([]string{"inbox.example", "*.tunnel.example"})
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]struct {
		alone bool
		rate  int
	}{
		"sub_inbox_a":   {true, 0},
		"sub_inbox_b":   {true, 0},
		"sub_tunnel":    {true, 0},
		"sub_apex":      {false, 30}, // *.tunnel.example is the names under it, not it
		"sub_apex2":     {false, 30},
		"sub_lookalike": {false, 60},
	} {
		en, ok := c.Get(id)
		if !ok {
			t.Fatalf("%s is not in the catalog", id)
		}
		if en.Alone() != want.alone || en.OriginRate() != want.rate {
			t.Errorf("%s: alone %v, origin rate %d; want %v, %d", id, en.Alone(), en.OriginRate(), want.alone, want.rate)
		}
	}
}
