// Package catalog keeps an in-memory snapshot of every subscription,
// compiled for matching and signing, and reloads it when the store changes.
package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/signing"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/filter"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/store"
)

// Entry is one subscription, ready to sign with.
type Entry struct {
	Subscription *store.Subscription
	// Origin is the sink's origin (delivery.Origin), the key its
	// requests wait under in the scheduler; parsed once here rather than
	// for every request.
	Origin string
	signer atomic.Pointer[signerUntil]
	// grant is the rate granted to Origin, shared by the entries of
	// every subscription on it; nil outside a catalog.
	grant *originGrant
	// sharedHost: the sink is on one of the catalog's shared hosts.
	sharedHost bool
}

// Alone reports whether the subscription keeps out of its sink origin's
// sharing: its Retry-After pauses and its granted rate hold for it alone,
// and nobody else's hold for it. So it is with subscription_pause_only,
// and for a sink on one of the catalog's shared hosts (SharedHosts).
func (en *Entry) Alone() bool { return en.Subscription.SubscriptionPauseOnly || en.sharedHost }

// OriginRate is the rate, in requests per minute, that the sink's origin
// granted Herald as a whole and the subscription's requests are held to,
// together with those of the other subscriptions on the origin: the
// lowest WebHook-Allowed-Rate any of them was granted in its handshake.
// A subscription that does not share its origin (Alone) keeps its grant
// to itself (store.Subscription.EffectiveRate), and this is 0 for it. 0:
// no rate was granted.
func (en *Entry) OriginRate() int {
	sub := en.Subscription
	switch {
	case en.Alone():
		return 0
	case en.grant == nil:
		return sub.AllowedRate
	}
	return int(en.grant.rate.Load())
}

// originGrant is the rate granted to one sink origin: the lowest of the
// rates granted to the subscriptions that share it.
type originGrant struct {
	rate atomic.Int64
	// Guarded by Catalog.mu: how many entries point at it, and the rates
	// granted to the subscriptions that share the origin, by ID (only
	// those granted a rate).
	refs    int
	granted map[string]int
}

// grantFor returns origin's grant, creating it.
func (c *Catalog) grantFor(origin string) *originGrant {
	g := c.grants[origin]
	if g == nil {
		g = &originGrant{granted: map[string]int{}}
		c.grants[origin] = g
	}
	return g
}

// regrant counts the entries that left and joined the catalog in their
// origins' grants, and drops the grants no entry points at any more.
func (c *Catalog) regrant(left, joined []*Entry) {
	touched := map[*originGrant]string{}
	for _, en := range joined {
		en.grant.refs++
	}
	for _, en := range left {
		en.grant.refs--
		delete(en.grant.granted, en.Subscription.ID)
		touched[en.grant] = en.Origin
	}
	for _, en := range joined {
		if sub := en.Subscription; sub.AllowedRate > 0 && !en.Alone() {
			en.grant.granted[sub.ID] = sub.AllowedRate
		}
		touched[en.grant] = en.Origin
	}
	for g, origin := range touched {
		g.update()
		if g.refs <= 0 && c.grants[origin] == g {
			delete(c.grants, origin)
		}
	}
}

// update sets g's rate to the lowest granted.
func (g *originGrant) update() {
	lowest := 0
	for _, r := range g.granted {
		if lowest == 0 || r < lowest {
			lowest = r
		}
	}
	g.rate.Store(int64(lowest))
}

type signerUntil struct {
	signer *signing.Signer
	until  time.Time // when a key expires and the signer must be rebuilt; zero: never
}

// NewEntry returns an entry for sub.
func NewEntry(sub *store.Subscription) (*Entry, error) {
	en := &Entry{Subscription: sub, Origin: delivery.Origin(sub.Sink)}
	if _, err := en.Signer(time.Now()); err != nil {
		return nil, err
	}
	return en, nil
}

// Signer returns a signer with the keys that sign at now (rotated-out keys
// stop signing when their overlap ends).
func (en *Entry) Signer(now time.Time) (*signing.Signer, error) {
	if cur := en.signer.Load(); cur != nil && (cur.until.IsZero() || now.Before(cur.until)) {
		return cur.signer, nil
	}
	sub := en.Subscription
	signer, err := signing.NewSigner(sub.SigningKeys(now)...)
	if err != nil {
		return nil, fmt.Errorf("subscription %s: %w", sub.ID, err)
	}
	next := signerUntil{signer: signer}
	for _, sec := range sub.Secrets {
		if sec.ExpiresAt.After(now) && (next.until.IsZero() || sec.ExpiresAt.Before(next.until)) {
			next.until = sec.ExpiresAt
		}
	}
	en.signer.Store(&next)
	return signer, nil
}

// Store is what the catalog reads.
type Store interface {
	SubscriptionList(ctx context.Context, p store.SubscriptionListParams) ([]*store.Subscription, error)
	SubscriptionsVersion(ctx context.Context) (int64, error)
	SubscriptionChanges(ctx context.Context, after int64) (store.SubscriptionChanges, error)
}

// Catalog is a snapshot of all subscriptions. Reads never block; Reload
// swaps in a new snapshot. Safe for concurrent use.
type Catalog struct {
	store  Store
	logger *slog.Logger
	snap   atomic.Pointer[snapshot]
	mu     sync.Mutex // serialises reloads
	// grants are the rates granted to sink origins, by origin; guarded
	// by mu.
	grants map[string]*originGrant
	// shared are the shared sink hosts (SharedHosts).
	shared []string
	// enabled, if set, is called by a reload with each subscription it
	// found no longer held (suspended or disabled before, not now).
	enabled func(id string)
}

// SharedHosts names the sink hosts whose paths belong to unrelated
// receivers, each a name or *.domain (every name under domain),
// lower-case: subscriptions with sinks there keep out of their origin's
// sharing (Entry.Alone). Call it before the first reload.
func (c *Catalog) SharedHosts(hosts []string) { c.shared = hosts }

// onSharedHost reports whether origin's host is one of c.shared.
func (c *Catalog) onSharedHost(origin string) bool {
	if len(c.shared) == 0 {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	for _, h := range c.shared {
		if domain, ok := strings.CutPrefix(h, "*."); ok && strings.HasSuffix(host, "."+domain) || host == h {
			return true
		}
	}
	return false
}

// OnEnabled has f called, from a reload, with the ID of every
// subscription the reload finds enabled again (held before, suspended or
// disabled, and not now): its held deliveries are to be released. Call
// it before the first reload.
func (c *Catalog) OnEnabled(f func(id string)) { c.enabled = f }

type snapshot struct {
	version int64
	set     *filter.Set // subscriptions that take new events

	byID map[string]*Entry // every subscription
	// rules are the compiled matching rules of the subscriptions that take
	// new events, by ID, kept so that a reload compiles only what changed.
	rules map[string]*filter.CompiledRule
}

// New returns an empty catalog; call Reload before use.
func New(s Store, logger *slog.Logger) *Catalog {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{store: s, logger: logger, grants: map[string]*originGrant{}}
	c.snap.Store(&snapshot{version: -1, set: filter.IndexSet(nil), byID: map[string]*Entry{}, rules: map[string]*filter.CompiledRule{}})
	return c
}

// Reload brings the catalog up to date with the store, if it changed: the
// first time by reading every subscription, afterwards by reading only
// the subscriptions written or deleted since the version it holds
// (SubscriptionChanges), so that its cost follows the changes, not the
// number of subscriptions: only changed subscriptions are compiled, and
// only the matching index's lists they are in are rebuilt.
func (c *Catalog) Reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.store.SubscriptionsVersion(ctx)
	if err != nil {
		return fmt.Errorf("catalog: read version: %w", err)
	}
	old := c.snap.Load()
	if v == old.version {
		return nil
	}
	next := &snapshot{}
	// The entries that leave and join the catalog, counted in their
	// origins' grants once the reload cannot fail.
	var left, joined []*Entry
	var changed []*store.Subscription
	var removed []*filter.CompiledRule // the old rules of what changed
	if old.version < 0 {
		// Read the version first: a write during the listing is read
		// again at the next reload, never missed.
		subs, err := c.store.SubscriptionList(ctx, store.SubscriptionListParams{})
		if err != nil {
			return fmt.Errorf("catalog: list subscriptions: %w", err)
		}
		next.version, changed = v, subs
		next.byID = make(map[string]*Entry, len(subs))
		next.rules = make(map[string]*filter.CompiledRule, len(subs))
	} else {
		ch, err := c.store.SubscriptionChanges(ctx, old.version)
		if err != nil {
			return fmt.Errorf("catalog: read changes: %w", err)
		}
		next.version, changed = ch.Version, ch.Changed
		next.byID, next.rules = maps.Clone(old.byID), maps.Clone(old.rules)
		for _, id := range ch.Deleted {
			if r, ok := next.rules[id]; ok {
				removed = append(removed, r)
			}
			if was, ok := next.byID[id]; ok {
				left = append(left, was)
			}
			delete(next.byID, id)
			delete(next.rules, id)
		}
	}
	var added []*filter.CompiledRule
	var enabled []string
	for _, s := range changed {
		if was, ok := old.byID[s.ID]; ok && lifecycle.Holds(was.Subscription) && !lifecycle.Holds(s) {
			enabled = append(enabled, s.ID)
		}
		if r, ok := next.rules[s.ID]; ok {
			removed = append(removed, r)
		}
		if was, ok := old.byID[s.ID]; ok {
			left = append(left, was)
		}
		delete(next.byID, s.ID)
		delete(next.rules, s.ID)
		en, err := NewEntry(s)
		if err != nil {
			// A stored subscription always has valid secrets; keep the rest
			// of the catalog working if one does not.
			c.logger.Error("catalog: bad signing secret", "subscription", s.ID, "err", err)
			continue
		}
		en.sharedHost = c.onSharedHost(en.Origin)
		en.grant = c.grantFor(en.Origin)
		joined = append(joined, en)
		next.byID[s.ID] = en
		// Every subscription takes new events: for a sink still to
		// consent they are stored and delivered once it does; for a
		// suspended or disabled one they are stored held, and delivered
		// once it is enabled (lifecycle.Holds).
		r, err := filter.CompileRule(filter.Rule{ID: s.ID, Source: s.Source, Types: s.Types, Filters: s.Filters})
		if err != nil {
			return fmt.Errorf("catalog: compile filters: %w", err)
		}
		next.rules[s.ID] = r
		added = append(added, r)
	}
	// Only the index lists the changed rules are in are rebuilt.
	next.set = old.set.Update(removed, added)
	c.regrant(left, joined)
	c.snap.Store(next)
	if c.enabled != nil {
		for _, id := range enabled {
			c.enabled(id)
		}
	}
	return nil
}

// Run reloads the catalog every interval until ctx is done, so that changes
// made by other Herald nodes are seen.
func (c *Catalog) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.Reload(ctx); err != nil && ctx.Err() == nil {
				c.logger.Warn("catalog reload failed", "err", err)
			}
		}
	}
}

// Match appends the subscriptions that e matches to dst, in any state
// (the publisher stores a suspended or disabled one's deliveries held): any tenant's when tenant is empty,
// else only that tenant's.
func (c *Catalog) Match(e *event.Event, tenant string, dst []*Entry) []*Entry {
	snap := c.snap.Load()
	var idsBuf [8]string
	for _, id := range snap.set.Match(e, idsBuf[:0]) {
		if en, ok := snap.byID[id]; ok && (tenant == "" || en.Subscription.Tenant == tenant) {
			dst = append(dst, en)
		}
	}
	return dst
}

// Tenant returns the IDs of a tenant's subscriptions, in any state.
func (c *Catalog) Tenant(tenant string) []string {
	ids := []string{}
	for id, en := range c.snap.Load().byID {
		if en.Subscription.Tenant == tenant {
			ids = append(ids, id)
		}
	}
	return ids
}

// OnSinkHost returns the IDs of the subscriptions, in any state, whose sink
// is on host: a host name (any port) or host:port. The list is never nil.
func (c *Catalog) OnSinkHost(host string) []string {
	ids := []string{}
	for id, en := range c.snap.Load().byID {
		u, err := url.Parse(en.Subscription.Sink)
		if err == nil && (strings.EqualFold(u.Host, host) || strings.EqualFold(u.Hostname(), host)) {
			ids = append(ids, id)
		}
	}
	return ids
}

// Get returns a subscription's entry, active or not.
func (c *Catalog) Get(id string) (*Entry, bool) {
	en, ok := c.snap.Load().byID[id]
	return en, ok
}
