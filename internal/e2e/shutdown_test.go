package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/store"
)

// TestStop_PutsBackWhatWaitsAndLosesNothing: a node stopping while a sink
// hangs finishes its requests in flight (bounded by their timeout), puts
// back the deliveries still waiting for their turn at once (pending, for
// any node, not left to their lease), and a node started on the same data
// delivers every one of them.
func TestStop_PutsBackWhatWaitsAndLosesNothing(t *testing.T) {
	path := tempStore(t)
	hang := make(chan struct{})
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		<-hang
		return http.StatusNoContent, nil
	})
	cfg := nodeConfig(t, path)
	grpcLn, httpLn, err := app.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx0, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node, err := app.Start(ctx0, cfg, grpcLn, httpLn, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{Node: node, cfg: cfg}
	n.connect(t, node.GRPCAddr())
	createSub(t, n, rcv.URL)
	var events []*cloudeventsv1.CloudEvent
	for i := range 20 {
		events = append(events, newEvent(fmt.Sprintf("stop-%d", i)))
	}
	res := publish(t, n, events...)
	held := rcv.WaitFor(t, 1, wait) // the origin's first requests hang; the rest wait their turn
	stopped := make(chan struct{})
	go func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		node.Stop(stopCtx)
		close(stopped)
	}()
	time.Sleep(200 * time.Millisecond)
	close(hang) // the requests in flight end; Stop can finish
	<-stopped

	s, err := app.OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pending, delivered := 0, 0
	for _, r := range res {
		d, err := s.DeliveryGet(context.Background(), r.GetDeliveryIds()[0])
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case d.State == store.DeliveryDelivered:
			delivered++
		case d.State == store.DeliveryPending && !d.NextAt.After(time.Now()):
			pending++
		default:
			t.Errorf("%s is %s (lease until %s): neither delivered nor put back", d.ID, d.State, d.LeaseUntil)
		}
	}
	s.Close()
	if delivered < len(held) || pending == 0 {
		t.Errorf("%d delivered, %d put back, %d were in flight", delivered, pending, len(held))
	}

	// A node on the same data delivers the rest.
	n2 := startNode(t, nodeConfig(t, path))
	for _, r := range res {
		waitDeliveryState(t, n2, r.GetDeliveryIds()[0], heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
	}
}
