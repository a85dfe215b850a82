package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/opsevents"
)

// requestEventIDs returns the ids of the events in a webhook request:
// one in binary mode, the batch's in batched mode.
func requestEventIDs(t *testing.T, r heraldtest.Request) []string {
	t.Helper()
	if id := r.Header.Get("Ce-Id"); id != "" {
		return []string{id}
	}
	var batch []struct{ ID string }
	if err := json.Unmarshal(r.Body, &batch); err != nil {
		t.Fatalf("a request with neither ce-id nor a batch: %v: %s", err, r.Body)
	}
	ids := make([]string, len(batch))
	for i, e := range batch {
		ids[i] = e.ID
	}
	return ids
}

// setState makes a subscription ACTIVE (herald subscriptions enable) or
// DISABLED.
func setState(t *testing.T, n *testNode, id string, st heraldv1.SubscriptionState) *heraldv1.Subscription {
	t.Helper()
	sub, err := n.subs.UpdateSubscription(ctx(t), &heraldv1.UpdateSubscriptionRequest{
		Subscription: &heraldv1.Subscription{Id: id, State: st},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"state"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestSuspension_HoldsEventsAndEnableDeliversThemInPublishOrder: a sink
// that fails every attempt for its subscription's suspend_after gets the
// subscription SUSPENDED, with the reason, and a subscriber of
// io.herald.subscription.suspended is told; the delivery being retried is
// held by its workflow's next attempt; events published meanwhile are
// stored held and not sent; enabling the subscription delivers them all,
// in publish order.
func TestSuspension_HoldsEventsAndEnableDeliversThemInPublishOrder(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv, failing := failingSink(t)
	watcher := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) {
		s.SuspendAfter = durationpb.New(2 * time.Second)
		s.RetryPolicy.MaximumAttempts = 100
		// The held events go out together once released, in one request
		// whose batch is in the order they were claimed.
		s.ContentMode = heraldv1.ContentMode_CONTENT_MODE_BATCHED
	})
	createSub(t, n, watcher.URL, func(s *heraldv1.Subscription) {
		s.Types = []string{opsevents.SubscriptionSuspended}
		s.ContentMode = heraldv1.ContentMode_CONTENT_MODE_STRUCTURED
	})

	first := publish(t, n, newEvent("sus-0"))[0].GetDeliveryIds()[0]
	got := waitSubscriptionState(t, n, sub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_SUSPENDED)
	if !strings.Contains(got.GetStateReason(), "500") || got.GetFailingSince() == nil {
		t.Errorf("suspended with reason %q, failing since %v; want the last failure named and the run's start", got.GetStateReason(), got.GetFailingSince())
	}
	reqs := watcher.WaitFor(t, 1, wait)
	var ev struct {
		Type, Subject string
		Data          opsevents.SubscriptionData
	}
	if err := json.Unmarshal(reqs[0].Body, &ev); err != nil {
		t.Fatalf("%v: %s", err, reqs[0].Body)
	}
	if ev.Type != opsevents.SubscriptionSuspended || ev.Subject != sub.GetId() || ev.Data.State != "suspended" || ev.Data.Reason == "" {
		t.Errorf("the suspension event: %+v", ev)
	}

	// The retrying delivery is held, and its workflow has ended.
	waitDeliveryState(t, n, first, heraldv1.DeliveryState_DELIVERY_STATE_HELD)
	sent := len(rcv.Requests())
	want := []string{"sus-0"}
	var held []string
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("sus-%d", i)
		want = append(want, id)
		held = append(held, publish(t, n, newEvent(id))[0].GetDeliveryIds()...)
	}
	if len(held) != 5 {
		t.Fatalf("events published while suspended made %d deliveries, want 5", len(held))
	}
	for _, id := range held {
		waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_HELD)
	}
	list, err := n.deliveries.ListDeliveries(ctx(t), &heraldv1.ListDeliveriesRequest{
		SubscriptionId: sub.GetId(), State: heraldv1.DeliveryState_DELIVERY_STATE_HELD})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetDeliveries()) != 6 {
		t.Errorf("ListDeliveries(state HELD) = %d deliveries, want 6", len(list.GetDeliveries()))
	}
	if now := len(rcv.Requests()); now != sent {
		t.Errorf("the sink got %d requests while the subscription was suspended", now-sent)
	}

	failing.Store(false)
	if s := setState(t, n, sub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE); s.GetState() != heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE || s.GetFailingSince() != nil {
		t.Errorf("enabled: state %s, failing since %v; want ACTIVE and no failure run", s.GetState(), s.GetFailingSince())
	}
	for _, id := range append([]string{first}, held...) {
		waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
	var order []string
	for _, r := range rcv.Requests()[sent:] {
		order = append(order, requestEventIDs(t, r)...)
	}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("after enable the sink got %v, want %v (publish order)", order, want)
	}
}

// TestSuspension_GoneDisablesAndHoldsUntilEnabled: a 410 Gone disables
// the subscription; the delivery that got it and the events published
// while disabled are held, not sent, and delivered once it is enabled.
func TestSuspension_GoneDisablesAndHoldsUntilEnabled(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, failFirst(1, http.StatusGone, nil))
	sub := createSub(t, n, rcv.URL)
	gone := publish(t, n, newEvent("evt-gone"))[0].GetDeliveryIds()[0]
	s := waitSubscriptionState(t, n, sub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_DISABLED)
	if !strings.Contains(s.GetStateReason(), "410") {
		t.Errorf("disabled with reason %q, want the 410 named", s.GetStateReason())
	}
	waitDeliveryState(t, n, gone, heraldv1.DeliveryState_DELIVERY_STATE_HELD)
	after := publish(t, n, newEvent("evt-after-gone"))[0].GetDeliveryIds()
	if len(after) != 1 {
		t.Fatalf("an event published while disabled made deliveries %v, want one, held", after)
	}
	waitDeliveryState(t, n, after[0], heraldv1.DeliveryState_DELIVERY_STATE_HELD)
	if got := len(rcv.Requests()); got != 1 {
		t.Errorf("receiver got %d requests while disabled, want 1 (the 410)", got)
	}

	setState(t, n, sub.GetId(), heraldv1.SubscriptionState_SUBSCRIPTION_STATE_ACTIVE)
	waitDeliveryState(t, n, gone, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	waitDeliveryState(t, n, after[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	var ids []string
	for _, r := range rcv.Requests()[1:] {
		ids = append(ids, requestEventIDs(t, r)...)
	}
	if len(ids) != 2 {
		t.Errorf("after enable the sink got %v, want evt-gone and evt-after-gone once each", ids)
	}
}

// TestSuspension_OnlyHeraldSuspendsAndSuspendAfterIsChecked: the API
// refuses SUSPENDED as a state to set and a suspend_after under a second;
// a subscription shows the suspend_after it was given.
func TestSuspension_OnlyHeraldSuspendsAndSuspendAfterIsChecked(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	rcv := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, rcv.URL, func(s *heraldv1.Subscription) { s.SuspendAfter = durationpb.New(6 * time.Hour) })
	if got := sub.GetSuspendAfter().AsDuration(); got != 6*time.Hour {
		t.Errorf("suspend_after = %s, want 6h", got)
	}
	_, err := n.subs.UpdateSubscription(ctx(t), &heraldv1.UpdateSubscriptionRequest{
		Subscription: &heraldv1.Subscription{Id: sub.GetId(), State: heraldv1.SubscriptionState_SUBSCRIPTION_STATE_SUSPENDED},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"state"}},
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("setting SUSPENDED: %v, want InvalidArgument", err)
	}
	_, err = n.subs.UpdateSubscription(ctx(t), &heraldv1.UpdateSubscriptionRequest{
		Subscription: &heraldv1.Subscription{Id: sub.GetId(), SuspendAfter: durationpb.New(time.Millisecond)},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"suspend_after"}},
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("suspend_after 1ms: %v, want InvalidArgument", err)
	}
}
