package e2e

import (
	"context"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// TestErase_RemovesAnEventsDataAndKeepsItsDedupe: erasing a delivered
// event removes its payload and its attempts with the bodies they kept;
// it still deduplicates; an event still being retried is refused.
func TestErase_RemovesAnEventsOrASubjectsDataAndKeepsTheirDedupe(t *testing.T) {
	path := tempStore(t)
	n := startNode(t, nodeConfig(t, path))
	rcv := heraldtest.NewReceiver(t, func(_ int, r *http.Request) (int, http.Header) {
		if r.Header.Get("Ce-Id") == "erase-retrying" {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	createSub(t, n, rcv.URL)
	e := newEvent("erase-1")
	e.Data = &cloudeventsv1.CloudEvent_TextData{TextData: `{"email":"alice@example.com"}`}
	id := publish(t, n, e)[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	retrying := publish(t, n, newEvent("erase-retrying"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, n, retrying, heraldv1.DeliveryState_DELIVERY_STATE_RETRYING)

	events := heraldv1.NewEventServiceClient(n.conn)
	if _, err := events.EraseEvent(ctx(t), &heraldv1.EraseEventRequest{Source: "/orders", Id: "erase-1"}); err != nil {
		t.Fatal(err)
	}
	as, err := n.deliveries.ListAttempts(ctx(t), &heraldv1.ListAttemptsRequest{DeliveryId: id})
	if err != nil || len(as.GetAttempts()) != 0 {
		t.Errorf("attempts after erasure: %v, %v; want none", as.GetAttempts(), err)
	}
	d, err := n.deliveries.GetDelivery(ctx(t), &heraldv1.GetDeliveryRequest{Id: id})
	if err != nil || d.GetState() != heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED {
		t.Errorf("the delivery after erasure: %v, %v; want it kept, delivered", d, err)
	}
	s, err := app.OpenStore(context.Background(), n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.DeliveryGet(context.Background(), id)
	s.Close()
	if err != nil || len(stored.EventPayload) != 0 {
		t.Errorf("the stored event after erasure: %d bytes (%v), want none", len(stored.EventPayload), err)
	}
	if r := publish(t, n, e)[0]; r.GetStatus() != heraldv1.PublishStatus_PUBLISH_STATUS_DUPLICATE {
		t.Errorf("published again after erasure: %s, want a duplicate", r.GetStatus())
	}

	_, err = events.EraseEvent(ctx(t), &heraldv1.EraseEventRequest{Source: "/orders", Id: "erase-retrying"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("erasing an event being retried: %v, want FailedPrecondition", err)
	}
	_, err = events.EraseEvent(ctx(t), &heraldv1.EraseEventRequest{Source: "/orders", Id: "no-such-event"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("erasing no event: %v, want NotFound", err)
	}

	// By subject: the finished events about one subject, and no others.
	about := func(id, subject string) string {
		e := newEvent(id)
		e.Attributes["subject"] = str(subject)
		d := publish(t, n, e)[0].GetDeliveryIds()[0]
		waitDeliveryState(t, n, d, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
		return d
	}
	a, b, other := about("cust-a", "customer-42"), about("cust-b", "customer-42"), about("cust-c", "customer-7")
	r, err := events.EraseSubject(ctx(t), &heraldv1.EraseSubjectRequest{Subject: "customer-42"})
	if err != nil || r.GetErased() != 2 || r.GetInProgress() != 0 {
		t.Errorf("EraseSubject(customer-42) = %v, %v; want 2 erased", r, err)
	}
	if s, err = app.OpenStore(context.Background(), n.cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for d, erased := range map[string]bool{a: true, b: true, other: false} {
		stored, err := s.DeliveryGet(context.Background(), d)
		if err != nil || (len(stored.EventPayload) == 0) != erased {
			t.Errorf("delivery %s's event: %d bytes (%v); want erased %v", d, len(stored.EventPayload), err, erased)
		}
	}
	// erase-1 is erased already and erase-retrying is being retried.
	r, err = events.EraseSubject(ctx(t), &heraldv1.EraseSubjectRequest{Subject: e.GetAttributes()["subject"].GetCeString()})
	if err != nil || r.GetErased() != 0 || r.GetInProgress() != 1 {
		t.Errorf("EraseSubject(the retried event's subject) = %v, %v; want 0 erased, 1 in progress", r, err)
	}
	if _, err := events.EraseSubject(ctx(t), &heraldv1.EraseSubjectRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("EraseSubject without a subject: %v, want InvalidArgument", err)
	}
}
