package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/opsevents"
)

// TestOpsEvents_ADeadLetterAndADisableAreToldToWhoAsked: a subscription
// naming Herald's operational types gets a signed event for a dead
// letter and for a subscription disabled, with what happened in its
// data; a catch-all subscription gets none; publishers may not use the
// io.herald. types.
func TestOpsEvents_ADeadLetterAndADisableAreToldToWhoAsked(t *testing.T) {
	n := startNode(t, nodeConfig(t, tempStore(t)))
	failing := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) { return http.StatusBadRequest, nil })
	watcher := heraldtest.NewReceiver(t, nil)
	catchAll := heraldtest.NewReceiver(t, nil)
	sub := createSub(t, n, failing.URL)
	createSub(t, n, watcher.URL, func(s *heraldv1.Subscription) {
		s.Types = []string{opsevents.DeliveryDead, opsevents.SubscriptionDisabled}
		s.ContentMode = heraldv1.ContentMode_CONTENT_MODE_STRUCTURED
	})
	createSub(t, n, catchAll.URL, func(s *heraldv1.Subscription) { s.Types = nil })

	dlv := publish(t, n, newEvent("ops-1"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, dlv, heraldv1.DeliveryState_DELIVERY_STATE_DEAD)
	reqs := watcher.WaitFor(t, 1, wait)
	var ev struct {
		Type, Source, Subject string
		Data                  opsevents.DeliveryDeadData
	}
	if err := json.Unmarshal(reqs[0].Body, &ev); err != nil {
		t.Fatalf("%v: %s", err, reqs[0].Body)
	}
	if ev.Type != opsevents.DeliveryDead || ev.Subject != sub.GetId() || ev.Data.DeliveryID != dlv || ev.Data.LastStatus != 400 || ev.Data.EventID != "ops-1" {
		t.Errorf("the dead-letter event: %+v", ev)
	}
	if reqs[0].Header.Get("webhook-signature") == "" {
		t.Error("the operational event is not signed")
	}

	if _, err := n.subs.UpdateSubscription(ctx(t), &heraldv1.UpdateSubscriptionRequest{
		Subscription: &heraldv1.Subscription{Id: sub.GetId(), State: heraldv1.SubscriptionState_SUBSCRIPTION_STATE_DISABLED},
		UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"state"}},
	}); err != nil {
		t.Fatal(err)
	}
	reqs = watcher.WaitFor(t, 2, wait)
	if err := json.Unmarshal(reqs[1].Body, &ev); err != nil || ev.Type != opsevents.SubscriptionDisabled || ev.Subject != sub.GetId() {
		t.Errorf("the disable event: %+v (%v)", ev, err)
	}
	for _, r := range catchAll.Requests() {
		if r.Header.Get("Ce-Type") != "com.example.order.created" {
			t.Errorf("a catch-all subscription got %s", r.Header.Get("Ce-Type"))
		}
	}

	spoof := newEvent("ops-spoof")
	spoof.Type = opsevents.DeliveryDead
	_, err := n.publish.Publish(ctx(t), &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{spoof}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("publishing an io.herald. type: %v, want InvalidArgument", err)
	}
}
