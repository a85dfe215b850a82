// Package clusterlimit makes a subscription's rate and concurrency limits
// and a sink origin's Retry-After pause hold for every node that shares
// the store, not per node.
//
// Rates: each limited bucket (a subscription's rate, or the rate a sink's
// origin granted; scheduler.KeyBucket and scheduler.OriginBucket) has one
// token bucket row in the store (store.Store's TokenTake), refilled at its rate and
// holding at most Burst(rate) tokens. A node leases tokens from it in
// small batches, as many as the requests waiting for them but at most
// the rate's worth of config.DefaultTokenLease (one token at 60 a minute,
// 250 at 60,000 a minute), and spends them locally as the scheduler
// starts requests; tokens not spent within config.DefaultTokenSpend are
// dropped. So in any window of T seconds, the requests held to a bucket
// that start on all nodes together are at most rate × (T + spend) +
// Burst(rate). A request held to no rate never touches the store.
//
// Pauses: a 429 or 503 with Retry-After pauses the sink's origin
// (scheme://host:port) in the store; every node reads the pauses every
// config.DefaultClusterRefresh, so every subscription on that origin, on
// every node, waits (the node that was answered, at once).
//
// Concurrency: each node beats in the store every refresh and counts the
// live nodes, n; a key's max_concurrency is shared as ceil(max / n) per
// node, so the cluster holds at most max + n - 1 in flight (n at least:
// one per node), and for up to a refresh after a node joins, up to one
// more node's share.
package clusterlimit

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/store"
)

// Store is what the limiter needs of store.Store.
type Store interface {
	TokenTake(ctx context.Context, p store.TokenTakeParams) (store.TokenGrant, error)
	SinkPauseSet(ctx context.Context, p store.SinkPause) error
	SinkPauseList(ctx context.Context, now time.Time) ([]store.SinkPause, error)
	NodeBeat(ctx context.Context, p store.NodeBeatParams) (int, error)
	LimitsForget(ctx context.Context, before time.Time) (int, error)
}

// Config tunes a Limiter; zero fields take package config's defaults.
type Config struct {
	// Node is this node's identity in the heartbeat table (default: a
	// new one).
	Node string
	// Lease is how much of a rate one lease takes (default
	// config.DefaultTokenLease), Spend how long leased tokens stay
	// usable (default config.DefaultTokenSpend).
	Lease, Spend time.Duration
	// Refresh is how often pauses and live nodes are read (default
	// config.DefaultClusterRefresh); TTL how long a node counts as
	// alive after its heartbeat (default config.DefaultNodeTTL).
	Refresh, TTL time.Duration
	// Forget is how often Run deletes the buckets idle, and the pauses
	// ended, for as long (default config.DefaultLimitsForget). A bucket
	// refills to its burst within two minutes at any rate, so one idle
	// for longer is as good as new.
	Forget time.Duration
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger // nil: no logging
}

func (c *Config) setDefaults() {
	if c.Node == "" {
		c.Node = id.New(id.Node)
	}
	if c.Lease <= 0 {
		c.Lease = config.DefaultTokenLease
	}
	if c.Spend <= 0 {
		c.Spend = config.DefaultTokenSpend
	}
	if c.Refresh <= 0 {
		c.Refresh = config.DefaultClusterRefresh
	}
	if c.TTL <= 0 {
		c.TTL = config.DefaultNodeTTL
	}
	if c.Forget <= 0 {
		c.Forget = config.DefaultLimitsForget
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Limiter is one node's share of the cluster's limits. Create with New
// and Run it. Safe for concurrent use.
type Limiter struct {
	cfg   Config
	store Store
	// ctx bounds lease requests; Run's context once it runs.
	ctx context.Context

	mu     sync.Mutex
	stock  map[string]*stock
	pauses map[string]time.Time
	nodes  int
	trips  int64 // store round trips for tokens, for tests and metrics
}

// stock is the tokens of one bucket this node holds.
type stock struct {
	tokens   int
	expires  time.Time // the tokens are dropped then
	next     time.Time // no lease before: the bucket was empty
	fetching bool
	waiting  []func() // called when a lease in flight ends
}

// New returns a Limiter on s.
func New(s Store, cfg Config) *Limiter {
	cfg.setDefaults()
	return &Limiter{cfg: cfg, store: s, ctx: context.Background(), stock: map[string]*stock{}, pauses: map[string]time.Time{}, nodes: 1}
}

// Burst is the most tokens a bucket holds at perMinute: its lease size,
// and at least 2.
func (l *Limiter) Burst(perMinute int) int { return max(2, l.leaseSize(perMinute)) }

func (l *Limiter) leaseSize(perMinute int) int {
	return max(1, int(math.Ceil(float64(perMinute)/60*l.cfg.Lease.Seconds())))
}

// Take takes one of key's tokens at perMinute for a request starting
// now, without blocking. With none held it returns false and either when
// to ask again, or the zero time when it is leasing more: then it calls
// ready (in another goroutine) when the lease ends. waiting is how many
// requests wait for key, which the lease may take tokens for. key names
// the bucket (scheduler.KeyBucket, scheduler.OriginBucket).
func (l *Limiter) Take(key string, perMinute, waiting int, now time.Time, ready func()) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stock[key]
	if st == nil {
		st = &stock{}
		l.stock[key] = st
	}
	if st.tokens > 0 && now.Before(st.expires) {
		st.tokens--
		return true, time.Time{}
	}
	st.tokens = 0
	if !st.fetching && now.Before(st.next) {
		// (With tokens still held until next, they come first.)
		return false, st.next
	}
	if ready != nil {
		st.waiting = append(st.waiting, ready)
	}
	if !st.fetching {
		st.fetching = true
		want := min(max(1, waiting), l.leaseSize(perMinute))
		go l.lease(l.ctx, key, perMinute, want)
	}
	return false, time.Time{}
}

// lease takes up to want tokens of key from the store.
func (l *Limiter) lease(ctx context.Context, key string, perMinute, want int) {
	rate := float64(perMinute) / 60
	now := l.cfg.Now()
	g, err := l.store.TokenTake(ctx, store.TokenTakeParams{
		Key: key, Rate: rate, Burst: float64(l.Burst(perMinute)), Want: want, Now: now,
	})
	l.mu.Lock()
	l.trips++
	st := l.stock[key]
	switch {
	case err != nil:
		metrics.TokenLeases.WithLabelValues("error").Inc()
		if l.cfg.Logger != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("lease rate tokens", "bucket", key, "err", err)
		}
		st.next = now.Add(time.Second)
	default:
		result := "empty"
		if g.Taken > 0 {
			st.tokens, st.expires = g.Taken, now.Add(l.cfg.Spend)
			result = "taken"
		}
		metrics.TokenLeases.WithLabelValues(result).Inc()
		if g.Left < float64(want) {
			// The bucket cannot give another such lease: ask again
			// when it can, not for every token, so that a lease stays
			// a batch while nodes share the rate, and a node that
			// spent its tokens asks no bucket it knows is empty.
			st.next = now.Add(time.Duration((float64(want) - g.Left) / rate * float64(time.Second)))
		}
	}
	st.fetching = false
	waiting := st.waiting
	st.waiting = nil
	l.mu.Unlock()
	for _, f := range waiting {
		f()
	}
}

// Return gives back a token of key that Take gave and no request used:
// the next Take spends it, if it has not expired.
func (l *Limiter) Return(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.stock[key]; st != nil && l.cfg.Now().Before(st.expires) {
		st.tokens++
	}
}

// Trips is how many times this node has leased tokens from the store.
func (l *Limiter) Trips() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.trips
}

// PausedUntil is when the pause of origin ends (zero or past: none).
func (l *Limiter) PausedUntil(origin string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pauses[origin]
}

// Pause pauses origin until until for every node.
func (l *Limiter) Pause(ctx context.Context, origin string, until time.Time) error {
	l.mu.Lock()
	if until.After(l.pauses[origin]) {
		l.pauses[origin] = until
	}
	l.mu.Unlock()
	return l.store.SinkPauseSet(ctx, store.SinkPause{Origin: origin, Until: until})
}

// Share is this node's share of a concurrency limit of max among the
// live nodes: ceil(max / nodes), at least 1; 0 (no limit) stays 0.
func (l *Limiter) Share(max int) int {
	if max <= 0 {
		return 0
	}
	l.mu.Lock()
	n := l.nodes
	l.mu.Unlock()
	return (max + n - 1) / n
}

// Refresh beats and reads the pauses and the live nodes once.
func (l *Limiter) Refresh(ctx context.Context) error {
	now := l.cfg.Now()
	n, err := l.store.NodeBeat(ctx, store.NodeBeatParams{ID: l.cfg.Node, Now: now, Until: now.Add(l.cfg.TTL)})
	if err != nil {
		return err
	}
	ps, err := l.store.SinkPauseList(ctx, now)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes = max(1, n)
	for o, until := range l.pauses {
		if !until.After(now) {
			delete(l.pauses, o)
		}
	}
	for _, p := range ps {
		if p.Until.After(l.pauses[p.Origin]) {
			l.pauses[p.Origin] = p.Until
		}
	}
	for k, st := range l.stock {
		if !st.fetching && !now.Before(st.expires) && !now.Before(st.next) {
			delete(l.stock, k)
		}
	}
	return nil
}

// Forget deletes from the store the buckets no node has taken from, and
// the pauses that ended, Config.Forget ago or earlier: rows of
// subscriptions and origins gone or idle, which would otherwise stay.
func (l *Limiter) Forget(ctx context.Context) error {
	_, err := l.store.LimitsForget(ctx, l.cfg.Now().Add(-l.cfg.Forget))
	return err
}

// Run refreshes every Config.Refresh until ctx ends; leases in flight
// then end too. Every Config.Forget it deletes the buckets idle, and the
// pauses ended, for as long (Forget).
func (l *Limiter) Run(ctx context.Context) {
	l.mu.Lock()
	l.ctx = ctx
	l.mu.Unlock()
	t := time.NewTicker(l.cfg.Refresh)
	defer t.Stop()
	forgotAt := l.cfg.Now()
	for {
		if err := l.Refresh(ctx); err != nil && ctx.Err() == nil && l.cfg.Logger != nil {
			l.cfg.Logger.Warn("refresh cluster limits", "err", err)
		}
		if now := l.cfg.Now(); now.Sub(forgotAt) >= l.cfg.Forget {
			forgotAt = now
			if err := l.Forget(ctx); err != nil && ctx.Err() == nil && l.cfg.Logger != nil {
				l.cfg.Logger.Warn("forget idle cluster limits", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
