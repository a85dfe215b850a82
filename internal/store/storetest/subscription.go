package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/filter"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

var subscriptionTests = []test{
	{"InsertThenGetRoundTripsEveryField", testSubscriptionRoundTrip},
	{"GetMissingIsErrNotFound", testSubscriptionGetMissing},
	{"InsertDuplicateIDFails", testSubscriptionInsertDuplicate},
	{"UpdateReplacesFieldsKeepsCreatedAtSetsUpdatedAt", testSubscriptionUpdate},
	{"UpdateMissingIsErrNotFound", testSubscriptionUpdateMissing},
	{"UpdateChangeErrorStoresNothing", testSubscriptionUpdateChangeError},
	{"ConcurrentUpdatesAreNotLost", testSubscriptionUpdateConcurrent},
	{"DeleteRemovesIt", testSubscriptionDelete},
	{"DeleteMissingIsErrNotFound", testSubscriptionDeleteMissing},
	{"ListIsInIDOrderAndPages", testSubscriptionList},
	{"ListFiltersByTenant", testSubscriptionListTenant},
	{"ListFiltersByLabels", testSubscriptionListLabels},
	{"WithoutTenantIsTheDefaultTenants", testSubscriptionDefaultTenant},
	{"VersionGrowsOnInsertUpdateDelete", testSubscriptionsVersion},
	{"ChangesSinceAVersion", testSubscriptionChanges},
}

// fullSubscription returns a subscription with every field set.
func fullSubscription(id string) *store.Subscription {
	return &store.Subscription{
		ID:          id,
		Tenant:      "acme",
		DisplayName: "Acme orders",
		Description: "orders for the EU warehouse",
		Labels:      map[string]string{"team": "payments", "env": "prod"},
		Source:      "/orders",
		Types:       []string{"com.example.order.created", "com.example.order.paid"},
		Config:      map[string]string{"team": "payments"},
		Filters: []filter.Expression{
			{Prefix: map[string]string{"subject": "eu/"}},
			{Not: &filter.Expression{SQL: "amount > 100"}},
			{Any: []filter.Expression{{Exact: map[string]string{"tier": "gold"}}, {Suffix: map[string]string{"type": ".paid"}}}},
		},
		Sink:        "https://receiver.example/hooks",
		Protocol:    "HTTP",
		Headers:     map[string]string{"X-Team": "payments"},
		Method:      "POST",
		State:       store.SubscriptionDisabled,
		StateReason: "endpoint returned 410",
		Secrets:     []store.Secret{{Key: "whsec_bmV3ZXN0"}, {Key: "whsec_b2xkZXN0", ExpiresAt: at(time.Hour)}},
		BearerToken: "token-1",
		RetryPolicy: policy.Retry{
			InitialInterval:    2 * time.Second,
			BackoffCoefficient: 3,
			MaximumInterval:    time.Hour,
			MaximumAttempts:    5,
			MaximumAge:         12 * time.Hour,
			PermanentStatus:    []int{404},
			RetryableStatus:    []int{400},
		},
		ContentMode:    policy.ContentStructured,
		MaxBatchSize:   50,
		RateLimit:      600,
		AllowedRate:    300,
		MaxConcurrency: 4,
		SkipValidation: true,
		Validation:     &store.Validation{TokenHash: "abc", ExpiresAt: at(10 * time.Minute), RequestedRate: 600},

		SubscriptionPauseOnly: true,
		PausedUntil:           at(time.Minute),
		SuspendAfter:          90 * time.Minute,
		FailingSince:          at(-30 * time.Minute),
		CreatedAt:             at(-time.Hour),
		UpdatedAt:             at(-time.Minute),
	}
}

// minimalSubscription returns a subscription with only the needed fields.
func minimalSubscription(id string) *store.Subscription {
	return &store.Subscription{
		ID:        id,
		Tenant:    store.DefaultTenant,
		Sink:      "https://receiver.example/" + id,
		State:     store.SubscriptionActive,
		CreatedAt: t0,
		UpdatedAt: t0,
	}
}

// checkSubscription compares every field, times by instant.
func checkSubscription(t testing.TB, got, want *store.Subscription) {
	t.Helper()
	g, w := *got, *want
	for _, p := range []*time.Time{&g.PausedUntil, &g.CreatedAt, &g.UpdatedAt, &w.PausedUntil, &w.CreatedAt, &w.UpdatedAt} {
		if !p.IsZero() {
			*p = p.UTC()
		}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("subscription %s:\n got %+v\nwant %+v", want.ID, g, w)
	}
}

func subscriptionInsert(t testing.TB, s store.Store, sub *store.Subscription) {
	t.Helper()
	if err := s.SubscriptionInsert(t.Context(), sub); err != nil {
		t.Fatalf("SubscriptionInsert(%s): %v", sub.ID, err)
	}
}

func testSubscriptionRoundTrip(t *testing.T, s store.Store) {
	for _, want := range []*store.Subscription{fullSubscription("sub_full"), minimalSubscription("sub_min")} {
		subscriptionInsert(t, s, want)
		got, err := s.SubscriptionGet(t.Context(), want.ID)
		if err != nil {
			t.Fatalf("SubscriptionGet(%s): %v", want.ID, err)
		}
		checkSubscription(t, got, want)
	}
}

func testSubscriptionGetMissing(t *testing.T, s store.Store) {
	subscriptionInsert(t, s, minimalSubscription("sub_1"))
	if _, err := s.SubscriptionGet(t.Context(), "sub_2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SubscriptionGet(missing) error = %v, want ErrNotFound", err)
	}
}

func testSubscriptionInsertDuplicate(t *testing.T, s store.Store) {
	subscriptionInsert(t, s, minimalSubscription("sub_1"))
	if err := s.SubscriptionInsert(t.Context(), fullSubscription("sub_1")); err == nil {
		t.Fatal("SubscriptionInsert with a stored ID succeeded")
	}
	got, err := s.SubscriptionGet(t.Context(), "sub_1")
	if err != nil {
		t.Fatal(err)
	}
	checkSubscription(t, got, minimalSubscription("sub_1"))
}

func testSubscriptionUpdate(t *testing.T, s store.Store) {
	subscriptionInsert(t, s, minimalSubscription("sub_1"))
	// Drivers keep at least milliseconds.
	before := time.Now().Truncate(time.Millisecond)
	changed, err := s.SubscriptionUpdate(t.Context(), "sub_1", func(sub *store.Subscription) error {
		*sub = *fullSubscription("sub_1")
		sub.ID = "ignored" // the ID cannot change
		sub.CreatedAt, sub.UpdatedAt = time.Time{}, time.Time{}
		return nil
	})
	if err != nil {
		t.Fatalf("SubscriptionUpdate: %v", err)
	}
	if changed.ID != "sub_1" {
		t.Errorf("SubscriptionUpdate changed the ID to %q", changed.ID)
	}
	if !changed.CreatedAt.Equal(t0) {
		t.Errorf("SubscriptionUpdate set CreatedAt to %v, want the stored %v", changed.CreatedAt, t0)
	}
	if changed.UpdatedAt.Before(before) {
		t.Errorf("SubscriptionUpdate set UpdatedAt to %v, before the update began (%v)", changed.UpdatedAt, before)
	}
	got, err := s.SubscriptionGet(t.Context(), "sub_1")
	if err != nil {
		t.Fatal(err)
	}
	checkSubscription(t, got, changed)
}

func testSubscriptionUpdateMissing(t *testing.T, s store.Store) {
	_, err := s.SubscriptionUpdate(t.Context(), "sub_1", func(*store.Subscription) error { return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SubscriptionUpdate(missing) error = %v, want ErrNotFound", err)
	}
}

// testSubscriptionUpdateChangeError: a change that fails stores nothing.
func testSubscriptionUpdateChangeError(t *testing.T, s store.Store) {
	subscriptionInsert(t, s, minimalSubscription("sub_1"))
	boom := errors.New("boom")
	_, err := s.SubscriptionUpdate(t.Context(), "sub_1", func(sub *store.Subscription) error {
		sub.Sink = "https://changed.example/"
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error = %v, want the change's", err)
	}
	got, err := s.SubscriptionGet(t.Context(), "sub_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Sink == "https://changed.example/" {
		t.Error("a failed change was stored")
	}
}

// testSubscriptionUpdateConcurrent: concurrent changes of one subscription
// are applied one after another; none is lost.
func testSubscriptionUpdateConcurrent(t *testing.T, s store.Store) {
	subscriptionInsert(t, s, minimalSubscription("sub_1"))
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.SubscriptionUpdate(t.Context(), "sub_1", func(sub *store.Subscription) error {
				sub.MaxConcurrency++
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.SubscriptionGet(t.Context(), "sub_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.MaxConcurrency != n {
		t.Errorf("after %d concurrent increments MaxConcurrency = %d: updates were lost", n, got.MaxConcurrency)
	}
}

func testSubscriptionDelete(t *testing.T, s store.Store) {
	subscriptionInsert(t, s, minimalSubscription("sub_1"))
	subscriptionInsert(t, s, minimalSubscription("sub_2"))
	if err := s.SubscriptionDelete(t.Context(), "sub_1"); err != nil {
		t.Fatalf("SubscriptionDelete: %v", err)
	}
	if _, err := s.SubscriptionGet(t.Context(), "sub_1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SubscriptionGet(deleted) error = %v, want ErrNotFound", err)
	}
	if _, err := s.SubscriptionGet(t.Context(), "sub_2"); err != nil {
		t.Errorf("SubscriptionGet(other) error = %v", err)
	}
}

func testSubscriptionDeleteMissing(t *testing.T, s store.Store) {
	if err := s.SubscriptionDelete(t.Context(), "sub_1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SubscriptionDelete(missing) error = %v, want ErrNotFound", err)
	}
}

func testSubscriptionList(t *testing.T, s store.Store) {
	if subs, err := s.SubscriptionList(t.Context(), store.SubscriptionListParams{}); err != nil || len(subs) != 0 {
		t.Fatalf("SubscriptionList(empty store) = %d, %v; want 0, nil", len(subs), err)
	}
	for _, n := range []int{3, 1, 5, 2, 4} {
		subscriptionInsert(t, s, minimalSubscription(fmt.Sprintf("sub_%d", n)))
	}
	all := []string{"sub_1", "sub_2", "sub_3", "sub_4", "sub_5"}
	tests := []struct {
		name string
		p    store.SubscriptionListParams
		want []string
	}{
		{"zero limit lists all", store.SubscriptionListParams{}, all},
		{"limit", store.SubscriptionListParams{Limit: 2}, all[:2]},
		{"after", store.SubscriptionListParams{After: "sub_2", Limit: 2}, all[2:4]},
		{"last page", store.SubscriptionListParams{After: "sub_4", Limit: 2}, all[4:]},
		{"past the end", store.SubscriptionListParams{After: "sub_5"}, nil},
	}
	for _, tt := range tests {
		subs, err := s.SubscriptionList(t.Context(), tt.p)
		if err != nil {
			t.Fatalf("%s: SubscriptionList: %v", tt.name, err)
		}
		var got []string
		for _, sub := range subs {
			got = append(got, sub.ID)
		}
		if !equalStrings(got, tt.want) {
			t.Errorf("%s: SubscriptionList = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func testSubscriptionListTenant(t *testing.T, s store.Store) {
	for i, tenant := range []string{"acme", "globex", "acme", store.DefaultTenant, "acme"} {
		sub := minimalSubscription(fmt.Sprintf("sub_%d", i+1))
		sub.Tenant = tenant
		subscriptionInsert(t, s, sub)
	}
	tests := []struct {
		p    store.SubscriptionListParams
		want []string
	}{
		{store.SubscriptionListParams{Tenant: "acme"}, []string{"sub_1", "sub_3", "sub_5"}},
		{store.SubscriptionListParams{Tenant: "acme", Limit: 2}, []string{"sub_1", "sub_3"}},
		{store.SubscriptionListParams{Tenant: "acme", After: "sub_3"}, []string{"sub_5"}},
		{store.SubscriptionListParams{Tenant: "globex"}, []string{"sub_2"}},
		{store.SubscriptionListParams{Tenant: store.DefaultTenant}, []string{"sub_4"}},
		{store.SubscriptionListParams{Tenant: "initech"}, nil},
		{store.SubscriptionListParams{}, []string{"sub_1", "sub_2", "sub_3", "sub_4", "sub_5"}},
	}
	for _, tt := range tests {
		subs, err := s.SubscriptionList(t.Context(), tt.p)
		if err != nil {
			t.Fatalf("SubscriptionList(%+v): %v", tt.p, err)
		}
		var got []string
		for _, sub := range subs {
			got = append(got, sub.ID)
		}
		if !equalStrings(got, tt.want) {
			t.Errorf("SubscriptionList(%+v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func testSubscriptionDefaultTenant(t *testing.T, s store.Store) {
	sub := minimalSubscription("sub_1")
	sub.Tenant = ""
	subscriptionInsert(t, s, sub)
	got, err := s.SubscriptionGet(t.Context(), "sub_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Tenant != store.DefaultTenant {
		t.Errorf("Tenant = %q, want %q", got.Tenant, store.DefaultTenant)
	}
	subs, err := s.SubscriptionList(t.Context(), store.SubscriptionListParams{Tenant: store.DefaultTenant})
	if err != nil || len(subs) != 1 {
		t.Errorf("SubscriptionList(default tenant) = %d subscriptions, %v; want 1", len(subs), err)
	}
}

func testSubscriptionsVersion(t *testing.T, s store.Store) {
	ctx := t.Context()
	last, err := s.SubscriptionsVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"insert", func() error { return s.SubscriptionInsert(ctx, minimalSubscription("sub_1")) }},
		{"update", func() error {
			_, err := s.SubscriptionUpdate(ctx, "sub_1", func(sub *store.Subscription) error { sub.Sink = "https://b.example/"; return nil })
			return err
		}},
		{"second insert", func() error { return s.SubscriptionInsert(ctx, minimalSubscription("sub_2")) }},
		{"delete", func() error { return s.SubscriptionDelete(ctx, "sub_1") }},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		v, err := s.SubscriptionsVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v <= last {
			t.Errorf("after %s, SubscriptionsVersion = %d, want more than %d", step.name, v, last)
		}
		last = v
	}
}

func testSubscriptionChanges(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"sub_1", "sub_2", "sub_3"} {
		subscriptionInsert(t, s, minimalSubscription(id))
	}
	ch, err := s.SubscriptionChanges(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Changed) != 3 || len(ch.Deleted) != 0 {
		t.Fatalf("changes since 0: %d changed, %v deleted; want 3, none", len(ch.Changed), ch.Deleted)
	}
	v, err := s.SubscriptionsVersion(ctx)
	if err != nil || ch.Version != v {
		t.Fatalf("changes bring the caller to %d, the version is %d (%v)", ch.Version, v, err)
	}
	// Nothing since then.
	if ch, err := s.SubscriptionChanges(ctx, v); err != nil || len(ch.Changed)+len(ch.Deleted) != 0 || ch.Version != v {
		t.Fatalf("changes since the current version: %+v, %v; want none", ch, err)
	}
	// An update, a deletion and an insert since v: exactly those.
	if _, err := s.SubscriptionUpdate(ctx, "sub_2", func(sub *store.Subscription) error { sub.Sink = "https://changed.example/"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.SubscriptionDelete(ctx, "sub_3"); err != nil {
		t.Fatal(err)
	}
	subscriptionInsert(t, s, minimalSubscription("sub_4"))
	ch, err = s.SubscriptionChanges(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, sub := range ch.Changed {
		changed = append(changed, sub.ID)
	}
	if fmt.Sprint(changed) != "[sub_2 sub_4]" || fmt.Sprint(ch.Deleted) != "[sub_3]" || ch.Version <= v {
		t.Errorf("changes since %d: changed %v, deleted %v, version %d; want [sub_2 sub_4], [sub_3], more than %d", v, changed, ch.Deleted, ch.Version, v)
	}
	if ch.Changed[0].Sink != "https://changed.example/" {
		t.Errorf("the changed subscription reads as %+v", ch.Changed[0])
	}
}

func testSubscriptionListLabels(t *testing.T, s store.Store) {
	for i, labels := range []map[string]string{
		{"team": "payments", "env": "prod"},
		{"team": "payments", "env": "staging"},
		{"team": "search", "env": "prod", "k8s.io/app": "x"},
		nil,
	} {
		sub := minimalSubscription(fmt.Sprintf("sub_%d", i+1))
		sub.Labels = labels
		subscriptionInsert(t, s, sub)
	}
	for _, tt := range []struct {
		labels map[string]string
		want   []string
	}{
		{map[string]string{"team": "payments"}, []string{"sub_1", "sub_2"}},
		{map[string]string{"team": "payments", "env": "prod"}, []string{"sub_1"}},
		{map[string]string{"k8s.io/app": "x"}, []string{"sub_3"}},
		{map[string]string{"team": "nobody"}, nil},
	} {
		subs, err := s.SubscriptionList(t.Context(), store.SubscriptionListParams{Labels: tt.labels, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, sub := range subs {
			got = append(got, sub.ID)
		}
		if !equalStrings(got, tt.want) {
			t.Errorf("labels %v: %v, want %v", tt.labels, got, tt.want)
		}
	}
}
