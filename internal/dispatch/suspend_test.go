package dispatch_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/dispatch"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// acceptingHandoff starts every workflow at once and does nothing more.
type acceptingHandoff struct{}

func (acceptingHandoff) Start(context.Context, workflows.DeliveryInput) error { return nil }

// insertPending stores pending deliveries from to n-1 of sub, one event
// each.
func insertPending(t *testing.T, s store.Store, sub string, from, n int) []string {
	t.Helper()
	now := time.Now()
	var ids []string
	var params []store.EventInsertParams
	for i := from; i < n; i++ {
		pe := &cloudeventsv1.CloudEvent{Id: fmt.Sprint(i), Source: "/s", SpecVersion: "1.0", Type: "t"}
		payload, _ := proto.Marshal(pe)
		id := fmt.Sprintf("dlv_%s_%03d", sub, i)
		ids = append(ids, id)
		params = append(params, store.EventInsertParams{
			Event:      store.Event{Source: "/s", ID: sub + fmt.Sprint(i), Type: "t", Payload: payload, CreatedAt: now},
			Deliveries: []store.Delivery{{ID: id, SubscriptionID: sub, State: store.DeliveryPending, NextAt: now}},
		})
	}
	if _, err := s.EventInsertBatch(t.Context(), params); err != nil {
		t.Fatal(err)
	}
	return ids
}

func runDispatcher(t *testing.T, d *dispatch.Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestDispatch_ASuspendedSubscriptionsDeliveriesAreHeldUnsent: a claimed
// delivery of a suspended subscription is held, and nothing is sent.
func TestDispatch_ASuspendedSubscriptionsDeliveriesAreHeldUnsent(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, nil)
	s, cat := newStore(t, map[string]string{"sub_s": rcv.URL})
	if _, err := s.SubscriptionUpdate(t.Context(), "sub_s", func(sub *store.Subscription) error {
		sub.State, sub.StateReason = store.SubscriptionSuspended, "failing"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := cat.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	ids := insertPending(t, s, "sub_s", 0, 3)
	sched := scheduler.New(scheduler.Config{MaxInFlight: 8})
	t.Cleanup(sched.Close)
	runDispatcher(t, dispatch.New(dispatch.Config{PollInterval: 10 * time.Millisecond}, s, cat,
		&attempt.Attempter{Sender: delivery.NewSender(), Scheduler: sched}, acceptingHandoff{}))
	for _, id := range ids {
		heraldtest.Eventually(t, time.Minute, id+" to be held", func() bool {
			d, err := s.DeliveryGet(t.Context(), id)
			return err == nil && d.State == store.DeliveryHeld
		})
	}
	if n := len(rcv.Requests()); n != 0 {
		t.Errorf("the sink got %d requests", n)
	}
}

// TestDispatch_ASinkFailingForItsSuspendAfterIsSuspended: first attempts
// that fail for longer than the subscription's suspend_after suspend it,
// once, and say so.
func TestDispatch_ASinkFailingForItsSuspendAfterIsSuspended(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusInternalServerError, nil })
	s, cat := newStore(t, map[string]string{"sub_f": rcv.URL})
	if _, err := s.SubscriptionUpdate(t.Context(), "sub_f", func(sub *store.Subscription) error {
		sub.SuspendAfter = time.Millisecond
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := cat.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	var told atomic.Int32
	health := &lifecycle.Health{Store: s, Suspended: func(context.Context, *store.Subscription) { told.Add(1) }}
	sched := scheduler.New(scheduler.Config{MaxInFlight: 8, OriginConcurrency: 1})
	t.Cleanup(sched.Close)
	runDispatcher(t, dispatch.New(dispatch.Config{PollInterval: 10 * time.Millisecond, Health: health}, s, cat,
		&attempt.Attempter{Sender: delivery.NewSender(), Scheduler: sched}, acceptingHandoff{}))
	insertPending(t, s, "sub_f", 0, 1)
	heraldtest.Eventually(t, time.Minute, "the first failure to be recorded", func() bool {
		sub, err := s.SubscriptionGet(t.Context(), "sub_f")
		return err == nil && !sub.FailingSince.IsZero()
	})
	time.Sleep(5 * time.Millisecond) // past suspend_after: not a speed claim
	insertPending(t, s, "sub_f", 1, 2)
	heraldtest.Eventually(t, time.Minute, "the subscription to be suspended", func() bool {
		sub, err := s.SubscriptionGet(t.Context(), "sub_f")
		return err == nil && sub.State == store.SubscriptionSuspended
	})
	if n := told.Load(); n != 1 {
		t.Errorf("the suspension was told %d times, want 1", n)
	}
}

// inputsHandoff records the inputs of the workflows it starts.
type inputsHandoff chan workflows.DeliveryInput

func (h inputsHandoff) Start(_ context.Context, in workflows.DeliveryInput) error {
	h <- in
	return nil
}

// TestHandoff_AHeldDeliveryReleasedPastItsMaximumAgeGetsAFullSeries: a
// delivery first attempted when it is older than its retry policy's
// maximum age (held while its subscription was suspended, then released)
// is handed to its workflow with a series that starts at that attempt;
// a younger one keeps its publish time.
func TestHandoff_AHeldDeliveryReleasedPastItsMaximumAgeGetsAFullSeries(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusInternalServerError, nil })
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	old := time.Now().Add(-48 * time.Hour) // the default maximum age is 24h
	young := time.Now().Add(-time.Hour)
	put(t, s, "old", "sub_1", store.Delivery{State: store.DeliveryPending, CreatedAt: old})
	put(t, s, "young", "sub_1", store.Delivery{State: store.DeliveryPending, CreatedAt: young})
	h := make(inputsHandoff, 2)
	before := time.Now()
	run(t, dispatch.New(dispatch.Config{PollInterval: 10 * time.Millisecond}, s, cat, newAttempter(), h))
	for range 2 {
		select {
		case in := <-h:
			switch in.DeliveryID {
			case "dlv_old":
				if in.SeriesStart.Before(before) {
					t.Errorf("the delivery released past its maximum age: series start %s, want its first attempt (after %s)", in.SeriesStart, before)
				}
			case "dlv_young":
				if !in.SeriesStart.Equal(young.Truncate(time.Millisecond)) && !in.SeriesStart.Equal(young) {
					t.Errorf("a delivery within its maximum age: series start %s, want its publish %s", in.SeriesStart, young)
				}
			}
		case <-time.After(time.Minute):
			t.Fatal("no hand-off")
		}
	}
}
