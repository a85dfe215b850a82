// Package scheduler decides when each webhook request may start, so that
// no sink can slow another: requests wait in per-origin queues and share a
// node-wide in-flight budget fairly, each origin's concurrency adapts to
// how it answers, a subscription's rate limit is a wait for its token, and
// an origin that stops answering is cut off by a circuit breaker.
//
// An origin is a sink's scheme, host and port. A caller Acquires a slot
// for one request, sends it while holding the Grant, and reports how the
// origin answered with Grant.Done. Acquire blocks while the request waits
// its turn; it never spins and holds no other resource meanwhile.
//
// The rules, in the order they apply:
//   - The node holds at most Config.MaxInFlight requests in flight. Freed
//     slots go round robin to origins that have requests waiting, so a busy
//     origin cannot take the turn of a quiet one.
//   - Each origin holds at most its limit in flight. The limit starts at
//     Config.OriginConcurrency and adapts (AIMD, with latency): while
//     requests wait for the origin and its recent answers come about as
//     fast as its answers to requests that ran alone, the limit grows
//     (doubling at first, then by one per limit's worth of answers, never
//     more than doubling in 100 ms, and past 8 only while the process has
//     CPU to spare: Config.Busy); when they come over three times slower
//     it
//     shrinks by a tenth; a timeout, a connection failure, a 429 or a 503
//     halve it.
//   - A key (a subscription) holds at most its Limits.Concurrency in flight
//     and starts at most Limits.PerMinute requests a minute; a request over
//     its rate waits for its token in the queue (with Config.Tokens, for
//     a token of the cluster's too). Keys of one origin take turns.
//   - The keys of an origin whose Limits.OriginPerMinute is set (the rate
//     the origin granted) start at most that many requests a minute
//     together, in one bucket for the origin; keys without it are not
//     held to it.
//   - After Config.BreakerThreshold consecutive timeouts or connection
//     failures the origin's breaker opens for a backoff (doubling from
//     Config.BreakerOpen to Config.BreakerMaxOpen): waiting and new requests
//     are refused with the time to try again. Then one probe request is let
//     through; an answer closes the breaker, a failure opens it again.
//   - An origin may hold at most its share of Config.MaxQueued waiting
//     (or held for it with Hold): MaxQueued / (n+1), n being the origins
//     busy lately, itself included. One share is always left over, so an
//     origin that becomes busy finds room however the others are stuck;
//     when n grows, origins over their new share give back their newest
//     waiters at once.
//   - A request that cannot start before its Request.Deadline (its lease),
//     whose origin is at its share of the queue, or that waits when the
//     scheduler closes, is refused (*Refused), so that the caller puts it
//     back rather than holding it.
package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/internal/config"
)

// Config tunes a Scheduler. Zero fields take the defaults, which are
// package config's.
type Config struct {
	// MaxInFlight is the most requests in flight on the node (default
	// 4096).
	MaxInFlight int
	// MaxQueued is how many requests may wait on the node; an origin may
	// hold at most its share of it, MaxQueued / (origins busy lately + 1)
	// (default 4096). Set it to what feeds the scheduler (the
	// dispatcher's queue), so that no origin, nor all the busy ones
	// together, can fill that.
	MaxQueued int
	// OriginConcurrency is the in-flight limit an origin starts with
	// (default 4); MaxOriginConcurrency the most it grows to (default
	// 1024).
	OriginConcurrency    int
	MaxOriginConcurrency int
	// BreakerThreshold is how many timeouts or connection failures in a
	// row open an origin's breaker (default 3).
	BreakerThreshold int
	// BreakerOpen is how long the breaker first stays open (default 1s),
	// doubling each time the probe fails, up to BreakerMaxOpen (default
	// 10s).
	BreakerOpen    time.Duration
	BreakerMaxOpen time.Duration
	// Busy, if set, reports whether the process is using nearly all its
	// CPU (cpuload.Monitor.Busy): then an origin's limit grows no higher
	// than growFloor, since more requests in flight would only wait for
	// the CPU (an instant sink on this node's loopback, for one) and cost
	// it goroutines and connections.
	Busy func() bool
	// OnRecover, if set, is called (in its own goroutine) when an origin
	// answers with a success after failures of any kind: e.g. to wake the
	// retries waiting for it.
	OnRecover func(origin string)
	// Tokens, if set, lends rate tokens held outside this scheduler (a
	// share of a limit kept for the whole cluster): a request held to a
	// rate (its key's or its origin's) starts only when its local limiter
	// and Tokens both give it a token.
	Tokens Tokens
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Tokens lends rate tokens from buckets: a key's is named KeyBucket(key),
// an origin's OriginBucket(origin). Take takes one of bucket's tokens at
// perMinute for a request starting at now, never blocking: with none it
// returns false and when to ask again, or the zero time when it will
// call ready (from another goroutine, at any time) once it may have
// some. waiting is how many requests wait for the bucket. Return gives
// back a token that Take gave and no request used.
type Tokens interface {
	Take(bucket string, perMinute, waiting int, now time.Time, ready func()) (bool, time.Time)
	Return(bucket string)
}

// KeyBucket and OriginBucket name the Tokens buckets of a key (a
// subscription) and of an origin.
func KeyBucket(key string) string       { return "sub:" + key }
func OriginBucket(origin string) string { return "origin:" + origin }

func (c *Config) setDefaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = config.DefaultMaxInFlight
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = config.DefaultQueue
	}
	if c.OriginConcurrency <= 0 {
		c.OriginConcurrency = config.DefaultOriginConcurrency
	}
	if c.MaxOriginConcurrency <= 0 {
		c.MaxOriginConcurrency = config.DefaultMaxOriginConcurrency
	}
	c.OriginConcurrency = min(c.OriginConcurrency, c.MaxOriginConcurrency)
	if c.BreakerThreshold <= 0 {
		c.BreakerThreshold = config.DefaultBreakerThreshold
	}
	if c.BreakerOpen <= 0 {
		c.BreakerOpen = config.DefaultBreakerOpen
	}
	if c.BreakerMaxOpen <= 0 {
		c.BreakerMaxOpen = config.DefaultBreakerMaxOpen
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Limits are one key's limits; zero fields mean no limit.
type Limits struct {
	PerMinute   int // requests started per minute
	Concurrency int // requests in flight at once
	// OriginPerMinute is the rate the key's origin granted: the requests
	// started per minute by all the keys of the origin that carry it,
	// together. The last value carried is the origin's.
	OriginPerMinute int
}

// Request is one request asking to start.
type Request struct {
	Origin string // scheme://host:port of the sink
	Key    string // the subscription; its limits apply
	Limits Limits
	// Deadline, if set, is the latest time the request may start.
	Deadline time.Time
	// Held is how many places Hold took for this request in its origin's
	// queue: Acquire gives them back (the request waits in their stead,
	// without the check of its origin's share, which Hold made).
	Held int
}

// Signal is how an origin answered a request, as the scheduler reads it.
type Signal int

const (
	// Answered: a success (2xx).
	Answered Signal = iota
	// Failed: another answer, which says nothing about the origin's
	// capacity (most 4xx and 5xx).
	Failed
	// Overloaded: 429 or 503: the origin asks for less.
	Overloaded
	// Unreachable: a timeout or a connection failure: nothing answered.
	Unreachable
)

// Why a request was refused.
const (
	ReasonBreakerOpen = "the sink's origin is not answering (circuit breaker open)"
	ReasonDeadline    = "it could not start before its lease ended"
	ReasonQueueFull   = "too many requests are waiting for the sink's origin"
	ReasonClosed      = "the node is shutting down"
)

// Refused is Acquire's error when a request may not wait for its turn.
// The caller should put the request back until Until (or at once when
// Until is zero) without counting an attempt. A request refused for its
// origin's share (ReasonQueueFull) has an Until from 1 s to 30 s away:
// as long as the origin has gone without an answer.
type Refused struct {
	Reason string
	Until  time.Time
}

func (r *Refused) Error() string { return "scheduler: request refused: " + r.Reason }

// Scheduler decides when requests start. Create with New. Safe for
// concurrent use.
type Scheduler struct {
	cfg Config

	mu       sync.Mutex
	closed   bool
	inFlight int
	queued   int
	held     int // places held in origins' queues (Hold)
	active   int // origins with requests waiting, held or in flight
	recent   int // origins with requests within activeWindow, at recentAt
	recentAt time.Time
	// sharedBy is the count of busy origins the queue was last shared
	// among: when more are busy, shares shrink and origins over theirs
	// shed.
	sharedBy int
	refused  map[string]int64 // refusals by reason, for Stats
	origins  map[string]*origin
	// ring holds origins that may have a request to start, in turn order.
	// An origin leaves it when it has none that may start now, and comes
	// back when that may have changed: a request of it ends, a new one
	// waits, or its timer (a rate token, a deadline, the breaker) comes.
	ring   []*origin
	timers timerHeap
	timer  *time.Timer
	wakeAt time.Time // when timer fires; zero if stopped
}

// origin is one sink origin's state.
type origin struct {
	name      string
	inFlight  int
	waiting   int
	held      int // places held for requests about to wait (Hold)
	limit     float64
	slowStart bool
	lastDecr  time.Time
	idleSince time.Time
	busySince time.Time // when it last became busy
	lastEnd   time.Time // when a request of it was last answered (a timeout is no answer)
	// unreachableSince is when its current run of timeouts and
	// connection failures began (zero after an answer).
	unreachableSince time.Time
	// unloaded is the average latency of requests that ran nearly alone:
	// how fast the origin answers when it is not loaded; recent is the
	// average of every request's, lately.
	unloaded time.Duration
	recent   time.Duration
	// grownFrom is the limit at grownAt, when the current growEvery
	// began.
	grownFrom float64
	grownAt   time.Time
	// perMinute is the rate the origin granted (Limits.OriginPerMinute),
	// limiter its local bucket; nil: none.
	perMinute int
	limiter   *rate.Limiter
	keys      map[string]*key
	turns     []*key // keys with requests waiting, in turn order
	inRing    bool

	// The breaker: closed, open until openUntil, or half-open (tripped and
	// the open time over): one probe at a time.
	failures  int
	failing   bool // the last answer was not a success
	tripped   bool
	openUntil time.Time
	openFor   time.Duration // the next open period
}

// key is one subscription's state within its origin.
type key struct {
	name      string
	origin    *origin
	limits    Limits
	limiter   *rate.Limiter // nil: no rate limit
	inFlight  int
	waiters   []*waiter // first come, first served
	notBefore time.Time // the next rate token's time
}

type waiter struct {
	key      *key
	deadline time.Time
	ready    chan error // nil: granted
	done     bool       // granted or refused
	load     int        // when granted: its origin's requests in flight
}

// New returns a Scheduler.
func New(cfg Config) *Scheduler {
	cfg.setDefaults()
	return &Scheduler{cfg: cfg, origins: map[string]*origin{}}
}

// Grant is a started request's slot. Call Done when the request has ended.
type Grant struct {
	s     *Scheduler
	key   *key
	start time.Time
	load  int // the origin's requests in flight when this one started, itself included
	once  sync.Once
}

// Release gives the slot back unused: the request was not sent. It
// counts as nothing for the origin's limit and breaker. Only the first of
// Release and Done counts.
func (g *Grant) Release() {
	g.once.Do(func() { g.s.done(g.key, released, 0, 0) })
}

// released is the signal of a Grant given back unused.
const released Signal = -1

// Done ends the request and reports how its origin answered. Only the
// first call counts.
func (g *Grant) Done(sig Signal) {
	g.once.Do(func() { g.s.done(g.key, sig, g.s.cfg.Now().Sub(g.start), g.load) })
}

// Acquire waits until req may start and returns its Grant; or a *Refused
// error when it may not wait (see the package doc); or ctx's error.
func (s *Scheduler) Acquire(ctx context.Context, req Request) (*Grant, error) {
	s.mu.Lock()
	now := s.cfg.Now()
	o := s.origin(req.Origin)
	refuse := func(r *Refused) (*Grant, error) {
		s.unhold(o, req.Held, now)
		s.count(r)
		s.mu.Unlock()
		return nil, r
	}
	if s.closed {
		return refuse(&Refused{Reason: ReasonClosed})
	}
	if now.Before(o.openUntil) {
		return refuse(&Refused{Reason: ReasonBreakerOpen, Until: o.openUntil})
	}
	if !req.Deadline.IsZero() && !now.Before(req.Deadline) {
		return refuse(&Refused{Reason: ReasonDeadline})
	}
	k := o.key(req.Key, req.Limits)
	if len(k.waiters) == 0 && s.mayStart(o, k, now) {
		s.start(o, k)
		s.unhold(o, req.Held, now)
		load := o.inFlight
		s.reshare(now)
		s.mu.Unlock()
		return &Grant{s: s, key: k, start: now, load: load}, nil
	}
	if req.Held == 0 && o.waiting+o.held >= s.share(o, now) {
		return refuse(&Refused{Reason: ReasonQueueFull, Until: now.Add(o.spillFor(now))})
	}
	w := &waiter{key: k, deadline: req.Deadline, ready: make(chan error, 1)}
	s.enqueue(w, now)
	s.unhold(o, req.Held, now)
	s.reshare(now)
	s.dispatch(now)
	s.mu.Unlock()

	select {
	case err := <-w.ready:
		if err != nil {
			return nil, err
		}
		return &Grant{s: s, key: k, start: s.cfg.Now(), load: w.load}, nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	if !w.done {
		s.unqueue(w)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
	s.mu.Unlock()
	if err := <-w.ready; err == nil {
		// Granted just as ctx ended: give the slot back unused.
		s.done(k, released, 0, 0)
	}
	return nil, ctx.Err()
}

// Places asks Hold for room in one origin's queue.
type Places struct {
	Origin string
	Want   int // places wanted in all
	Held   int // places held so far; Hold adds to it
	// Stuck is set by Hold when it could not give all that is wanted
	// and the origin will not make room soon: its breaker is open, or it
	// is at its share and has gone a second or more without an answer.
	// Waiting for its room is pointless.
	Stuck bool
}

// Hold takes room in origins' queues for requests that will soon Acquire
// with Request.Held set: for each of ps, up to Want-Held more places,
// within the origin's share of the queue (its waiting requests and held
// places count against it) and at most budget in all; none for an origin
// whose breaker is open. It returns how many places it took. A caller
// that has held places it will not use gives them back with Unhold.
//
// It lets a caller that feeds the scheduler (the dispatcher, taking fresh
// deliveries from the publisher) take in only what each origin may hold,
// so that what it cannot take waits in the store rather than being
// refused after it was taken.
func (s *Scheduler) Hold(ps []Places, budget int) int {
	return s.hold(ps, budget, false)
}

// HoldIdle is Hold for origins that are not busy only (no request
// waiting, held or in flight): room always kept for them.
func (s *Scheduler) HoldIdle(ps []Places, budget int) int {
	return s.hold(ps, budget, true)
}

func (s *Scheduler) hold(ps []Places, budget int, idleOnly bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	now := s.cfg.Now()
	took := 0
	for i := range ps {
		p := &ps[i]
		if took >= budget {
			break
		}
		if p.Held >= p.Want || p.Origin == "" {
			continue
		}
		o := s.origin(p.Origin)
		if now.Before(o.openUntil) {
			p.Stuck = true
			continue
		}
		if idleOnly && o.busy() {
			continue
		}
		room := s.share(o, now) - o.waiting - o.held
		p.Stuck = room < p.Want-p.Held && o.spillFor(now) > spillMin
		n := min(p.Want-p.Held, room, budget-took)
		if n <= 0 {
			continue
		}
		if !o.busy() {
			s.active++
			o.busySince = now
		}
		o.held += n
		s.held += n
		p.Held += n
		took += n
	}
	s.reshare(now)
	return took
}

// Busy is how many origins share the queue now: those with requests
// waiting, held or in flight, or with some within the last 2 s. One more
// share than that is kept free (see share).
func (s *Scheduler) Busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busyOrigins(s.cfg.Now())
}

// Unhold gives back n places that Hold took in origin's queue and that
// no request will use.
func (s *Scheduler) Unhold(origin string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.origins[origin]; ok {
		s.unhold(o, n, s.cfg.Now())
	}
}

// unhold gives back up to n places held in o's queue.
func (s *Scheduler) unhold(o *origin, n int, now time.Time) {
	n = min(n, o.held)
	if n <= 0 {
		return
	}
	o.held -= n
	s.held -= n
	if !o.busy() {
		s.active--
		o.idleSince = now
	}
}

// Close refuses every waiting request, and every later Acquire; requests
// in flight end normally.
func (s *Scheduler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, o := range s.origins {
		s.refuseAll(o, &Refused{Reason: ReasonClosed})
	}
	if s.timer != nil {
		s.timer.Stop()
	}
}

// Stats is a snapshot of the scheduler.
type Stats struct {
	InFlight int // requests in flight
	Queued   int // requests waiting
	Held     int // places held in origins' queues (Hold)
	Origins  int // origins known
	Open     int // origins whose breaker is open or half-open
	// Refused counts the requests refused since the start, by reason
	// (Reason*): a refused request goes back to the store.
	Refused map[string]int64
}

// Stats returns a snapshot.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{InFlight: s.inFlight, Queued: s.queued, Held: s.held, Origins: len(s.origins),
		Refused: make(map[string]int64, len(s.refused))}
	for _, o := range s.origins {
		if o.tripped {
			st.Open++
		}
	}
	for r, n := range s.refused {
		st.Refused[r] = n
	}
	return st
}

// count counts a refusal.
func (s *Scheduler) count(r *Refused) {
	if s.refused == nil {
		s.refused = map[string]int64{}
	}
	s.refused[r.Reason]++
}

// OriginStats is one origin's state.
type OriginStats struct {
	Name     string
	InFlight int
	Waiting  int // requests waiting, and places held for them (Hold)
	Limit    int
	// Open is true while the breaker is open or half-open; OpenUntil is
	// when it lets a probe through.
	Open      bool
	OpenUntil time.Time
	// Failures is the timeouts and connection failures in a row.
	Failures int
}

// Origin returns an origin's state (zero if unknown).
func (s *Scheduler) Origin(name string) OriginStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.origins[name]
	if !ok {
		return OriginStats{}
	}
	return o.stats()
}

func (o *origin) stats() OriginStats {
	return OriginStats{Name: o.name, InFlight: o.inFlight, Waiting: o.waiting + o.held, Limit: int(o.limit),
		Open: o.tripped, OpenUntil: o.openUntil, Failures: o.failures}
}

// Origins returns the state of every origin known.
func (s *Scheduler) Origins() []OriginStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OriginStats, 0, len(s.origins))
	for _, o := range s.origins {
		out = append(out, o.stats())
	}
	return out
}

// origin returns origin name's state, creating it.
func (s *Scheduler) origin(name string) *origin {
	o, ok := s.origins[name]
	if ok {
		return o
	}
	if len(s.origins) >= forgetAt {
		s.forgetIdle()
	}
	o = &origin{name: name, limit: float64(s.cfg.OriginConcurrency), slowStart: true,
		openFor: s.cfg.BreakerOpen, keys: map[string]*key{}}
	s.origins[name] = o
	return o
}

// forgetAt is how many origins are known before idle ones are forgotten.
const forgetAt = 4096

// forgetIdle drops origins that have been idle and healthy for a while.
func (s *Scheduler) forgetIdle() {
	now := s.cfg.Now()
	for name, o := range s.origins {
		if !o.busy() && !o.tripped && o.failures == 0 && now.Sub(o.idleSince) > time.Minute {
			delete(s.origins, name)
		}
	}
}

// key returns the state of key name, with limits l.
func (o *origin) key(name string, l Limits) *key {
	k, ok := o.keys[name]
	if !ok {
		k = &key{name: name, origin: o}
		o.keys[name] = k
	}
	if k.limits.PerMinute != l.PerMinute {
		k.limiter = newLimiter(l.PerMinute)
	}
	k.limits = l
	if l.OriginPerMinute > 0 && l.OriginPerMinute != o.perMinute {
		o.perMinute, o.limiter = l.OriginPerMinute, newLimiter(l.OriginPerMinute)
	}
	return k
}

// newLimiter returns a local token bucket for perMinute (nil for 0: no
// limit). A burst of two keeps requests evenly spaced, and lets a request
// that the timer woke late not lose its token.
func newLimiter(perMinute int) *rate.Limiter {
	if perMinute <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(float64(perMinute)/60), 2)
}

// forget drops k if nothing of it needs keeping: no request waits or is in
// flight, and its rate limiter (if any) is full again.
func (o *origin) forget(k *key, now time.Time) {
	if len(k.waiters) == 0 && k.inFlight == 0 && (k.limiter == nil || k.limiter.TokensAt(now) >= float64(k.limiter.Burst())) {
		delete(o.keys, k.name)
	}
}

// share is how many requests origin o may have waiting (or held for it):
// MaxQueued / (n+1), n being the origins busy lately (with requests
// waiting, held or in flight within activeWindow), o included. The one
// share left over is room for an origin that is not busy yet: however
// the busy ones are stuck, together they hold at most n/(n+1) of the
// queue. An origin whose requests end at once is idle most of the time,
// and still counts.
func (s *Scheduler) share(o *origin, now time.Time) int {
	n := s.busyOrigins(now)
	if !o.busy() && now.Sub(o.idleSince) >= activeWindow {
		n++ // o itself, not counted yet
	}
	return s.shareOf(n)
}

// shareOf is one origin's share of the queue when n origins are busy.
func (s *Scheduler) shareOf(n int) int {
	return max(1, s.cfg.MaxQueued/(n+1))
}

// busyOrigins is how many origins are busy, or were lately; the count of
// those lately is refreshed every recentEvery.
func (s *Scheduler) busyOrigins(now time.Time) int {
	if now.Sub(s.recentAt) > recentEvery {
		s.recent, s.recentAt = 0, now
		for _, x := range s.origins {
			if x.busy() || now.Sub(x.idleSince) < activeWindow {
				s.recent++
			}
		}
		s.sharedBy = min(s.sharedBy, max(s.recent, s.active))
	}
	return max(s.recent, s.active)
}

// reshare shrinks the shares when more origins are busy than the queue
// was last shared among (since the last refresh of the count): origins
// over their new share refuse their newest waiters (ReasonQueueFull), so
// the room kept for one more origin is there again.
func (s *Scheduler) reshare(now time.Time) {
	n := s.busyOrigins(now)
	if n <= s.sharedBy {
		return
	}
	s.sharedBy = n
	limit := s.shareOf(n)
	for _, o := range s.origins {
		for o.waiting > 0 && o.waiting+o.held > limit {
			// The newest waiter of the key with the most waiting.
			k := o.turns[0]
			for _, x := range o.turns[1:] {
				if len(x.waiters) > len(k.waiters) {
					k = x
				}
			}
			s.refuse(k.waiters[len(k.waiters)-1], &Refused{Reason: ReasonQueueFull, Until: now.Add(o.spillFor(now))})
		}
	}
}

// spillFor is how long a request refused for its origin's share should
// wait before it comes back: as long as the origin has gone without an
// answer (since it became busy, or since its last answer; a timeout or a
// connection failure is none, and a run of them counts from its first,
// however often the breaker let the origin idle since), from spillMin to
// spillMax. An origin that
// answers gets its requests back soon; one that hangs is not asked for
// them again every few seconds.
func (o *origin) spillFor(now time.Time) time.Duration {
	since := o.unreachableSince // across breaker cycles, when it idles between them
	if since.IsZero() {
		since = o.lastEnd
		if o.busySince.After(since) {
			since = o.busySince
		}
	}
	return min(max(now.Sub(since), spillMin), spillMax)
}

// The least and the most a request refused for its origin's share waits.
const (
	spillMin = time.Second
	spillMax = 30 * time.Second
)

// An origin counts for the queue's shares while it had requests within
// activeWindow; the count is refreshed every recentEvery.
const (
	activeWindow = 2 * time.Second
	recentEvery  = 100 * time.Millisecond
)

// busy reports whether o has requests waiting, held or in flight.
func (o *origin) busy() bool { return o.waiting > 0 || o.inFlight > 0 || o.held > 0 }

// full reports whether o may start no request at all now, whichever key.
func (s *Scheduler) full(o *origin, now time.Time) bool {
	switch {
	case s.inFlight >= s.cfg.MaxInFlight:
		return true
	case now.Before(o.openUntil):
		return true
	case o.tripped: // half-open: one probe at a time
		return o.inFlight > 0
	}
	return o.inFlight >= int(o.limit)
}

// mayStart reports whether a request of k may start now; over its rate,
// it sets k.notBefore and a timer for then.
func (s *Scheduler) mayStart(o *origin, k *key, now time.Time) bool {
	if s.full(o, now) {
		return false
	}
	if k.limits.Concurrency > 0 && k.inFlight >= k.limits.Concurrency {
		return false
	}
	if k.limiter == nil && k.limits.OriginPerMinute <= 0 {
		return true // held to no rate: the common case, at no cost
	}
	// The key's rate, then the origin's: each a local token, then
	// (Config.Tokens) a token of the cluster's. What was taken is given
	// back when a later one is missing.
	buckets := [2]bucket{{k.limiter, KeyBucket(k.name), k.limits.PerMinute, len(k.waiters)}}
	if k.limits.OriginPerMinute > 0 {
		buckets[1] = bucket{o.limiter, OriginBucket(o.name), o.perMinute, o.waiting}
	}
	var taken [2]*rate.Reservation
	var lent [2]bool
	giveBack := func() {
		for i := range buckets {
			if taken[i] != nil {
				taken[i].CancelAt(now)
			}
			if lent[i] {
				s.cfg.Tokens.Return(buckets[i].name)
			}
		}
	}
	for i, b := range buckets {
		if b.limiter == nil {
			continue
		}
		r := b.limiter.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			giveBack()
			s.notBefore(o, k, now.Add(d))
			return false
		}
		taken[i] = r
	}
	if s.cfg.Tokens == nil {
		return true
	}
	for i, b := range buckets {
		if b.limiter == nil {
			continue
		}
		ok, retry := s.cfg.Tokens.Take(b.name, b.perMinute, b.waiting, now, func() { s.wake(o) })
		if !ok {
			giveBack()
			if !retry.IsZero() {
				s.notBefore(o, k, retry)
			}
			return false
		}
		lent[i] = true
	}
	return true
}

// bucket is one rate a request is held to, in mayStart.
type bucket struct {
	limiter   *rate.Limiter // nil: none
	name      string        // in Config.Tokens
	perMinute int
	waiting   int // requests waiting for it
}

// notBefore sets a timer for o at at, when k's next rate token comes.
func (s *Scheduler) notBefore(o *origin, k *key, at time.Time) {
	if !at.Equal(k.notBefore) {
		k.notBefore = at
		s.after(at, o)
	}
}

// wake starts what of o may start now: Config.Tokens has lent tokens.
func (s *Scheduler) wake(o *origin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.ready(o)
	s.dispatch(s.cfg.Now())
}

func (s *Scheduler) start(o *origin, k *key) {
	if !o.busy() {
		s.active++
		o.busySince = s.cfg.Now()
	}
	s.inFlight++
	o.inFlight++
	k.inFlight++
}

func (s *Scheduler) enqueue(w *waiter, now time.Time) {
	k := w.key
	o := k.origin
	if len(k.waiters) == 0 {
		o.turns = append(o.turns, k)
	}
	k.waiters = append(k.waiters, w)
	if !o.busy() {
		s.active++
		o.busySince = now
	}
	o.waiting++
	s.queued++
	s.ready(o)
	if !w.deadline.IsZero() {
		s.after(w.deadline, o)
	}
}

// unqueue takes w out of its key's queue (granted, refused or given up).
func (s *Scheduler) unqueue(w *waiter) {
	w.done = true
	k := w.key
	o := k.origin
	if len(k.waiters) > 0 && k.waiters[0] == w {
		k.waiters[0] = nil // the common case: the first is served
		k.waiters = k.waiters[1:]
	} else {
		k.waiters = deleteFirst(k.waiters, w)
	}
	if len(k.waiters) == 0 {
		k.waiters = nil // let the backing array go
		o.turns = deleteFirst(o.turns, k)
	}
	o.waiting--
	s.queued--
	if !o.busy() {
		s.active--
		o.idleSince = s.cfg.Now()
	}
}

// deleteFirst removes the first x from s, in place.
func deleteFirst[T comparable](s []T, x T) []T {
	for i, y := range s {
		if y == x {
			copy(s[i:], s[i+1:])
			var zero T
			s[len(s)-1] = zero
			return s[:len(s)-1]
		}
	}
	return s
}

func (s *Scheduler) refuse(w *waiter, r *Refused) {
	s.count(r)
	s.unqueue(w)
	w.ready <- r
}

func (s *Scheduler) refuseAll(o *origin, r *Refused) {
	for len(o.turns) > 0 {
		k := o.turns[0]
		for len(k.waiters) > 0 {
			s.refuse(k.waiters[0], r)
		}
	}
}

// ready puts o at the back of the ring, if it has requests waiting.
func (s *Scheduler) ready(o *origin) {
	if !o.inRing && o.waiting > 0 {
		o.inRing = true
		s.ring = append(s.ring, o)
	}
}

// dispatch starts every waiting request that may start, origins taking
// turns, one request per turn. Called with s.mu held whenever a request
// may have become able to start.
func (s *Scheduler) dispatch(now time.Time) {
	for len(s.ring) > 0 && s.inFlight < s.cfg.MaxInFlight {
		o := s.ring[0]
		s.ring[0] = nil
		s.ring = s.ring[1:]
		o.inRing = false
		if w := s.next(o, now); w != nil {
			s.unqueue(w)
			s.start(o, w.key)
			w.load = o.inFlight
			w.ready <- nil
			s.ready(o)
		}
	}
}

// next returns the first waiter of o that may start now, keys taking
// turns, or nil. Waiters past their deadline are refused on the way.
func (s *Scheduler) next(o *origin, now time.Time) *waiter {
	for range len(o.turns) {
		if s.full(o, now) {
			return nil
		}
		k := o.turns[0]
		o.turns = append(o.turns[1:], k) // its turn is taken either way
		for len(k.waiters) > 0 && !k.waiters[0].deadline.IsZero() && !now.Before(k.waiters[0].deadline) {
			s.refuse(k.waiters[0], &Refused{Reason: ReasonDeadline})
		}
		if len(k.waiters) > 0 && s.mayStart(o, k, now) {
			return k.waiters[0]
		}
		if len(o.turns) == 0 {
			return nil
		}
	}
	return nil
}

// done ends a request of k.
func (s *Scheduler) done(k *key, sig Signal, latency time.Duration, load int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := k.origin
	now := s.cfg.Now()
	saturated := o.waiting > 0 && o.inFlight >= int(o.limit)
	s.inFlight--
	o.inFlight--
	k.inFlight--
	if !o.busy() {
		s.active--
		o.idleSince = now
	}
	// A success after failures of any kind is a recovery.
	recovered := sig == Answered && o.failing
	if sig != released {
		o.failing = sig != Answered
	}
	if sig != released && sig != Unreachable {
		o.lastEnd = now
	}
	switch sig {
	case Answered, Failed, Overloaded:
		o.failures, o.tripped, o.openFor = 0, false, s.cfg.BreakerOpen
		o.unreachableSince = time.Time{}
		if sig == Overloaded {
			s.decrease(o, now, 0.5)
			break
		}
		if latency <= 0 {
			break
		}
		switch o.sample(latency, load) {
		case slower:
			// Much slower than it answers unloaded: requests queue, at
			// the origin or for this node's CPU; ask less.
			s.decrease(o, now, 0.9)
		case faster:
			if saturated && (o.limit < growFloor || s.cfg.Busy == nil || !s.cfg.Busy()) {
				s.increase(o, now)
			}
		}
	case Unreachable:
		if o.unreachableSince.IsZero() {
			o.unreachableSince = now
		}
		o.failures++
		s.decrease(o, now, 0.5)
		if o.tripped || o.failures >= s.cfg.BreakerThreshold {
			s.trip(o, now)
		}
	}
	o.forget(k, now)
	if recovered && s.cfg.OnRecover != nil {
		go s.cfg.OnRecover(o.name)
	}
	s.ready(o)
	s.dispatch(now)
}

// increase grows o's limit: by one per answer in slow start, by one per
// limit's worth of answers after, and never to more than twice what it was
// growEvery ago, so that its latency shows the effect of one step before
// the next.
func (s *Scheduler) increase(o *origin, now time.Time) {
	if now.Sub(o.grownAt) > growEvery {
		o.grownFrom, o.grownAt = o.limit, now
	}
	if o.slowStart {
		o.limit++
	} else {
		o.limit += 1 / o.limit
	}
	o.limit = math.Min(o.limit, math.Min(2*o.grownFrom, float64(s.cfg.MaxOriginConcurrency)))
}

// growFloor is the limit an origin may grow to while the CPU is busy.
const growFloor = 8

// growEvery is how often an origin's limit may double at most.
const growEvery = 100 * time.Millisecond

// decrease multiplies o's limit by f, at most once per decreaseEvery:
// requests sent together that fail together count once.
func (s *Scheduler) decrease(o *origin, now time.Time, f float64) {
	o.slowStart = false
	if now.Sub(o.lastDecr) < decreaseEvery {
		return
	}
	o.lastDecr = now
	o.limit = math.Max(1, o.limit*f)
}

// How an origin's recent latency compares with its unloaded latency
// (origin.sample).
const (
	faster = iota // recent latency within twice the unloaded (and 0.5 ms): more may help
	usual         // somewhat slower: keep the limit
	slower        // over three times it (and 1 ms): requests queue
)

// sample takes one answer's latency, from a request that started with load
// requests of its origin in flight, and says how the origin's recent
// latency compares with its unloaded latency. Both are averages (EWMA),
// not single samples, so that receivers whose latency varies widely (a
// log-normal p99 eight times its median) are judged by their usual
// answer. The unloaded latency is learnt from requests that ran nearly
// alone (load of at most unloadedLoad); once requests queue it is not
// updated, and when it has become stale the limit shrinks until requests
// run alone again and it is measured anew.
func (o *origin) sample(latency time.Duration, load int) int {
	ewma := func(avg *time.Duration, alpha float64) {
		if *avg == 0 {
			*avg = latency
			return
		}
		*avg += time.Duration(alpha * float64(latency-*avg))
	}
	if load <= unloadedLoad {
		ewma(&o.unloaded, 0.2)
	}
	ewma(&o.recent, 0.05)
	switch {
	case o.unloaded == 0:
		return usual
	case o.recent <= 2*o.unloaded+time.Millisecond/2:
		return faster
	case o.recent > 3*o.unloaded+time.Millisecond:
		return slower
	}
	return usual
}

// unloadedLoad is the most requests of an origin in flight with which a
// request counts as unloaded.
const unloadedLoad = 2

const decreaseEvery = 200 * time.Millisecond

// trip opens o's breaker and refuses what waits for it.
func (s *Scheduler) trip(o *origin, now time.Time) {
	o.tripped = true
	o.openUntil = now.Add(o.openFor)
	o.openFor = min(2*o.openFor, s.cfg.BreakerMaxOpen)
	s.refuseAll(o, &Refused{Reason: ReasonBreakerOpen, Until: o.openUntil})
	s.after(o.openUntil, o)
}

// after makes o ready again at t: a rate token, a deadline or the end of
// its breaker's open time.
func (s *Scheduler) after(t time.Time, o *origin) {
	heap.Push(&s.timers, timed{at: t, origin: o})
	if s.wakeAt.IsZero() || t.Before(s.wakeAt) {
		s.arm(t)
	}
}

func (s *Scheduler) arm(t time.Time) {
	s.wakeAt = t
	d := t.Sub(s.cfg.Now())
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.tick)
		return
	}
	s.timer.Reset(d)
}

// tick readies the origins whose time has come and dispatches.
func (s *Scheduler) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := s.cfg.Now()
	s.wakeAt = time.Time{}
	for len(s.timers) > 0 && !s.timers[0].at.After(now) {
		o := heap.Pop(&s.timers).(timed).origin
		s.expire(o, now)
		s.ready(o)
	}
	s.dispatch(now)
	if len(s.timers) > 0 {
		s.arm(s.timers[0].at)
	}
}

// expire refuses o's waiters past their deadline.
func (s *Scheduler) expire(o *origin, now time.Time) {
	for _, k := range append([]*key(nil), o.turns...) {
		for _, w := range append([]*waiter(nil), k.waiters...) {
			if !w.deadline.IsZero() && !now.Before(w.deadline) {
				s.refuse(w, &Refused{Reason: ReasonDeadline})
			}
		}
	}
}

// timed is a time at which an origin must be looked at again.
type timed struct {
	at     time.Time
	origin *origin
}

// timerHeap is a min-heap of timed, earliest first.
type timerHeap []timed

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timed)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = timed{}
	*h = old[:len(old)-1]
	return x
}

// AsRefused returns err as a *Refused, if it is one.
func AsRefused(err error) (*Refused, bool) {
	var r *Refused
	ok := errors.As(err, &r)
	return r, ok
}
