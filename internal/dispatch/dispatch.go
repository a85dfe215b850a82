// Package dispatch makes the first attempt of every stored delivery: it
// takes fresh deliveries straight from the local publisher (stored already
// claimed) or claims pending ones in batches, sends each when the
// scheduler lets it start, records the results in batches, and hands each
// failure to its Temporal workflow.
//
// A delivery's states and transitions are package lifecycle's; the
// dispatcher makes the transitions of a claimed (in-flight) delivery.
//
// Only the first attempt runs here; a failed first attempt starts the
// delivery's workflow (package workflows), which owns every later attempt.
// A claim is a lease held by a node (its node ID): a short one, renewed
// while the node holds the delivery in memory. If the process dies, the
// lease expires and another dispatcher claims the delivery again, so a
// delivery is sent at least once; a node started again with the same ID
// puts back what it held at once (Release). A delivery whose request
// cannot start while a request timeout and a margin are left of its
// lease is put back rather than sent, so two nodes never send it at once,
// and a result is written only while the node's claim stands.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/cpuload"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// Store is what the dispatcher reads and writes.
type Store interface {
	DeliveryClaim(ctx context.Context, p store.DeliveryClaimParams) ([]*store.Delivery, error)
	DeliveryUpdateBatch(ctx context.Context, updates []store.DeliveryUpdate) error
	DeliveryRenew(ctx context.Context, p store.DeliveryRenewParams) ([]string, error)
	DeliveryRelease(ctx context.Context, p store.DeliveryReleaseParams) (int, error)
	SubscriptionGet(ctx context.Context, id string) (*store.Subscription, error)
	SubscriptionUpdate(ctx context.Context, id string, change func(*store.Subscription) error) (*store.Subscription, error)
}

// Handoff starts the workflow that retries a failed delivery.
type Handoff interface {
	Start(ctx context.Context, in workflows.DeliveryInput) error
}

// Config tunes the dispatcher. Zero fields take the defaults.
type Config struct {
	// BatchSize is the most deliveries claimed at once (default
	// config.DefaultClaimBatch).
	BatchSize int
	// Queue is the most deliveries claimed (or taken from the publisher)
	// and waiting for the scheduler to let their request start (default
	// config.DefaultQueue). How many requests are in flight is the scheduler's
	// (scheduler.Config.MaxInFlight), not this.
	Queue int
	// Handoffs is how many failed deliveries are handed to their
	// workflows at once (default 16), and HandoffQueue how many may wait
	// for that (default 4096). When the queue is full, a failed delivery is
	// tried again after a few seconds instead of holding its request slot;
	// so is one whose lease would end before its hand-off (it is still
	// in flight under that lease while it waits).
	Handoffs     int
	HandoffQueue int
	// PaceHandoffs slows hand-offs to 2 per second while the process is
	// short of CPU and still making first attempts. Set it when the
	// Temporal server runs in this process (dev mode), so that its work
	// for a burst of failures does not take the success path's CPU.
	PaceHandoffs bool
	// CPU tells whether the process is short of CPU, for PaceHandoffs
	// (nil: never).
	CPU *cpuload.Monitor
	// Lease is how long the dispatcher may hold a claimed delivery
	// (default config.DefaultLease; longer than a request's timeout): one
	// whose request cannot start while RequestTimeout and a margin are
	// left of it is put back, and so is a failure still waiting for its
	// workflow's start near its end.
	Lease time.Duration
	// LeaseRenew is how long a claim lasts in the store unless renewed
	// (default config.DefaultLeaseRenew, at most Lease). The dispatcher
	// renews the claims it holds every tenth of it, in one statement, so
	// another node takes over the deliveries of a node that died
	// LeaseRenew after its last renewal at most.
	LeaseRenew time.Duration
	// NodeID is the holder of this dispatcher's claims (default: a random
	// ID). Give each node a stable one (config.Config.NodeID), so that
	// Release puts back what it held when it last stopped; two running
	// dispatchers must never share one.
	NodeID string
	// RequestTimeout is how long one request may take (default
	// policy.RequestTimeout). A delivery whose request cannot start while
	// RequestTimeout and a margin are left of its lease is put back.
	RequestTimeout time.Duration
	// PollInterval is how often the store is polled when nothing woke the
	// dispatcher (default 200ms): it picks up other nodes' deliveries,
	// expired leases and paused sinks.
	PollInterval time.Duration
	// RecordWait is how long results wait for more before they are
	// written together (default 10ms): fewer, larger transactions. On
	// SQLite this took 100-event Publish calls from ~14,500 to ~19,000
	// deliveries/s (docs/benchmarks.md). A crash in that window only
	// repeats those sends after their lease.
	RecordWait time.Duration
	// Health, if set, is told every attempt's outcome, and suspends a
	// subscription whose sink fails for long enough.
	Health *lifecycle.Health
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = config.DefaultClaimBatch
	}
	if c.Queue <= 0 {
		c.Queue = config.DefaultQueue
	}
	if c.Handoffs <= 0 {
		c.Handoffs = config.DefaultHandoffs
	}
	if c.HandoffQueue <= 0 {
		c.HandoffQueue = config.DefaultHandoffQueue
	}
	if c.Lease <= 0 {
		c.Lease = config.DefaultLease
	}
	if c.LeaseRenew <= 0 {
		c.LeaseRenew = config.DefaultLeaseRenew
	}
	c.LeaseRenew = min(c.LeaseRenew, c.Lease)
	if c.NodeID == "" {
		c.NodeID = id.New(id.Node) // a node ID no other dispatcher has
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = policy.RequestTimeout
	}
	if c.PollInterval <= 0 {
		c.PollInterval = config.DefaultPollInterval
	}
	if c.RecordWait <= 0 {
		c.RecordWait = config.DefaultRecordWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Dispatcher claims and sends first attempts. Create with New, start with
// Run.
//
// Each job (one request: a delivery, or a batch of them) waits in a
// worker goroutine for the scheduler to let its request start; at most
// Config.Queue deliveries wait so, and the scheduler bounds the requests
// in flight and each origin's share of them. A sink that hangs holds its
// own origin's share, never the node.
type Dispatcher struct {
	cfg       Config
	store     Store
	catalog   *catalog.Catalog
	attempter *attempt.Attempter
	sched     *scheduler.Scheduler // the attempter's; nil without one
	handoff   Handoff
	pacer     *pacer // nil unless Config.PaceHandoffs

	wake    chan struct{} // new deliveries were stored
	space   chan struct{} // a job left the queue
	queued  atomic.Int64  // deliveries waiting to start, or reserved for that
	jobs    sync.WaitGroup
	tasks   chan job      // to idle workers
	stopped chan struct{} // closed when Run ends: idle workers end
	updates chan store.DeliveryUpdate
	failed  *handoffQueue // failed attempts waiting for their workflow
	claims  *claims       // the deliveries held, whose leases are renewed

	mu     sync.RWMutex // guards closed and runCtx against Enqueue
	closed bool
	runCtx context.Context // Run's: jobs wait for their turn under it
	// room is closed and replaced when a job leaves the queue while a
	// Reserve is waiting (waiters > 0).
	roomMu  sync.Mutex
	room    chan struct{}
	waiters atomic.Int32
	// pauses holds the pauses this dispatcher set itself (subscription ID
	// to time.Time), seen before the catalog reloads them from the store.
	pauses sync.Map
	// fill is held while room is taken in the queue: by Reserve for
	// fresh deliveries, and by the claim loop from sizing a claim to
	// holding its deliveries' places, so that neither takes the room the
	// other counted on.
	fill sync.Mutex
	// claimFirst is set while the claim loop waits for room for
	// deliveries waiting in the store: fresh ones take none meanwhile.
	claimFirst atomic.Bool
	// held holds the places Reserve took in origins' queues, by
	// subscription, until Enqueue gives them to jobs.
	heldMu sync.Mutex
	held   map[string]heldPlaces
}

// failure is a failed attempt on its way to its workflow.
type failure struct {
	dl     *store.Delivery
	sub    *store.Subscription
	number int
	res    attempt.Result
}

// job is one request's deliveries: one delivery, or several for a
// subscription in batched mode, with the events the publisher had decoded
// (nil entries are decoded from the payload).
type job struct {
	ds     []*store.Delivery
	events []*event.Event
	// held is how many places Reserve held for the job's deliveries in
	// heldOrigin's queue: its request waits in their stead.
	held       int
	heldOrigin string
}

// New returns a dispatcher.
func New(cfg Config, s Store, c *catalog.Catalog, a *attempt.Attempter, h Handoff) *Dispatcher {
	cfg.setDefaults()
	var p *pacer
	if cfg.PaceHandoffs {
		p = newPacer(cfg.CPU)
	}
	var sched *scheduler.Scheduler
	if a != nil {
		sched = a.Scheduler
	}
	return &Dispatcher{
		sched:     sched,
		held:      map[string]heldPlaces{},
		cfg:       cfg,
		store:     s,
		catalog:   c,
		attempter: a,
		handoff:   h,
		wake:      make(chan struct{}, 1),
		space:     make(chan struct{}, 1),
		tasks:     make(chan job),
		stopped:   make(chan struct{}),
		updates:   make(chan store.DeliveryUpdate, 4*cfg.BatchSize),
		failed:    newHandoffQueue(cfg.HandoffQueue),
		claims:    newClaims(),
		room:      make(chan struct{}),
		pacer:     p,
	}
}

// Reserve takes room in the queue for deliveries that a publisher on
// this node will store already claimed (in flight until the returned
// lease, held by NodeID) and pass to Enqueue, so that fresh deliveries
// skip the claim query. want says how many deliveries of each
// subscription ask for room; got, how many of each have it (maybe none).
//
// Each sink origin takes no more than its share of the queue
// (scheduler.Scheduler.Hold): the room kept for origins that are not
// busy is never given to a busy one, and what an origin cannot take is
// stored pending rather than taken and then put back.
//
// While there is not room for all, it waits for requests to start and
// make some, as long as it gets some at least once every stall and for
// at most maxWait in all. Room that keeps coming means the node is
// saturated: a publisher that waits for it costs less than storing
// deliveries for a claim, which writes them twice. Room that stops
// coming (slow sinks, or an origin at its share that does not move)
// would only add latency, so Reserve stops waiting for it; it does not
// wait at all for room for an origin that has gone a second without an
// answer, or whose breaker is open.
func (d *Dispatcher) Reserve(want map[string]int, stall, maxWait time.Duration) (got map[string]int, leaseUntil time.Time) {
	r := d.newReservation(want)
	if !r.take(d) && stall > 0 && maxWait > 0 {
		d.waiters.Add(1)
		deadline := time.NewTimer(maxWait)
		stalled := time.NewTimer(stall)
	wait:
		for {
			d.roomMu.Lock()
			room := d.room
			d.roomMu.Unlock()
			// Try again after taking the channel, so no wake-up is missed.
			before := r.n
			if r.take(d) {
				break
			}
			if r.n > before || d.claimFirst.Load() {
				// Room is coming, for r or first for older deliveries
				// (the claim loop's): not a stall.
				stalled.Reset(stall)
			}
			select {
			case <-room:
			case <-stalled.C:
				break wait
			case <-deadline.C:
				break wait
			}
		}
		deadline.Stop()
		stalled.Stop()
		d.waiters.Add(-1)
	}
	return r.done(d), time.Now().Add(d.cfg.LeaseRenew)
}

// reservation is Reserve's room, as it is taken.
type reservation struct {
	subs   []string           // the subscriptions, in the order of places
	places []scheduler.Places // what each asks and holds; Origin "" holds nothing in the scheduler
	n      int                // places taken in all
}

func (d *Dispatcher) newReservation(want map[string]int) *reservation {
	r := &reservation{subs: make([]string, 0, len(want)), places: make([]scheduler.Places, 0, len(want))}
	for sub, n := range want {
		if n <= 0 {
			continue
		}
		origin := ""
		if d.catalog == nil || d.sched == nil {
			// No scheduler: room in the queue only.
		} else if en, ok := d.catalog.Get(sub); ok {
			origin = en.Origin
		}
		r.subs = append(r.subs, sub)
		r.places = append(r.places, scheduler.Places{Origin: origin, Want: n})
	}
	return r
}

// take takes what room there is; it reports whether r has all it wants,
// or all it may get soon (the rest is for origins that are stuck). While
// the claim loop is served first it takes room only for origins that are
// not busy: the room kept for them is theirs whatever waits in the store.
func (r *reservation) take(d *Dispatcher) bool {
	d.fill.Lock()
	defer d.fill.Unlock()
	first := d.claimFirst.Load()
	need := 0
	for _, p := range r.places {
		need += p.Want - p.Held
	}
	if need == 0 {
		return true
	}
	budget := d.tryReserve(need)
	if budget == 0 {
		return false
	}
	used := 0
	for i := range r.places {
		p := &r.places[i]
		if p.Origin == "" && !first {
			k := min(p.Want-p.Held, budget-used)
			p.Held += k
			used += k
		}
	}
	if d.sched != nil && used < budget {
		// Places without an origin are full by now (or wait, while the
		// claim loop is first), and Hold skips full places.
		if first {
			used += d.sched.HoldIdle(r.places, budget-used)
		} else {
			used += d.sched.Hold(r.places, budget-used)
		}
	}
	if unused := budget - used; unused > 0 {
		d.queued.Add(-int64(unused)) // never ours: no one to wake
	}
	r.n += used
	if used == need {
		return true
	}
	// Room for an origin that does not answer will not come soon: do
	// not wait for it.
	for _, p := range r.places {
		if p.Held < p.Want && !p.Stuck {
			return false
		}
	}
	return true
}

// done records the places held in the scheduler for Enqueue and returns
// how many deliveries of each subscription have room.
func (r *reservation) done(d *Dispatcher) map[string]int {
	got := make(map[string]int, len(r.subs))
	d.heldMu.Lock()
	defer d.heldMu.Unlock()
	for i, sub := range r.subs {
		p := r.places[i]
		if p.Held == 0 {
			continue
		}
		got[sub] = p.Held
		if p.Origin == "" {
			continue
		}
		h := d.held[sub]
		if h.n > 0 && h.origin != p.Origin {
			// Places for the subscription's old sink are still waiting
			// for Enqueue (its sink changed meanwhile): these are not
			// told apart, so give them back.
			d.sched.Unhold(p.Origin, p.Held)
			continue
		}
		d.held[sub] = heldPlaces{origin: p.Origin, n: h.n + p.Held}
	}
	return got
}

// heldPlaces are places Reserve held in an origin's queue for a
// subscription's deliveries, until Enqueue gives them to their jobs.
type heldPlaces struct {
	origin string
	n      int
}

func (d *Dispatcher) tryReserve(n int) int {
	for {
		cur := d.queued.Load()
		k := min(int64(n), int64(d.cfg.Queue)-cur)
		if k <= 0 {
			return 0
		}
		if d.queued.CompareAndSwap(cur, cur+k) {
			return int(k)
		}
	}
}

// Enqueue hands deliveries stored as claimed (with their EventPayload) to
// the dispatcher, using the room Reserve gave (reserved, as it returned
// it); room not used is given back. events[i], if not nil, is ds[i]'s
// event already decoded; it is only read. After Run has returned the
// deliveries are left to their lease.
func (d *Dispatcher) Enqueue(ds []*store.Delivery, events []*event.Event, reserved map[string]int) {
	total := 0
	for _, n := range reserved {
		total += n
	}
	used := make(map[string]int, len(reserved))
	for _, dl := range ds {
		used[dl.SubscriptionID]++
	}
	// The places held for each subscription go to its jobs; the rest
	// are given back.
	held := make(map[string]heldPlaces, len(reserved))
	d.heldMu.Lock()
	for sub, n := range reserved {
		h, ok := d.held[sub]
		if !ok {
			continue
		}
		k := min(n, h.n)
		if h.n -= k; h.n == 0 {
			delete(d.held, sub)
		} else {
			d.held[sub] = h
		}
		u := min(k, used[sub])
		if k > u {
			d.sched.Unhold(h.origin, k-u)
		}
		held[sub] = heldPlaces{origin: h.origin, n: u}
	}
	d.heldMu.Unlock()

	if unused := total - len(ds); unused > 0 {
		d.freed(unused)
	} else {
		d.queued.Add(int64(-unused))
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	jobs := d.group(ds, events)
	for i := range jobs {
		sub := jobs[i].ds[0].SubscriptionID
		if h := held[sub]; h.n > 0 {
			k := min(h.n, len(jobs[i].ds))
			jobs[i].held, jobs[i].heldOrigin = k, h.origin
			h.n -= k
			held[sub] = h
		}
	}
	if d.closed {
		d.queued.Add(-int64(len(ds)))
		for _, j := range jobs {
			d.unhold(j)
		}
		return
	}
	d.claims.add(ds, time.Now(), d.cfg.Lease)
	d.start(jobs)
}

// unhold gives back the places j holds in its origin's queue, if any.
func (d *Dispatcher) unhold(j job) {
	if j.held > 0 {
		d.sched.Unhold(j.heldOrigin, j.held)
	}
}

// freed gives back n places in the queue and tells the claim loop and any
// waiting Reserve.
func (d *Dispatcher) freed(n int) {
	d.queued.Add(-int64(n))
	select {
	case d.space <- struct{}{}:
	default:
	}
	if d.waiters.Load() > 0 {
		d.roomMu.Lock()
		close(d.room)
		d.room = make(chan struct{})
		d.roomMu.Unlock()
	}
}

// Notify wakes the dispatcher: new deliveries are waiting. It never blocks.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches until ctx is done, then finishes the requests in flight,
// puts back the claimed deliveries whose request had not started, and
// records every result before it returns. It renews the leases of what it
// holds meanwhile. Call Release first.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	d.runCtx = ctx
	d.mu.Unlock()
	var handoffs sync.WaitGroup
	for range d.cfg.Handoffs {
		handoffs.Add(1)
		go func() {
			defer handoffs.Done()
			for {
				f, ok := d.failed.pop()
				if !ok {
					return
				}
				if d.pacer != nil {
					d.pacer.wait(ctx)
				}
				d.handOff(context.WithoutCancel(ctx), f)
			}
		}()
	}
	// Failures whose lease ends while they wait for a hand-off worker
	// are put back.
	stopExpiring := make(chan struct{})
	expired := make(chan struct{})
	go func() {
		defer close(expired)
		tick := time.NewTicker(expireEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopExpiring:
				return
			case <-tick.C:
				by := time.Now().Add(handoffMargin)
				d.deferAll(d.failed.expire(func(f failure) bool { return d.claims.endsBefore(f.dl, by) }))
			}
		}
	}()
	if d.pacer != nil {
		go d.pacer.run(ctx)
	}
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.recordLoop()
	}()

	d.claimLoop(ctx)
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.jobs.Wait()
	close(d.stopped)
	d.failed.close()
	handoffs.Wait()
	close(stopExpiring)
	<-expired
	close(d.updates)
	<-recorded
	return nil
}

// start gives each job to a worker, which waits for the job's turn and
// sends it: an idle worker if there is one, else a new one. Workers stay
// while there is work (their stacks, grown by a send, are reused) and end
// after workerIdle without. Call start with d.mu held for reading and
// d.closed false.
func (d *Dispatcher) start(jobs []job) {
	for _, j := range jobs {
		d.jobs.Add(1)
		select {
		case d.tasks <- j:
		default:
			go d.work(j)
		}
	}
}

// workerIdle is how long a worker waits for a job before it ends.
const workerIdle = 10 * time.Second

// work runs jobs: j, then whatever start hands it, until none comes for
// workerIdle or Run ends.
func (d *Dispatcher) work(j job) {
	ctx := d.runCtx
	if ctx == nil { // Enqueue before Run
		ctx = context.Background()
	}
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		d.first(ctx, j)
		d.jobs.Done()
		idle.Reset(workerIdle)
		select {
		case j = <-d.tasks:
		case <-idle.C:
			return
		case <-d.stopped:
			return
		}
	}
}

// claimLoop keeps the queue filled: it claims as many deliveries as there
// is room for (less the room kept for an origin not busy yet), at once
// while the store has more, and otherwise when woken by a commit or by
// the poll interval.
//
// While the store has deliveries waiting (a commit stored some pending,
// or the last claim was full), the claim loop is served first: fresh
// deliveries take no room until it has claimed a batch (claimFirst), so
// that older deliveries are not left in the store while newer ones go
// straight to their sinks. A publisher that gets no room meanwhile waits,
// and its commit stores the rest pending after at most its maximum wait.
// It is served first for claimFirstFor at most: room that does not come
// in that time is held by origins that do not move, and fresh deliveries
// to other origins must not wait for it; after that it claims whatever
// room there is.
func (d *Dispatcher) claimLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	defer d.claimFirst.Store(false)
	window := time.NewTimer(0)
	window.Stop()
	backlog := false
	var wantSince time.Time // when it began to wait for room with a backlog
	for {
		// Claims take deliveries of any origin: they leave the room kept
		// for an origin not busy yet, which fresh deliveries take by
		// origin (Reserve), and so they do not take what the busy origins'
		// shares cannot hold only to put it back. Fresh deliveries take
		// no room while a claim is made (d.fill), so the claimed ones find
		// the room the claim was sized for.
		d.fill.Lock()
		kept := 0
		if d.sched != nil {
			// One share of the queue, as the scheduler divides it (at
			// least one origin counts: the one the claims are for).
			kept = d.cfg.Queue / (max(1, d.sched.Busy()) + 1)
		}
		room := min(d.cfg.Queue-kept-int(d.queued.Load()), d.cfg.BatchSize)
		threshold := d.cfg.BatchSize / 4
		if backlog && !wantSince.IsZero() && time.Since(wantSince) >= claimFirstFor {
			// Served first for long enough without getting a batch's
			// room: take what there is.
			threshold = 1
		}
		if room < threshold {
			var expire <-chan time.Time
			first := false
			if backlog {
				if wantSince.IsZero() {
					wantSince = time.Now()
				}
				if left := claimFirstFor - time.Since(wantSince); left > 0 {
					first = true
					window.Reset(left)
					expire = window.C
				}
			}
			d.claimFirst.Store(first)
			d.fill.Unlock()
			// Full: wait for a job to leave the queue.
			select {
			case <-ctx.Done():
				return
			case <-d.space:
			case <-d.wake:
				backlog = true
			case <-expire:
			}
			window.Stop()
			continue
		}
		now := time.Now()
		claimed, err := d.store.DeliveryClaim(ctx, store.DeliveryClaimParams{
			Limit:      room,
			Now:        now,
			LeaseUntil: now.Add(d.cfg.LeaseRenew),
			Holder:     d.cfg.NodeID,
		})
		if err != nil && ctx.Err() == nil {
			d.cfg.Logger.Error("claim deliveries", "err", err)
		}
		d.claims.add(claimed, now, d.cfg.Lease)
		d.queued.Add(int64(len(claimed)))
		jobs := d.group(claimed, nil)
		d.hold(jobs)
		d.claimFirst.Store(false)
		wantSince = time.Time{}
		d.fill.Unlock()
		d.mu.RLock()
		d.start(jobs)
		d.mu.RUnlock()
		if backlog = len(claimed) == room; backlog {
			continue // likely more waiting
		}
		timer.Reset(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
			backlog = true
		case <-timer.C:
		}
	}
}

// claimFirstFor is how long at most the claim loop is served before fresh
// deliveries, each time it waits for room with deliveries in the store.
const claimFirstFor = 100 * time.Millisecond

// hold takes places in their origins' queues for claimed jobs, as far as
// each origin's share has room; a job without them is refused when it
// asks to start, and its deliveries wait in the store a little.
func (d *Dispatcher) hold(jobs []job) {
	if d.sched == nil || len(jobs) == 0 {
		return
	}
	index := map[string]int{} // origin -> its places
	var places []scheduler.Places
	origins := make([]string, len(jobs))
	originOf := map[string]string{} // subscription -> origin
	for i, j := range jobs {
		sub := j.ds[0].SubscriptionID
		o, ok := originOf[sub]
		if !ok {
			if en, found := d.catalog.Get(sub); found {
				o = en.Origin
			}
			originOf[sub] = o
		}
		if o == "" {
			continue
		}
		origins[i] = o
		k, ok := index[o]
		if !ok {
			k = len(places)
			index[o] = k
			places = append(places, scheduler.Places{Origin: o})
		}
		places[k].Want += len(j.ds)
	}
	d.sched.Hold(places, math.MaxInt)
	for i := range jobs {
		if origins[i] == "" {
			continue
		}
		p := &places[index[origins[i]]]
		n := min(p.Held, len(jobs[i].ds))
		p.Held -= n
		jobs[i].held, jobs[i].heldOrigin = n, origins[i]
	}
}

// group makes deliveries into jobs: deliveries to a batched subscription
// share requests of up to its batch size; every other delivery is a
// request of its own. events, if not nil, are the deliveries' decoded
// events.
func (d *Dispatcher) group(ds []*store.Delivery, events []*event.Event) []job {
	out := make([]job, 0, len(ds))
	var batches map[string]int // subscription -> index in out of its open batch
	for i, dl := range ds {
		var e *event.Event
		if events != nil {
			e = events[i]
		}
		en, ok := d.catalog.Get(dl.SubscriptionID)
		if ok && en.Subscription.ContentMode == policy.ContentBatched {
			size := en.Subscription.MaxBatchSize
			if size <= 0 {
				size = policy.DefaultMaxBatchSize
			}
			if batches == nil {
				batches = map[string]int{}
			}
			if k, ok := batches[dl.SubscriptionID]; ok && len(out[k].ds) < size {
				out[k].ds = append(out[k].ds, dl)
				out[k].events = append(out[k].events, e)
				continue
			}
			batches[dl.SubscriptionID] = len(out)
		}
		out = append(out, job{ds: []*store.Delivery{dl}, events: []*event.Event{e}})
	}
	return out
}

// reschedule puts claimed deliveries back to pending until at, without
// spending an attempt.
func (d *Dispatcher) reschedule(ds []*store.Delivery, at time.Time, why string) {
	for _, dl := range ds {
		d.put(lifecycle.Rescheduled(dl, at, why))
	}
}

// first waits for a job's turn and makes the first attempt of its
// deliveries (or a re-attempt after a lost lease), then records or hands
// off the results. Whatever happens, the job leaves the queue.
func (d *Dispatcher) first(ctx context.Context, j job) {
	left := false
	leave := func() {
		if !left {
			left = true
			d.freed(len(j.ds))
		}
	}
	defer leave()
	// The places held for the job are given back unless its request
	// waits in their stead.
	defer func() { d.unhold(j) }()
	dl := j.ds[0]
	en, err := d.entry(ctx, dl.SubscriptionID)
	if err != nil {
		// The store is failing: leave the deliveries to their lease,
		// no longer renewed.
		d.cfg.Logger.Error("load subscription", "subscription", dl.SubscriptionID, "err", err)
		for _, dl := range j.ds {
			d.claims.drop(dl.ID)
		}
		return
	}
	now := time.Now()
	var sub *store.Subscription
	if en != nil {
		sub = en.Subscription
	}
	switch gate := lifecycle.Gate(sub, d.pausedUntil(en, dl.SubscriptionID), now); gate.Verdict {
	case lifecycle.Drop:
		for _, dl := range j.ds {
			d.put(lifecycle.Killed(dl, gate.Reason))
		}
		return
	case lifecycle.Withhold:
		d.withhold(j.ds)
		return
	case lifecycle.Wait:
		d.wait(j.ds, sub, gate, now)
		return
	}

	held := 0
	if j.held > 0 {
		if en.Origin == j.heldOrigin {
			held = j.held // Acquire gives them back
		} else {
			d.unhold(j) // the sink changed: its request waits as any other
		}
		j.held = 0
	}
	grant, err := d.attempter.AcquireHeld(ctx, en, d.startBy(j.ds), held)
	leave()
	if err != nil {
		d.refused(j.ds, sub, err)
		return
	}
	// While the job waited its turn, the sink may have asked to wait (a
	// Retry-After to another of its deliveries) or the subscription may
	// have changed: look again before sending.
	if cur, ok := d.catalog.Get(dl.SubscriptionID); ok {
		en, sub = cur, cur.Subscription
	}
	if gate := lifecycle.Gate(sub, d.pausedUntil(en, dl.SubscriptionID), time.Now()); gate.Verdict != lifecycle.Send {
		grant.Release()
		if gate.Verdict == lifecycle.Drop {
			for _, dl := range j.ds {
				d.put(lifecycle.Killed(dl, gate.Reason))
			}
			return
		}
		if gate.Verdict == lifecycle.Withhold {
			d.withhold(j.ds)
			return
		}
		d.wait(j.ds, sub, gate, time.Now())
		return
	}
	if !d.claims.holds(j.ds, time.Now().Add(d.cfg.RequestTimeout+leaseMargin)) {
		// Its lease was not renewed in time (the store failing), or
		// another node has claimed it since: not this node's to send.
		grant.Release()
		d.reschedule(j.ds, time.Now(), "")
		return
	}
	if d.pacer != nil {
		d.pacer.attempts.Add(int64(len(j.ds)))
	}
	ctx = context.WithoutCancel(ctx)
	number := dl.Attempts + 1
	results := d.attempter.Send(ctx, grant, j.ds, j.events, en, number)
	for i, dl := range j.ds {
		d.record(ctx, dl, en, number, results[i])
	}
}

// startBy is the latest time a job's request may start: a request timeout
// and a margin before the node's hold on the first of its deliveries
// ends (Config.Lease after its claim). Its stored lease is renewed
// meanwhile, and checked again before the request starts, so that no
// other node claims a delivery while it is being sent.
func (d *Dispatcher) startBy(ds []*store.Delivery) time.Time {
	end := d.claims.keepUntil(ds)
	if end.IsZero() {
		return time.Time{}
	}
	return end.Add(-d.cfg.RequestTimeout - leaseMargin)
}

// leaseMargin is the time kept between a request's timeout and the end of
// its lease, for recording the result.
const leaseMargin = 2 * time.Second

// spillDelay is how long deliveries wait in the store when their origin
// has its share of the queue already, unless the scheduler says how long
// (longer for an origin that does not answer).
const spillDelay = time.Second

// refused puts back deliveries whose request the scheduler did not let
// start. With its breaker open, an origin's deliveries wait in the store
// until it may be tried again (within their maximum age); with its queue
// full they come back a little later; otherwise (a lease running out, a
// shutdown) they are claimable at once, by any node.
func (d *Dispatcher) refused(ds []*store.Delivery, sub *store.Subscription, err error) {
	now := time.Now()
	r, ok := scheduler.AsRefused(err)
	switch {
	case ok && r.Reason == scheduler.ReasonBreakerOpen:
		maxAge := sub.RetryPolicy.WithDefaults().MaximumAge
		for _, dl := range ds {
			if now.Sub(dl.CreatedAt) > maxAge {
				d.put(lifecycle.Killed(dl, "maximum age reached while "+r.Reason))
				continue
			}
			d.put(lifecycle.Rescheduled(dl, r.Until, r.Reason))
		}
	case ok && r.Reason == scheduler.ReasonQueueFull:
		at := r.Until
		if at.IsZero() {
			at = now.Add(spillDelay)
		}
		d.reschedule(ds, at, "")
	default:
		d.reschedule(ds, now, "")
	}
}

// wait holds deliveries that Gate says must wait, until its time, within
// their subscription's maximum age.
func (d *Dispatcher) wait(ds []*store.Delivery, sub *store.Subscription, gate lifecycle.Decision, now time.Time) {
	maxAge := sub.RetryPolicy.WithDefaults().MaximumAge
	for _, dl := range ds {
		if gate.Reason == lifecycle.ReasonAwaitingConsent && now.Sub(dl.CreatedAt) > maxAge {
			d.put(lifecycle.Killed(dl, lifecycle.ReasonNoConsent))
			continue
		}
		why := ""
		if gate.Reason == lifecycle.ReasonAwaitingConsent {
			why = gate.Reason
		}
		d.put(lifecycle.Rescheduled(dl, gate.Until, why))
	}
}

// withhold holds claimed deliveries of a suspended or disabled
// subscription until it is enabled.
func (d *Dispatcher) withhold(ds []*store.Delivery) {
	for _, dl := range ds {
		d.put(lifecycle.HeldBack(dl))
	}
}

// record stores a delivered result, or hands a failed one to its workflow.
func (d *Dispatcher) record(ctx context.Context, dl *store.Delivery, en *catalog.Entry, number int, res attempt.Result) {
	sub := en.Subscription
	if res.Outcome == policy.Delivered {
		d.put(lifecycle.FirstDelivered(dl, &res.Record))
		d.observe(ctx, sub, res)
		return
	}
	if res.PauseSink {
		until := res.Record.StartedAt.Add(res.RetryAfter)
		if prev, ok := d.pauses.Load(sub.ID); !ok || until.After(prev.(time.Time)) {
			d.pauses.Store(sub.ID, until)
		}
		if err := lifecycle.Pause(ctx, d.store, sub.ID, until); err != nil {
			d.cfg.Logger.Error("pause sink", "subscription", sub.ID, "err", err)
		}
	}
	// After the pause is known here: observing may write the store, and
	// the sink's other deliveries must not be sent meanwhile.
	d.observe(ctx, sub, res)
	// Starting a workflow is slow next to a send: hand it to the hand-off
	// workers, so that this request's slot is free for other deliveries.
	// Until the workflow has started, the delivery stays in flight under
	// its lease; if the lease would end first, it is put back (deferAll).
	f := failure{dl: dl, sub: sub, number: number, res: res}
	if d.claims.endsBefore(dl, time.Now().Add(handoffMargin)) || !d.failed.push(f) {
		// Temporal is not keeping up, or the lease is ending. Rather
		// than hold this request's slot, record the attempt and try the
		// delivery again later as a first attempt.
		d.deferAll([]failure{f})
	}
}

// observe tells the sink's health of an attempt's outcome.
func (d *Dispatcher) observe(ctx context.Context, sub *store.Subscription, res attempt.Result) {
	if _, err := d.cfg.Health.Observe(ctx, sub, res.Outcome == policy.Delivered, lifecycle.Describe(&res.Record), time.Now()); err != nil {
		d.cfg.Logger.Error("record sink health", "subscription", sub.ID, "err", err)
	}
}

// deferAll records failed attempts whose workflow could not be started
// in time (the hand-off queue full, or the delivery's lease ending) and
// puts their deliveries back, to be tried again later as first attempts.
func (d *Dispatcher) deferAll(fs []failure) {
	for _, f := range fs {
		metrics.Handoffs.WithLabelValues("deferred").Inc()
		d.put(lifecycle.Deferred(f.dl, &f.res.Record, time.Now().Add(handoffBackoff)))
	}
}

// seriesStart is when the series of attempts of dl, whose first attempt
// started at first, began: its publish, or that attempt for a delivery
// first attempted past its retry policy's maximum age. Only a delivery
// held while its subscription was suspended or disabled gets there (the
// other waits end at the maximum age, unsent), and an operator enabling
// the subscription wants it sent: it gets a full series, as a redrive
// does, rather than this one attempt.
func seriesStart(dl *store.Delivery, sub *store.Subscription, first time.Time) time.Time {
	if first.Sub(dl.CreatedAt) > sub.RetryPolicy.WithDefaults().MaximumAge {
		return first
	}
	return dl.CreatedAt
}

// handoffBackoff is how long a failed delivery waits to be tried again when
// the hand-off queue is full.
const handoffBackoff = 5 * time.Second

// handOff starts a failed delivery's workflow and records the attempt;
// a delivery whose lease is ending is put back instead, and the start
// must end before the lease does (less a margin for the record).
func (d *Dispatcher) handOff(ctx context.Context, f failure) {
	dl, sub, number, res := f.dl, f.sub, f.number, f.res
	if d.claims.endsBefore(dl, time.Now().Add(handoffMargin)) {
		d.deferAll([]failure{f})
		return
	}
	if end, _ := d.claims.end([]*store.Delivery{dl}); !end.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, end.Add(-leaseMargin))
		defer cancel()
	}
	if res.Span.IsValid() {
		// The workflow continues the failed attempt's trace (with
		// Temporal's tracing interceptor, when tracing is on).
		ctx = trace.ContextWithSpanContext(ctx, res.Span)
	}
	err := d.handoff.Start(ctx, workflows.DeliveryInput{
		DeliveryID:     dl.ID,
		SubscriptionID: sub.ID,
		EventType:      dl.EventType,
		SinkHost:       delivery.SinkHost(sub.Sink),
		SeriesStart:    seriesStart(dl, sub, res.Record.StartedAt),
		Attempts:       number,
		TotalAttempts:  number,
		LastOutcome:    res.Outcome,
		LastStatus:     res.Record.StatusCode,
		LastError:      res.Record.Error,
		RetryAfter:     res.RetryAfter,
		Policy:         sub.RetryPolicy,
	})
	if err != nil {
		// Leave the delivery in flight: its lease expires and it is
		// attempted and handed off again. Record the attempt only.
		metrics.Handoffs.WithLabelValues("error").Inc()
		d.cfg.Logger.Error("hand off failed delivery", "delivery", dl.ID, "err", err)
		d.put(lifecycle.Kept(dl, &res.Record))
		return
	}
	metrics.Handoffs.WithLabelValues("ok").Inc()
	d.put(lifecycle.HandedOff(dl, &res.Record))
}

// pausedUntil is the latest pause known for a subscription's sink: the
// one this dispatcher set itself, or its origin's, set by any node.
func (d *Dispatcher) pausedUntil(en *catalog.Entry, subID string) time.Time {
	until := d.localPause(subID)
	if en != nil {
		if o := d.attempter.PausedUntil(en); o.After(until) {
			until = o
		}
	}
	return until
}

// localPause is the pause this dispatcher set itself on a subscription's
// sink, which the catalog may not have reloaded yet.
func (d *Dispatcher) localPause(subID string) time.Time {
	if v, ok := d.pauses.Load(subID); ok {
		return v.(time.Time)
	}
	return time.Time{}
}

// entry finds a subscription in the catalog, or in the store if the
// catalog has not seen it yet (it was created on another node). It returns
// nil if the subscription does not exist.
func (d *Dispatcher) entry(ctx context.Context, id string) (*catalog.Entry, error) {
	if en, ok := d.catalog.Get(id); ok {
		return en, nil
	}
	sub, err := d.store.SubscriptionGet(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return catalog.NewEntry(sub)
}

// put sends u, an update of a delivery this node holds, to be written; the
// node lets go of the delivery (its lease is no longer renewed).
func (d *Dispatcher) put(u store.DeliveryUpdate) {
	d.claims.drop(u.ID)
	d.updates <- u
}

// recordLoop writes results in batches: a batch takes what arrives within
// RecordWait of its first result, up to BatchSize. Between batches it
// renews the leases of the deliveries the node holds, every tenth of
// LeaseRenew: never at the same time as a write, which may change the
// same rows (on PostgreSQL the two would lock them in different orders).
func (d *Dispatcher) recordLoop() {
	batch := make([]store.DeliveryUpdate, 0, d.cfg.BatchSize)
	wait := time.NewTimer(d.cfg.RecordWait)
	wait.Stop()
	every := d.cfg.LeaseRenew / 10
	renewAt := time.Now().Add(every)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		var u store.DeliveryUpdate
		select {
		case <-tick.C:
		case v, ok := <-d.updates:
			if !ok {
				return
			}
			u = v
		}
		if now := time.Now(); !now.Before(renewAt) {
			d.renew(every)
			renewAt = now.Add(every)
		}
		if u.ID == "" {
			continue // a tick only
		}
		batch = append(batch[:0], u)
		wait.Reset(d.cfg.RecordWait)
	gather:
		for len(batch) < cap(batch) {
			select {
			case u, ok := <-d.updates:
				if !ok {
					break gather
				}
				batch = append(batch, u)
			case <-wait.C:
				break gather
			}
		}
		wait.Stop()
		d.write(batch)
	}
}

// write records a batch, retrying while the store fails: losing a result
// would only cause a duplicate send after the lease, but retrying is cheap.
func (d *Dispatcher) write(batch []store.DeliveryUpdate) {
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := d.store.DeliveryUpdateBatch(context.Background(), batch)
		if err == nil || errors.Is(err, context.Canceled) {
			return
		}
		d.cfg.Logger.Error("record delivery results", "n", len(batch), "err", err)
		time.Sleep(wait)
	}
}
