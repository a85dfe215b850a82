// Package publish accepts CloudEvents: it validates them, matches them
// against subscriptions, and stores each event with its deliveries in
// group-committed, durable transactions, deduplicating on source and id.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/protobuf/proto"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("publish: publisher is closed")

// Store is what the publisher writes to.
type Store interface {
	EventInsertBatch(ctx context.Context, params []store.EventInsertParams) ([]store.EventInsertResult, error)
}

// Result is the outcome of publishing one event.
type Result struct {
	Source, ID  string
	Duplicate   bool
	DeliveryIDs []string
}

// Dispatcher takes fresh deliveries straight from the publisher: they are
// stored already claimed by this node, so no claim query is needed to
// find them. See dispatch.Dispatcher.
type Dispatcher interface {
	// Reserve takes room for deliveries of subscriptions (want: how many
	// of each), waiting for it while it gets some at least once every
	// stall, up to maxWait; got says how many of each have room.
	Reserve(want map[string]int, stall, maxWait time.Duration) (got map[string]int, leaseUntil time.Time)
	// NodeID is the holder of the dispatcher's claims, stored with the
	// deliveries stored claimed.
	NodeID() string
	// Enqueue takes the deliveries stored claimed, with their events
	// decoded (events[i] is ds[i]'s; the dispatcher only reads it), and
	// gives back the room of reserved (what Reserve returned) not used.
	Enqueue(ds []*store.Delivery, events []*event.Event, reserved map[string]int)
}

// Config tunes the publisher. Zero fields take the defaults.
type Config struct {
	// Dispatcher, if set, gets fresh deliveries in memory, as far as it
	// has room; the rest are stored pending for any node to claim.
	Dispatcher Dispatcher
	// MaxBatch is the most events committed in one transaction (default 1000).
	MaxBatch int
	// GatherWait is how long a commit waits for calls announced by Arriving
	// that have not queued yet (default 1ms): one commit, and one sync,
	// then serves them too.
	GatherWait time.Duration
	// Limits bound events and calls (zero fields: policy.DefaultLimits).
	Limits policy.Limits
	// OnCommit is called after each commit that created deliveries, e.g. to
	// wake the dispatcher. It must not block.
	OnCommit func()
	Logger   *slog.Logger
}

// Publisher validates, matches and durably stores events. Concurrent
// Publish calls share transactions (group commit): while one commit is
// being written, the next calls queue and are committed together.
type Publisher struct {
	store   Store
	catalog *catalog.Catalog
	cfg     Config

	arriving atomic.Int64 // calls announced by Arriving and not ended

	// failing holds the error and time of the last commit when it failed,
	// nil after a commit that succeeded (see CommitFailing).
	failing atomic.Pointer[commitFailure]

	mu      sync.RWMutex // held for reading while queueing a request
	closed  bool
	reqs    chan *commitReq
	closing chan struct{}
	done    chan struct{}
}

type commitReq struct {
	params  []store.EventInsertParams
	events  []*event.Event // params[i]'s event, decoded
	results []store.EventInsertResult
	err     error
	done    chan struct{}
}

// setDefaults gives zero fields package config's defaults.
func (cfg *Config) setDefaults() {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = config.DefaultCommitBatch
	}
	if cfg.GatherWait <= 0 {
		cfg.GatherWait = config.DefaultGatherWait
	}
	cfg.Limits = cfg.Limits.WithDefaults()
}

// New starts a publisher. Close stops it.
func New(s Store, c *catalog.Catalog, cfg Config) *Publisher {
	cfg.setDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{
		store:   s,
		catalog: c,
		cfg:     cfg,
		reqs:    make(chan *commitReq, 1024),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go p.commitLoop()
	return p
}

// Arriving announces a Publish call on its way, e.g. an RPC whose request
// is still being received; call end once the call has returned. While
// announced calls are missing from a commit, it waits up to GatherWait for
// them. A single caller is never kept waiting: its commit finds every
// announced call in it.
func (p *Publisher) Arriving() (end func()) {
	p.arriving.Add(1)
	return func() { p.arriving.Add(-1) }
}

// Publish validates every event, then stores the valid batch and returns
// once it is durable. If any event is invalid it returns an *InvalidError
// and stores nothing. tenant is the publishing key's tenant: its events
// match only that tenant's subscriptions, and deduplicate only against
// its own; empty (a key bound to no tenant) matches every tenant's.
func (p *Publisher) Publish(ctx context.Context, tenant string, events []*cloudeventsv1.CloudEvent) ([]Result, error) {
	for i, pe := range events {
		if strings.HasPrefix(pe.GetType(), OpsTypePrefix) {
			return nil, &InvalidError{Violations: []Violation{{Field: "events[" + strconv.Itoa(i) + "].type",
				Description: "types starting " + OpsTypePrefix + " are Herald's own events"}}}
		}
	}
	return p.publish(ctx, tenant, events, nil)
}

// OpsTypePrefix starts the types of Herald's own operational events.
const OpsTypePrefix = "io.herald."

// PublishOps publishes Herald's own operational events (types starting
// OpsTypePrefix), for tenant, as Publish does, but to the subscriptions
// that name each event's type in their types, and never to exclude (the
// subscription the event is about).
func (p *Publisher) PublishOps(ctx context.Context, tenant, exclude string, events []*cloudeventsv1.CloudEvent) error {
	_, err := p.publish(ctx, tenant, events, func(en *catalog.Entry, typ string) bool {
		return en.Subscription.ID != exclude && slices.Contains(en.Subscription.Types, typ)
	})
	return err
}

// publish validates, matches (keeping, when keep is set, only the entries
// it keeps) and stores events.
func (p *Publisher) publish(ctx context.Context, tenant string, events []*cloudeventsv1.CloudEvent, keep func(*catalog.Entry, string) bool) ([]Result, error) {
	if len(events) == 0 {
		return nil, &InvalidError{Violations: []Violation{{Field: "events", Description: "at least one event is required"}}}
	}
	if max := p.cfg.Limits.MaxEventsPerPublish; len(events) > max {
		return nil, &InvalidError{Violations: []Violation{{Field: "events",
			Description: fmt.Sprintf("%d events; at most %d per call", len(events), max)}}}
	}
	now := time.Now()
	params := make([]store.EventInsertParams, len(events))
	decoded := make([]*event.Event, len(events))
	var invalid []Violation
	var matched []*catalog.Entry
	for i, pe := range events {
		e, vs := Validate("events["+strconv.Itoa(i)+"]", pe, p.cfg.Limits.MaxEventSize)
		if len(vs) > 0 {
			invalid = append(invalid, vs...)
			continue
		}
		if invalid != nil {
			continue // only validate the rest
		}
		payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(pe)
		if err != nil {
			return nil, fmt.Errorf("publish: encode event: %w", err)
		}
		decoded[i] = &e
		matched = p.catalog.Match(&e, tenant, matched[:0])
		if keep != nil {
			matched = slices.DeleteFunc(matched, func(en *catalog.Entry) bool { return !keep(en, pe.GetType()) })
		}
		deliveries := make([]store.Delivery, len(matched))
		for j, en := range matched {
			state := store.DeliveryPending
			if lifecycle.Holds(en.Subscription) {
				state = store.DeliveryHeld // kept until it is enabled
			}
			deliveries[j] = store.Delivery{
				ID:             id.New(id.Delivery),
				SubscriptionID: en.Subscription.ID,
				State:          state,
				NextAt:         now,
			}
		}
		params[i] = store.EventInsertParams{
			Event: store.Event{
				Tenant:    tenant,
				Source:    pe.GetSource(),
				ID:        pe.GetId(),
				Type:      pe.GetType(),
				Subject:   e.Subject(),
				Payload:   payload,
				CreatedAt: now,
			},
			Deliveries: deliveries,
		}
	}
	if invalid != nil {
		metrics.EventsRejected.Inc()
		return nil, &InvalidError{Violations: invalid}
	}

	if keep != nil {
		// An operational event that no subscription takes is not stored.
		params, decoded = withDeliveries(params, decoded)
		if len(params) == 0 {
			return nil, nil
		}
	}
	stored, err := p.commit(ctx, params, decoded)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(params))
	for i, r := range stored {
		results[i] = Result{
			Source:      params[i].Event.Source,
			ID:          params[i].Event.ID,
			Duplicate:   r.Duplicate,
			DeliveryIDs: r.DeliveryIDs,
		}
	}
	return results, nil
}

// withDeliveries keeps the events (and their decoded forms) that have
// deliveries.
func withDeliveries(params []store.EventInsertParams, decoded []*event.Event) ([]store.EventInsertParams, []*event.Event) {
	var keptParams []store.EventInsertParams
	var keptDecoded []*event.Event
	for i := range params {
		if len(params[i].Deliveries) > 0 {
			keptParams = append(keptParams, params[i])
			keptDecoded = append(keptDecoded, decoded[i])
		}
	}
	return keptParams, keptDecoded
}

// commit queues params for the next group commit and waits for it.
func (p *Publisher) commit(ctx context.Context, params []store.EventInsertParams, events []*event.Event) ([]store.EventInsertResult, error) {
	req := &commitReq{params: params, events: events, done: make(chan struct{})}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case p.reqs <- req:
		p.mu.RUnlock()
	case <-ctx.Done():
		p.mu.RUnlock()
		return nil, ctx.Err()
	}
	// Once queued, the request is committed even if ctx ends: the caller
	// may not learn the outcome, but it is never stored half-way.
	<-req.done
	return req.results, req.err
}

type commitFailure struct {
	err error
	at  time.Time
}

// failingFor is how long a failed commit makes CommitFailing report it
// when no commit has succeeded since: long enough for a load balancer to
// move traffic away, short enough that the node is tried again, since
// without traffic no commit would show it recovered.
const failingFor = 10 * time.Second

// CommitFailing returns the error of the last commit if it failed within
// the last 10 s and none has succeeded since (the disk is full, the
// database is down): the node cannot store what it is sent, and should
// not be sent it (readiness).
func (p *Publisher) CommitFailing(now time.Time) error {
	f := p.failing.Load()
	if f == nil || now.Sub(f.at) > failingFor {
		return nil
	}
	return f.err
}

// commitLoop takes queued requests and commits as many together as fit in
// one batch. A commit in progress lets the queue fill, so batches grow with
// load by themselves.
func (p *Publisher) commitLoop() {
	defer close(p.done)
	var batch []*commitReq
	var all []store.EventInsertParams
	var allEvents []*event.Event
	for {
		var first *commitReq
		select {
		case first = <-p.reqs:
		case <-p.closing:
			// Commit whatever was queued before Close.
			select {
			case first = <-p.reqs:
			default:
				return
			}
		}
		batch = append(batch[:0], first)
		n := len(first.params)
		var wait *time.Timer
	gather:
		for n < p.cfg.MaxBatch {
			var r *commitReq
			select {
			case r = <-p.reqs:
			default:
				// Nothing queued: wait a little only for calls announced
				// and not in this batch yet.
				if p.arriving.Load() <= int64(len(batch)) {
					break gather
				}
				if wait == nil {
					wait = time.NewTimer(p.cfg.GatherWait)
				}
				select {
				case r = <-p.reqs:
				case <-wait.C:
					break gather
				}
			}
			batch = append(batch, r)
			n += len(r.params)
		}
		if wait != nil {
			wait.Stop()
		}
		all, allEvents = all[:0], allEvents[:0]
		for _, r := range batch {
			all = append(all, r.params...)
			allEvents = append(allEvents, r.events...)
		}
		reserved := p.claim(all)
		start := time.Now()
		results, err := p.store.EventInsertBatch(context.Background(), all)
		metrics.CommitSeconds.Observe(time.Since(start).Seconds())
		metrics.CommitEvents.Observe(float64(len(all)))
		p.handOver(all, allEvents, results, err, reserved)
		if err == nil {
			count(results)
			p.failing.Store(nil)
		} else {
			p.failing.Store(&commitFailure{err: err, at: time.Now()})
		}
		off := 0
		for _, r := range batch {
			if err != nil {
				r.err = fmt.Errorf("publish: store events: %w", err)
			} else {
				r.results = results[off : off+len(r.params)]
			}
			off += len(r.params)
			close(r.done)
		}
		created := err == nil && storedPending(all, results)
		if created && p.cfg.OnCommit != nil {
			p.cfg.OnCommit()
		}
	}
}

// A commit waits for room in the local dispatcher while its senders keep
// making some (at least every reserveStall), for up to reserveMaxWait,
// before it stores the rest of its deliveries for a claim. Measured with
// 100-event calls (docs/benchmarks.md): waiting at most 20 ms stored a
// third of the deliveries twice (claims were 10% of CPU); waiting while
// senders progress stores none twice and cut the p99 publish-to-delivered
// from 4.9 s to 0.6 s.
const (
	reserveStall   = 20 * time.Millisecond
	reserveMaxWait = 250 * time.Millisecond
)

// claim reserves room in the dispatcher for the batch's deliveries and
// marks those that have it claimed (in flight, leased), so the dispatcher
// gets them from handOver instead of a claim query. It returns the room
// reserved, by subscription.
func (p *Publisher) claim(all []store.EventInsertParams) map[string]int {
	if p.cfg.Dispatcher == nil {
		return nil
	}
	want := map[string]int{}
	for _, e := range all {
		for _, d := range e.Deliveries {
			if d.State == store.DeliveryPending {
				want[d.SubscriptionID]++
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	reserved, lease := p.cfg.Dispatcher.Reserve(want, reserveStall, reserveMaxWait)
	holder := p.cfg.Dispatcher.NodeID()
	left := make(map[string]int, len(reserved))
	for sub, n := range reserved {
		left[sub] = n
	}
	for i := range all {
		for j := range all[i].Deliveries {
			d := &all[i].Deliveries[j]
			if d.State == store.DeliveryPending && left[d.SubscriptionID] > 0 {
				d.State, d.LeaseUntil, d.Holder = store.DeliveryInFlight, lease, holder
				left[d.SubscriptionID]--
			}
		}
	}
	return reserved
}

// handOver passes the deliveries that were stored claimed to the
// dispatcher, with their events.
func (p *Publisher) handOver(all []store.EventInsertParams, events []*event.Event, results []store.EventInsertResult, err error, reserved map[string]int) {
	if len(reserved) == 0 {
		return
	}
	var ds []*store.Delivery
	var evs []*event.Event
	if err == nil {
		for i, e := range all {
			if results[i].Duplicate {
				continue
			}
			for j := range e.Deliveries {
				d := e.Deliveries[j]
				if d.State != store.DeliveryInFlight {
					continue
				}
				d.EventSource, d.EventID, d.EventType = e.Event.Source, e.Event.ID, e.Event.Type
				d.EventPayload, d.CreatedAt, d.UpdatedAt = e.Event.Payload, e.Event.CreatedAt, e.Event.CreatedAt
				ds = append(ds, &d)
				evs = append(evs, events[i])
			}
		}
	}
	p.cfg.Dispatcher.Enqueue(ds, evs, reserved)
}

// count adds a commit's results to the metrics.
func count(results []store.EventInsertResult) {
	var accepted, duplicate, deliveries int
	for _, r := range results {
		if r.Duplicate {
			duplicate++
			continue
		}
		accepted++
		deliveries += len(r.DeliveryIDs)
	}
	metrics.EventsPublished.WithLabelValues("accepted").Add(float64(accepted))
	metrics.EventsPublished.WithLabelValues("duplicate").Add(float64(duplicate))
	metrics.DeliveriesCreated.Add(float64(deliveries))
}

// storedPending reports whether the batch stored a delivery for the
// dispatchers to claim (one the local dispatcher did not take).
func storedPending(all []store.EventInsertParams, results []store.EventInsertResult) bool {
	for i, e := range all {
		if results[i].Duplicate {
			continue
		}
		for _, d := range e.Deliveries {
			if d.State == store.DeliveryPending {
				return true
			}
		}
	}
	return false
}

// Close commits what is queued and stops the publisher. Publish calls that
// have not queued yet fail with ErrClosed.
func (p *Publisher) Close() {
	p.mu.Lock()
	wasClosed := p.closed
	p.closed = true
	p.mu.Unlock()
	if !wasClosed {
		close(p.closing)
	}
	<-p.done
}
