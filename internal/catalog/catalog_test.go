package catalog_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/signing"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

func openStore(t *testing.T) *sqlite.Store {
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

func TestMatch_TakesActiveAndPendingSubscriptionsOnly(t *testing.T) {
	s := openStore(t)
	insert(t, s, "sub_active", store.SubscriptionActive, "t")
	insert(t, s, "sub_pending", store.SubscriptionPendingValidation, "t")
	insert(t, s, "sub_disabled", store.SubscriptionDisabled, "t")
	insert(t, s, "sub_other", store.SubscriptionActive, "other")
	c := catalog.New(s, nil)
	if err := c.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := matchIDs(c, "t")
	if len(got) != 2 || !got["sub_active"] || !got["sub_pending"] {
		t.Errorf("matched %v, want sub_active and sub_pending", got)
	}
	// A disabled subscription takes no new events, but is still known:
	// its deliveries in flight find it.
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
	if got := matchTenant(c, "acme", "t"); len(got) != 1 || !got["sub_acme"] {
		t.Errorf("acme's event matched %v, want sub_acme only", got)
	}
	if got := matchTenant(c, "", "t"); len(got) != 2 {
		t.Errorf("an event of no tenant matched %v, want every tenant's active subscription", got)
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
