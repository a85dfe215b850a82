package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/receiver"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// TestReconciler_ASubscriberThatMissedEventsCatchesUp: a subscriber whose
// endpoint refused some events (they are dead) gets exactly those from
// its Reconciler, and, with its cursor, nothing twice, across a restart
// of Herald.
func TestReconciler_ASubscriberThatMissedEventsCatchesUp(t *testing.T) {
	path := tempStore(t)
	n := startNode(t, nodeConfig(t, path))
	var mu sync.Mutex
	got := map[string]bool{} // what the webhook handler took
	rcv := heraldtest.NewReceiver(t, func(i int, r *http.Request) (int, http.Header) {
		id := r.Header.Get("Ce-Id")
		if id == "rec-1" || id == "rec-2" || id == "rec-3" {
			return http.StatusBadRequest, nil // the endpoint was broken for these
		}
		mu.Lock()
		got[id] = true
		mu.Unlock()
		return http.StatusNoContent, nil
	})
	sub := createSub(t, n, rcv.URL)
	for i := 1; i <= 5; i++ {
		id := publish(t, n, newEvent(fmt.Sprint("rec-", i)))[0].GetDeliveryIds()[0]
		want := heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED
		if i <= 3 {
			want = heraldv1.DeliveryState_DELIVERY_STATE_DEAD
		}
		waitDeliveryState(t, n, id, want)
	}

	cursor := &receiver.MemoryCursor{}
	var caught []string
	newReconciler := func(n *testNode) *receiver.Reconciler {
		r := receiver.NewReconciler(n.conn, sub.GetId(), cursor, func(_ context.Context, e event.Event) error {
			caught = append(caught, e.ID())
			return nil
		})
		r.Seen = func(_ context.Context, _, id string) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			return got[id], nil
		}
		r.PageSize = 2
		return r
	}
	r := newReconciler(n)
	// Events are listed once settled (5 s after they were stored).
	heraldtest.Eventually(t, wait, "the reconciler to catch up", func() bool {
		if _, err := r.Sync(ctx(t)); err != nil {
			t.Fatal(err)
		}
		return len(caught) >= 3
	})
	if !slices.Equal(caught, []string{"rec-1", "rec-2", "rec-3"}) {
		t.Fatalf("caught up on %v, want rec-1..3 in order", caught)
	}
	saved, _ := cursor.Load(ctx(t))
	if saved == "" {
		t.Fatal("no cursor saved")
	}

	// A restarted Herald goes on from the same cursor: nothing twice.
	n.Stop(ctx(t))
	n2 := startNode(t, nodeConfig(t, path))
	r = newReconciler(n2)
	if handed, err := r.Sync(ctx(t)); err != nil || handed != 0 {
		t.Errorf("a second pass after a restart handed %d (%v), want 0", handed, err)
	}
	resp, err := heraldv1.NewEventServiceClient(n2.conn).ListEvents(ctx(t), &heraldv1.ListEventsRequest{SubscriptionId: sub.GetId()})
	// The last events may not have settled yet: a prefix, in order.
	if err != nil || len(resp.GetEvents()) < 3 || resp.GetEvents()[0].GetEvent().GetId() != "rec-1" ||
		resp.GetEvents()[0].GetDeliveryState() != heraldv1.DeliveryState_DELIVERY_STATE_DEAD {
		t.Errorf("ListEvents from the start after a restart: %d events, %v", len(resp.GetEvents()), err)
	}
	ev, err := heraldv1.NewEventServiceClient(n2.conn).GetEvent(ctx(t), &heraldv1.GetEventRequest{Source: "/orders", Id: "rec-2"})
	if err != nil || len(ev.GetDeliveries()) != 1 || ev.GetDeliveries()[0].GetState() != heraldv1.DeliveryState_DELIVERY_STATE_DEAD {
		t.Errorf("GetEvent: %v, %v", ev, err)
	}
}
