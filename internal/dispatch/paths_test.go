package dispatch_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/protobuf/proto"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/dispatch"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// put stores one event with one delivery to sub, as d says (state, next,
// lease), and returns the delivery as a claim would.
func put(t *testing.T, s store.Store, id, sub string, d store.Delivery) *store.Delivery {
	t.Helper()
	now := time.Now()
	payload, _ := proto.Marshal(&cloudeventsv1.CloudEvent{Id: id, Source: "/t", SpecVersion: "1.0", Type: "t",
		Data: &cloudeventsv1.CloudEvent_TextData{TextData: `{}`}})
	d.ID, d.SubscriptionID = "dlv_"+id, sub
	if d.NextAt.IsZero() {
		d.NextAt = now
	}
	if _, err := s.EventInsertBatch(context.Background(), []store.EventInsertParams{{
		Event:      store.Event{Source: "/t", ID: id, Type: "t", Payload: payload, CreatedAt: now},
		Deliveries: []store.Delivery{d},
	}}); err != nil {
		t.Fatal(err)
	}
	d.EventSource, d.EventID, d.EventType, d.EventPayload, d.CreatedAt = "/t", id, "t", payload, now
	return &d
}

// run starts d and returns a function that stops it and waits.
func run(t *testing.T, d *dispatch.Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func state(t *testing.T, s store.Store, id string) *store.Delivery {
	t.Helper()
	d, err := s.DeliveryGet(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// countingStore counts the deliveries the dispatcher claims.
type countingStore struct {
	dispatch.Store
	claimed atomic.Int64
}

func (c *countingStore) DeliveryClaim(ctx context.Context, p store.DeliveryClaimParams) ([]*store.Delivery, error) {
	ds, err := c.Store.DeliveryClaim(ctx, p)
	c.claimed.Add(int64(len(ds)))
	return ds, err
}

func newAttempter() *attempt.Attempter {
	return &attempt.Attempter{Sender: delivery.NewSender(), Scheduler: scheduler.New(scheduler.Config{})}
}

// TestEnqueue_FreshDeliveriesAreSentWithoutAClaim: deliveries the publisher
// stored claimed and handed over are sent and recorded, and none is
// claimed from the store.
func TestEnqueue_FreshDeliveriesAreSentWithoutAClaim(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, nil)
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	cs := &countingStore{Store: s}
	d := dispatch.New(dispatch.Config{BatchSize: 8, Queue: 8}, cs, cat, newAttempter(), stuckHandoff{context.Background()})
	run(t, d)
	got, lease := d.Reserve(map[string]int{"sub_1": 2}, 0, 0)
	var ds []*store.Delivery
	for i := range got["sub_1"] {
		ds = append(ds, put(t, s, fmt.Sprint(i), "sub_1", store.Delivery{State: store.DeliveryInFlight, LeaseUntil: lease}))
	}
	d.Enqueue(ds, make([]*event.Event, len(ds)), got)
	rcv.WaitFor(t, 2, time.Minute)
	heraldtest.Eventually(t, time.Minute, "both recorded delivered", func() bool {
		return state(t, s, "dlv_0").State == store.DeliveryDelivered && state(t, s, "dlv_1").State == store.DeliveryDelivered
	})
	if c := cs.claimed.Load(); c != 0 {
		t.Errorf("%d deliveries were claimed from the store", c)
	}
}

// TestClaim_AnExpiredLeaseIsClaimedAgain: a delivery left in flight by a
// node that died is claimed and sent once its lease has ended.
func TestClaim_AnExpiredLeaseIsClaimedAgain(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, nil)
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	put(t, s, "orphan", "sub_1", store.Delivery{State: store.DeliveryInFlight, LeaseUntil: time.Now().Add(-time.Second)})
	put(t, s, "leased", "sub_1", store.Delivery{State: store.DeliveryInFlight, LeaseUntil: time.Now().Add(time.Hour)})
	run(t, dispatch.New(dispatch.Config{PollInterval: 10 * time.Millisecond}, s, cat, newAttempter(), stuckHandoff{context.Background()}))
	got := rcv.WaitFor(t, 1, time.Minute)
	if id := got[0].Header.Get("Ce-Id"); id != "orphan" {
		t.Errorf("sent %q, want the delivery whose lease expired", id)
	}
	time.Sleep(100 * time.Millisecond) // a few more polls
	if n := len(rcv.Requests()); n != 1 {
		t.Errorf("%d requests: a delivery still leased was sent", n)
	}
}

// TestGate_APausedSubscriptionsDeliveryWaitsInTheStore: a delivery to a
// sink paused by a Retry-After is put back until the pause ends, without
// a request and without spending an attempt.
func TestGate_APausedSubscriptionsDeliveryWaitsInTheStore(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, nil)
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if _, err := s.SubscriptionUpdate(context.Background(), "sub_1", func(sub *store.Subscription) error {
		sub.PausedUntil = until
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := cat.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	put(t, s, "p", "sub_1", store.Delivery{State: store.DeliveryPending})
	stop := run(t, dispatch.New(dispatch.Config{PollInterval: 10 * time.Millisecond}, s, cat, newAttempter(), stuckHandoff{context.Background()}))
	heraldtest.Eventually(t, time.Minute, "the delivery put back", func() bool {
		d := state(t, s, "dlv_p")
		return d.State == store.DeliveryPending && !d.NextAt.Before(until)
	})
	stop()
	if d := state(t, s, "dlv_p"); d.Attempts != 0 || len(rcv.Requests()) != 0 {
		t.Errorf("attempts %d, requests %d: the paused sink was sent to", d.Attempts, len(rcv.Requests()))
	}
}

// blockingHandoff is a Temporal that holds every start until release.
type blockingHandoff struct{ started, release chan struct{} }

func (h blockingHandoff) Start(context.Context, workflows.DeliveryInput) error {
	h.started <- struct{}{}
	<-h.release
	return context.Canceled
}

// TestHandoff_AFullQueueDefersTheFailedDelivery: while Temporal is slow
// and the hand-off queue is full, a failed first attempt is recorded and
// its delivery put back for another first attempt later, instead of
// holding its request slot.
func TestHandoff_AFullQueueDefersTheFailedDelivery(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusInternalServerError, nil })
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	h := blockingHandoff{started: make(chan struct{}, 10), release: make(chan struct{})}
	for i := range 3 {
		put(t, s, fmt.Sprint(i), "sub_1", store.Delivery{State: store.DeliveryPending, NextAt: time.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	// One hand-off worker, held by the first failure; room for one more.
	run(t, dispatch.New(dispatch.Config{Handoffs: 1, HandoffQueue: 1}, s, cat, newAttempter(), h))
	t.Cleanup(func() { close(h.release) }) // before the dispatcher stops
	<-h.started
	heraldtest.Eventually(t, time.Minute, "a deferred delivery", func() bool {
		for i := range 3 {
			d := state(t, s, fmt.Sprintf("dlv_%d", i))
			if d.State == store.DeliveryPending && d.Attempts == 1 && d.LastStatus == 500 && d.NextAt.After(time.Now()) {
				return true
			}
		}
		return false
	})
}

// TestRun_PutsBackWhatWaitsWhenItStops: deliveries still waiting for
// their turn when the dispatcher stops are put back for any node at once,
// not left to their lease; the request in flight ends and is recorded.
func TestRun_PutsBackWhatWaitsWhenItStops(t *testing.T) {
	release := make(chan struct{})
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		<-release
		return http.StatusNoContent, nil
	})
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	for i := range 3 {
		put(t, s, fmt.Sprint(i), "sub_1", store.Delivery{State: store.DeliveryPending, NextAt: time.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	a := &attempt.Attempter{Sender: delivery.NewSender(), Scheduler: scheduler.New(scheduler.Config{OriginConcurrency: 1, MaxOriginConcurrency: 1})}
	stop := run(t, dispatch.New(dispatch.Config{}, s, cat, a, stuckHandoff{context.Background()}))
	rcv.WaitFor(t, 1, time.Minute) // one in flight, two waiting
	go func() { time.Sleep(50 * time.Millisecond); close(release) }()
	stop()
	delivered, pending := 0, 0
	for i := range 3 {
		d := state(t, s, fmt.Sprintf("dlv_%d", i))
		switch {
		case d.State == store.DeliveryDelivered:
			delivered++
		case d.State == store.DeliveryPending && !d.NextAt.After(time.Now()) && d.Attempts == 0:
			pending++
		default:
			t.Errorf("%s is %s (next %s, attempts %d)", d.ID, d.State, d.NextAt, d.Attempts)
		}
	}
	if delivered != 1 || pending != 2 {
		t.Errorf("%d delivered and %d put back, want 1 and 2", delivered, pending)
	}
}

// leaseStore remembers the lease each claim gave.
type leaseStore struct {
	dispatch.Store
	mu     sync.Mutex
	leases map[string]time.Time
}

func (l *leaseStore) DeliveryClaim(ctx context.Context, p store.DeliveryClaimParams) ([]*store.Delivery, error) {
	ds, err := l.Store.DeliveryClaim(ctx, p)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range ds {
		l.leases[d.ID] = d.LeaseUntil
	}
	return ds, err
}

func (l *leaseStore) lease(id string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leases[id]
}

// heldHandoff is a Temporal that holds every start until release or
// until the start's context ends, and says which deliveries it got.
type heldHandoff struct {
	started chan string
	release chan struct{}
}

func (h heldHandoff) Start(ctx context.Context, in workflows.DeliveryInput) error {
	h.started <- in.DeliveryID
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestHandoff_AWaitingFailureIsPutBackBeforeItsLeaseEnds: failed first
// attempts wait in the hand-off queue behind a start that Temporal holds.
// Nothing renews their leases, so before a lease ends the delivery is
// recorded and put back (pending, for any node, its attempt counted),
// never left in flight past its lease where another node would claim and
// send it again while it still waits here.
func TestHandoff_AWaitingFailureIsPutBackBeforeItsLeaseEnds(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusInternalServerError, nil })
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	ls := &leaseStore{Store: s, leases: map[string]time.Time{}}
	h := heldHandoff{started: make(chan string, 10), release: make(chan struct{})}
	for i := range 3 {
		put(t, s, fmt.Sprint(i), "sub_1", store.Delivery{State: store.DeliveryPending, NextAt: time.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	// One hand-off worker; leases a little longer than the hand-off's
	// margin, so a failure that waits runs out of lease.
	stop := run(t, dispatch.New(dispatch.Config{Handoffs: 1, HandoffQueue: 10, Lease: 14 * time.Second,
		RequestTimeout: time.Second, PollInterval: 10 * time.Millisecond}, ls, cat, newAttempter(), h))
	first := <-h.started
	var putBack []*store.Delivery
	heraldtest.Eventually(t, time.Minute, "the waiting failures put back", func() bool {
		putBack = putBack[:0]
		for i := range 3 {
			if id := fmt.Sprintf("dlv_%d", i); id != first {
				if d := state(t, s, id); d.State == store.DeliveryPending && d.Attempts == 1 {
					putBack = append(putBack, d)
				}
			}
		}
		return len(putBack) == 2
	})
	close(h.release)
	stop()
	for _, d := range putBack {
		if lease := ls.lease(d.ID); !d.UpdatedAt.Before(lease) {
			t.Errorf("%s put back at %s, after its lease ended at %s", d.ID, d.UpdatedAt, lease)
		}
		if d.LastStatus != 500 || !d.NextAt.After(d.UpdatedAt) {
			t.Errorf("%s put back with status %d, next %s: want its failed attempt recorded and a later retry", d.ID, d.LastStatus, d.NextAt)
		}
	}
	select {
	case id := <-h.started:
		t.Errorf("%s was handed off after waiting out its lease", id)
	default:
	}
	if n := len(rcv.Requests()); n != 3 {
		t.Errorf("the sink got %d requests, want 3: one per delivery", n)
	}
}
