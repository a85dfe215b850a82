package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/workflows"
)

// badSink is a loopback sink that misbehaves until released: it hangs,
// closes the connection, answers slowly or answers 429.
type badSink struct {
	*heraldtest.Receiver
	release  chan struct{}
	once     sync.Once
	finished atomic.Int64 // requests it answered (or dropped)
}

func newBadSink(t *testing.T, mode string) *badSink {
	b := &badSink{release: make(chan struct{})}
	b.Receiver = heraldtest.NewReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
		defer b.finished.Add(1)
		switch mode {
		case "hang":
			select {
			case <-b.release:
			case <-r.Context().Done():
			}
		case "slow":
			select {
			case <-b.release:
			case <-time.After(10 * time.Second):
			}
		case "close":
			panic(http.ErrAbortHandler) // the connection closes without an answer
		case "429":
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"30"}}
		}
		return http.StatusNoContent, nil
	})
	t.Cleanup(b.free)
	return b
}

func (b *badSink) free() { b.once.Do(func() { close(b.release) }) }

func typed(id, typ string) *cloudeventsv1.CloudEvent {
	e := newEvent(id)
	e.Type = typ
	return e
}

// TestIsolation_BadSinkNeverDelaysAHealthySink: for each way a sink goes
// bad, its events are published first and a healthy sink's after them;
// the healthy sink gets every one of its events, once, while the bad
// sink's are still not done, and the bad sink never holds more than its
// origin's share.
func TestIsolation_BadSinkNeverDelaysAHealthySink(t *testing.T) {
	for _, mode := range []string{"hang", "slow", "close", "429"} {
		t.Run(mode, func(t *testing.T) {
			n := startNode(t, nodeConfig(t, tempStore(t)))
			bad := newBadSink(t, mode)
			good := heraldtest.NewReceiver(t, nil)
			createSub(t, n, bad.URL, func(s *heraldv1.Subscription) { s.Types = []string{"bad"} })
			createSub(t, n, good.URL, func(s *heraldv1.Subscription) { s.Types = []string{"good"} })
			const perSink = 60
			var badEvents, goodEvents []*cloudeventsv1.CloudEvent
			for i := range perSink {
				badEvents = append(badEvents, typed(fmt.Sprintf("bad-%d", i), "bad"))
				goodEvents = append(goodEvents, typed(fmt.Sprintf("good-%d", i), "good"))
			}
			publish(t, n, badEvents...)
			publish(t, n, goodEvents...)
			got := good.WaitFor(t, perSink, wait)
			finishedBad := bad.finished.Load()
			if len(got) != perSink {
				t.Errorf("healthy sink got %d requests, want %d (no duplicates)", len(got), perSink)
			}
			switch mode {
			case "hang", "slow":
				// Every request to the bad sink is still held: the
				// healthy sink's were never queued behind them.
				if finishedBad != 0 {
					t.Errorf("%d bad requests ended before the healthy sink had all its events", finishedBad)
				}
				if held := len(bad.Requests()); held == 0 || held > 4 {
					t.Errorf("the bad sink holds %d requests, want 1 to its origin's starting limit of 4", held)
				}
			case "close":
				// The breaker cuts it off after 3 failures in a row.
				if got := len(bad.Requests()); got > 3+4 {
					t.Errorf("a sink that closes every connection got %d requests, want its breaker to stop them", got)
				}
			case "429":
				// Its Retry-After pauses it: a few requests, not 60.
				if got := len(bad.Requests()); got > 4 {
					t.Errorf("a paused sink got %d requests", got)
				}
			}
			bad.free()
		})
	}
}

// TestBreaker_HoldsDeliveriesOfADownSinkAndLetsThemGoWhenItIsBack: a sink
// that drops every connection trips its origin's breaker; its deliveries
// wait in the store (saying why) instead of each starting a retry
// workflow, and are delivered once the sink answers again.
func TestBreaker_HoldsDeliveriesOfADownSinkAndLetsThemGoWhenItIsBack(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	var down atomic.Bool
	down.Store(true)
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		if down.Load() {
			panic(http.ErrAbortHandler)
		}
		return http.StatusNoContent, nil
	})
	sub := createSub(t, n, rcv.URL)
	var events []*cloudeventsv1.CloudEvent
	for i := range 40 {
		events = append(events, newEvent(fmt.Sprintf("down-%d", i)))
	}
	res := publish(t, n, events...)
	heraldtest.Eventually(t, wait, "deliveries held by the breaker", func() bool {
		list, err := n.deliveries.ListDeliveries(ctx(t), &heraldv1.ListDeliveriesRequest{
			SubscriptionId: sub.GetId(), State: heraldv1.DeliveryState_DELIVERY_STATE_PENDING, PageSize: 100})
		if err != nil {
			return false
		}
		for _, d := range list.GetDeliveries() {
			if strings.Contains(d.GetLastError(), "circuit breaker open") {
				return true
			}
		}
		return false
	})
	tried := len(rcv.Requests())
	if tried >= len(events) {
		t.Errorf("the down sink got %d requests for %d events: the breaker did not hold them back", tried, len(events))
	}
	down.Store(false)
	for _, r := range res {
		waitDeliveryState(t, n, r.GetDeliveryIds()[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
}

// TestRateLimit_DeliversAtTheLimit: a rate-limited subscription's
// deliveries wait for their token in memory, so the sink receives them at
// the limit: never faster, and without the store round trips that once
// made a limit deliver far below itself.
func TestRateLimit_DeliversAtTheLimit(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) { s.RateLimit = 1200 }) // 20/s
	const events = 41
	var batch []*cloudeventsv1.CloudEvent
	for i := range events {
		batch = append(batch, newEvent(fmt.Sprintf("rate-%d", i)))
	}
	publish(t, n, batch...)
	reqs := rcv.WaitFor(t, events, wait)
	span := reqs[events-1].At.Sub(reqs[0].At)
	want := time.Duration(events-1) * time.Second / 20 // 2 s
	// Never faster than the limit; and not many times slower (the bound
	// is loose: CI machines are shared).
	if span < want*9/10 || span > 3*want {
		t.Errorf("%d requests at 20/s took %s, want about %s", events, span, want)
	}
}

// TestRecovery_WakesRetriesWaitingForTheSink: a delivery whose first
// attempt failed waits in its workflow's backoff (drawn from up to a
// day); when another delivery to the same sink succeeds, its wait is
// ended and it is delivered.
func TestRecovery_WakesRetriesWaitingForTheSink(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv, failing := failingSink(t)
	sub := createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) {
		s.RetryPolicy = &heraldv1.RetryPolicy{
			InitialInterval: durationpb.New(24 * time.Hour),
			MaximumInterval: durationpb.New(24 * time.Hour),
		}
	})
	first := publish(t, n, newEvent("wake-1"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, first, heraldv1.DeliveryState_DELIVERY_STATE_RETRYING)
	tc := temporalClient(t)
	wfID := workflows.WorkflowID(sub.GetId(), first)
	// Wait until the workflow is visible as retrying (the waker finds
	// it by search attribute) and sleeping.
	heraldtest.Eventually(t, wait, "the retry workflow in its backoff", func() bool {
		resp, err := tc.DescribeWorkflowExecution(ctx(t), wfID, "")
		return err == nil && resp.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING &&
			len(resp.GetPendingActivities()) == 0
	})
	heraldtest.Eventually(t, wait, "the workflow listed as retrying", func() bool {
		resp, err := tc.CountWorkflow(ctx(t), &workflowservice.CountWorkflowExecutionsRequest{Namespace: "default", Query: fmt.Sprintf(
			"HeraldSinkHost = '%s' AND HeraldDeliveryState = 'retrying' AND ExecutionStatus = 'Running'", delivery.SinkHost(rcv.URL))})
		return err == nil && resp.GetCount() == 1
	})
	failing.Store(false)
	second := publish(t, n, newEvent("wake-2"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, second, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	waitDeliveryState(t, n, first, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	// It was the wake-up, not the end of a day's backoff.
	iter := tc.GetWorkflowHistory(ctx(t), wfID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	woken := false
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == workflows.WakeSignal {
			woken = true
		}
		if ev.GetTimerFiredEventAttributes() != nil {
			t.Error("the backoff timer fired: the retry was not woken")
		}
	}
	if !woken {
		t.Error("the workflow got no wake signal")
	}
}

// TestIsolation_AHangingSinkWithMoreEventsThanTheQueueLeavesRoom: a sink
// that hangs gets more events than the dispatcher's queue holds, all
// published before a healthy sink's. The healthy sink still gets every
// one of its events, once, while every request to the hanging sink is
// still held: the hanging origin takes only its share of the queue (half
// of it while it is the only one busy), the rest of its deliveries wait
// in the store, and none of them is lost.
func TestIsolation_AHangingSinkWithMoreEventsThanTheQueueLeavesRoom(t *testing.T) {
	cfg := nodeConfig(t, tempStore(t))
	n := startNode(t, cfg)
	bad := newBadSink(t, "hang")
	good := heraldtest.NewReceiver(t, nil)
	badSub := createSub(t, n, bad.URL, func(s *heraldv1.Subscription) { s.Types = []string{"bad"} })
	createSub(t, n, good.URL, func(s *heraldv1.Subscription) { s.Types = []string{"good"} })
	badEvents := cfg.Queue + cfg.Queue/4
	const goodEvents = 100
	// The hanging sink's events are stored held (its subscription
	// disabled) and released at once, so that its requests start hanging
	// just before the healthy sink's events are published, however long
	// publishing thousands of events takes: what is checked below is that
	// the healthy sink is served while they hang, before they time out.
	setState(t, n, badSub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_DISABLED)
	for i := 0; i < badEvents; i += 500 {
		var batch []*cloudeventsv1.CloudEvent
		for j := i; j < min(i+500, badEvents); j++ {
			batch = append(batch, typed(fmt.Sprintf("bad-%d", j), "bad"))
		}
		publish(t, n, batch...)
	}
	setState(t, n, badSub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE)
	heraldtest.Eventually(t, wait, "the hanging sink holding requests", func() bool { return len(bad.Requests()) > 0 })
	var batch []*cloudeventsv1.CloudEvent
	for i := range goodEvents {
		batch = append(batch, typed(fmt.Sprintf("good-%d", i), "good"))
	}
	publish(t, n, batch...)

	got := good.WaitFor(t, goodEvents, wait)
	finishedBad := bad.finished.Load()
	if ids := distinctIDs(got); len(got) != goodEvents || ids != goodEvents {
		t.Errorf("healthy sink got %d requests for %d events, want %d, once each", len(got), ids, goodEvents)
	}
	if finishedBad != 0 {
		t.Errorf("%d requests to the hanging sink ended before the healthy sink had all its events", finishedBad)
	}
	if held := len(bad.Requests()); held > cfg.OriginConcurrency {
		t.Errorf("the hanging sink holds %d requests, want at most its origin's starting limit of %d", held, cfg.OriginConcurrency)
	}
	m := scrape(t, n)
	if w := m["herald_requests_waiting"]; w > float64(cfg.Queue/2) {
		t.Errorf("%g requests waiting, want at most the hanging origin's share, half of the queue (%d)", w, cfg.Queue/2)
	}
	// The hanging origin's state is visible on its own.
	label := fmt.Sprintf("{origin=%q}", delivery.Origin(bad.URL))
	if got := m["herald_origin_requests_in_flight"+label]; got != float64(len(bad.Requests())) {
		t.Errorf("herald_origin_requests_in_flight%s = %g, want the %d requests it holds", label, got, len(bad.Requests()))
	}
	if got := m["herald_origin_requests_waiting"+label]; got <= 0 || got > float64(cfg.Queue/2) {
		t.Errorf("herald_origin_requests_waiting%s = %g, want some, at most half the queue", label, got)
	}
	if _, ok := m["herald_origin_limit"+label]; !ok {
		t.Errorf("/metrics lacks herald_origin_limit%s", label)
	}

	// Released, the hanging sink gets every one of its events: those
	// that did not fit waited in the store.
	bad.free()
	heraldtest.Eventually(t, 3*wait, "every event of the released sink delivered", func() bool {
		return distinctIDs(bad.Requests()) == badEvents
	})
}

// distinctIDs counts the distinct CloudEvents ids among requests.
func distinctIDs(reqs []heraldtest.Request) int {
	ids := map[string]bool{}
	for _, r := range reqs {
		ids[r.Header.Get("Ce-Id")] = true
	}
	return len(ids)
}

// failingSink is a receiver that answers 500 while failing is set (as it
// is at first), and 204 once it is cleared.
func failingSink(t *testing.T) (*heraldtest.Receiver, *atomic.Bool) {
	failing := new(atomic.Bool)
	failing.Store(true)
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		if failing.Load() {
			return http.StatusInternalServerError, nil
		}
		return http.StatusNoContent, nil
	})
	return rcv, failing
}
