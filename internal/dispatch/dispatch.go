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
// A claim is a lease: if the process dies, the lease expires and another
// dispatcher claims the delivery again, so a delivery is sent at least once.
// A delivery whose request cannot start in time to finish within its lease
// is put back rather than sent, so two nodes never send it at once.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/cpuload"
	"github.com/heraldhq/herald/internal/delivery"
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
	// tried again after a few seconds instead of holding its request slot.
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
	// Lease is how long a claim lasts before another dispatcher may take
	// the delivery (default config.DefaultLease; longer than a request's
	// timeout).
	Lease time.Duration
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
	Logger     *slog.Logger
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = config.DefaultClaimBatch
	}
	if c.Queue <= 0 {
		c.Queue = config.DefaultQueue
	}
	if c.Handoffs <= 0 {
		c.Handoffs = 16
	}
	if c.HandoffQueue <= 0 {
		c.HandoffQueue = 4096
	}
	if c.Lease <= 0 {
		c.Lease = config.DefaultLease
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = policy.RequestTimeout
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.RecordWait <= 0 {
		c.RecordWait = 10 * time.Millisecond
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
	handoff   Handoff
	pacer     *pacer // nil unless Config.PaceHandoffs

	wake    chan struct{} // new deliveries were stored
	space   chan struct{} // a job left the queue
	queued  atomic.Int64  // deliveries waiting to start, or reserved for that
	jobs    sync.WaitGroup
	tasks   chan job      // to idle workers
	stopped chan struct{} // closed when Run ends: idle workers end
	updates chan store.DeliveryUpdate
	failed  chan failure // failed attempts waiting for their workflow

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
}

// New returns a dispatcher.
func New(cfg Config, s Store, c *catalog.Catalog, a *attempt.Attempter, h Handoff) *Dispatcher {
	cfg.setDefaults()
	var p *pacer
	if cfg.PaceHandoffs {
		p = newPacer(cfg.CPU)
	}
	return &Dispatcher{
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
		failed:    make(chan failure, cfg.HandoffQueue),
		room:      make(chan struct{}),
		pacer:     p,
	}
}

// Reserve takes room in the queue for up to n deliveries that a publisher
// on this node will store already claimed (in flight until the returned
// lease) and pass to Enqueue, so that fresh deliveries skip the claim
// query. It returns how many it reserved, maybe none.
//
// While the queue is full it waits for requests to start and make room,
// as long as they make some at least once every stall and for at most
// maxWait in all. A queue that keeps moving means the node is saturated:
// a publisher that waits for it costs less than storing deliveries for a
// claim, which writes them twice. A queue that stalls (its sinks slow)
// would only add latency, so Reserve stops waiting for it.
func (d *Dispatcher) Reserve(n int, stall, maxWait time.Duration) (reserved int, leaseUntil time.Time) {
	reserved = d.tryReserve(n)
	if reserved < n && stall > 0 && maxWait > 0 {
		d.waiters.Add(1)
		deadline := time.NewTimer(maxWait)
		stalled := time.NewTimer(stall)
	wait:
		for {
			d.roomMu.Lock()
			room := d.room
			d.roomMu.Unlock()
			// Check again after taking the channel, so no wake-up is missed.
			if reserved += d.tryReserve(n - reserved); reserved == n {
				break
			}
			select {
			case <-room:
				stalled.Reset(stall)
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
	return reserved, time.Now().Add(d.cfg.Lease)
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
// the dispatcher, using places reserved with Reserve; unused places are
// given back. events[i], if not nil, is ds[i]'s event already decoded; it
// is only read. After Run has returned the deliveries are left to their
// lease.
func (d *Dispatcher) Enqueue(ds []*store.Delivery, events []*event.Event, reserved int) {
	if unused := reserved - len(ds); unused > 0 {
		d.freed(unused)
	} else {
		d.queued.Add(int64(-unused))
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		d.queued.Add(-int64(len(ds)))
		return
	}
	d.start(d.group(ds, events))
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
// records every result before it returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	d.runCtx = ctx
	d.mu.Unlock()
	var handoffs sync.WaitGroup
	for range d.cfg.Handoffs {
		handoffs.Add(1)
		go func() {
			defer handoffs.Done()
			for f := range d.failed {
				if d.pacer != nil {
					d.pacer.wait(ctx)
				}
				d.handOff(context.WithoutCancel(ctx), f)
			}
		}()
	}
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
	close(d.failed)
	handoffs.Wait()
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
// is room for, at once while the store has more, and otherwise when woken
// by a commit or by the poll interval.
func (d *Dispatcher) claimLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		room := min(d.cfg.Queue-int(d.queued.Load()), d.cfg.BatchSize)
		if room < d.cfg.BatchSize/4 {
			// Full: wait for a job to leave the queue.
			select {
			case <-ctx.Done():
				return
			case <-d.space:
			}
			continue
		}
		now := time.Now()
		claimed, err := d.store.DeliveryClaim(ctx, store.DeliveryClaimParams{
			Limit:      room,
			Now:        now,
			LeaseUntil: now.Add(d.cfg.Lease),
		})
		if err != nil && ctx.Err() == nil {
			d.cfg.Logger.Error("claim deliveries", "err", err)
		}
		d.queued.Add(int64(len(claimed)))
		d.mu.RLock()
		d.start(d.group(claimed, nil))
		d.mu.RUnlock()
		if len(claimed) == room {
			continue // likely more waiting
		}
		timer.Reset(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
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
		d.updates <- lifecycle.Rescheduled(dl, at, why)
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
	dl := j.ds[0]
	en, err := d.entry(ctx, dl.SubscriptionID)
	if err != nil {
		// The store is failing: leave the deliveries to their lease.
		d.cfg.Logger.Error("load subscription", "subscription", dl.SubscriptionID, "err", err)
		return
	}
	now := time.Now()
	var sub *store.Subscription
	if en != nil {
		sub = en.Subscription
	}
	switch gate := lifecycle.Gate(sub, d.localPause(dl.SubscriptionID), now); gate.Verdict {
	case lifecycle.Drop:
		for _, dl := range j.ds {
			d.updates <- lifecycle.Killed(dl, gate.Reason)
		}
		return
	case lifecycle.Wait:
		d.wait(j.ds, sub, gate, now)
		return
	}

	grant, err := d.attempter.Acquire(ctx, en, d.startBy(j.ds))
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
	if gate := lifecycle.Gate(sub, d.localPause(dl.SubscriptionID), time.Now()); gate.Verdict != lifecycle.Send {
		grant.Release()
		if gate.Verdict == lifecycle.Drop {
			for _, dl := range j.ds {
				d.updates <- lifecycle.Killed(dl, gate.Reason)
			}
			return
		}
		d.wait(j.ds, sub, gate, time.Now())
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
// and a margin before the first of its leases ends, so that no other node
// claims a delivery while it is being sent.
func (d *Dispatcher) startBy(ds []*store.Delivery) time.Time {
	var end time.Time
	for _, dl := range ds {
		if !dl.LeaseUntil.IsZero() && (end.IsZero() || dl.LeaseUntil.Before(end)) {
			end = dl.LeaseUntil
		}
	}
	if end.IsZero() {
		return time.Time{}
	}
	return end.Add(-d.cfg.RequestTimeout - leaseMargin)
}

// leaseMargin is the time kept between a request's timeout and the end of
// its lease, for recording the result.
const leaseMargin = 2 * time.Second

// spillDelay is how long deliveries wait in the store when their origin
// has its share of the queue already.
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
				d.updates <- lifecycle.Killed(dl, "maximum age reached while "+r.Reason)
				continue
			}
			d.updates <- lifecycle.Rescheduled(dl, r.Until, r.Reason)
		}
	case ok && r.Reason == scheduler.ReasonQueueFull:
		d.reschedule(ds, now.Add(spillDelay), "")
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
			d.updates <- lifecycle.Killed(dl, lifecycle.ReasonNoConsent)
			continue
		}
		why := ""
		if gate.Reason == lifecycle.ReasonAwaitingConsent {
			why = gate.Reason
		}
		d.updates <- lifecycle.Rescheduled(dl, gate.Until, why)
	}
}

// record stores a delivered result, or hands a failed one to its workflow.
func (d *Dispatcher) record(ctx context.Context, dl *store.Delivery, en *catalog.Entry, number int, res attempt.Result) {
	sub := en.Subscription
	if res.Outcome == policy.Delivered {
		d.updates <- lifecycle.FirstDelivered(dl, &res.Record)
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
	// Starting a workflow is slow next to a send: hand it to the hand-off
	// workers, so that this request's slot is free for other deliveries. Until the
	// workflow has started, the delivery stays in flight under its lease.
	select {
	case d.failed <- failure{dl: dl, sub: sub, number: number, res: res}:
	default:
		// Temporal is not keeping up. Rather than hold this request's
		// slot, record the attempt and try the delivery again later as a
		// first attempt.
		metrics.Handoffs.WithLabelValues("deferred").Inc()
		d.updates <- lifecycle.Deferred(dl, &res.Record, time.Now().Add(handoffBackoff))
	}
}

// handoffBackoff is how long a failed delivery waits to be tried again when
// the hand-off queue is full.
const handoffBackoff = 5 * time.Second

// handOff starts a failed delivery's workflow and records the attempt.
func (d *Dispatcher) handOff(ctx context.Context, f failure) {
	dl, sub, number, res := f.dl, f.sub, f.number, f.res
	err := d.handoff.Start(ctx, workflows.DeliveryInput{
		DeliveryID:     dl.ID,
		SubscriptionID: sub.ID,
		EventType:      dl.EventType,
		SinkHost:       delivery.SinkHost(sub.Sink),
		SeriesStart:    dl.CreatedAt,
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
		d.updates <- lifecycle.Kept(dl, &res.Record)
		return
	}
	metrics.Handoffs.WithLabelValues("ok").Inc()
	d.updates <- lifecycle.HandedOff(dl, &res.Record)
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

// recordLoop writes results in batches: a batch takes what arrives within
// RecordWait of its first result, up to BatchSize.
func (d *Dispatcher) recordLoop() {
	batch := make([]store.DeliveryUpdate, 0, d.cfg.BatchSize)
	wait := time.NewTimer(d.cfg.RecordWait)
	wait.Stop()
	for u := range d.updates {
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
