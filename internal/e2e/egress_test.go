package e2e

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// TestEgress_PrivateSinksAreRefusedUnlessAllowed: a node that does not
// allow private sinks (serve's default) refuses a sink at an internal
// address in every spelling, and a name that resolves to one, with
// INVALID_ARGUMENT naming subscription.sink and why; a range on the
// allow-list is reachable.
func TestEgress_PrivateSinksAreRefusedUnlessAllowed(t *testing.T) {
	cfg := nodeConfig(t, tempStore(t))
	cfg.AllowPrivateSinks = false
	n := startNode(t, cfg)
	for _, sink := range []string{
		"http://127.0.0.1:9/hook",
		"http://localhost:9/hook",
		"http://2130706433:9/hook",
		"http://0x7f.1:9/hook",
		"http://[::1]:9/hook",
		"http://[::ffff:127.0.0.1]:9/hook",
		"http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1/hook",
	} {
		_, err := n.subs.CreateSubscription(ctx(t), &heraldv1.CreateSubscriptionRequest{Subscription: &heraldv1.Subscription{
			Sink: sink, Protocol: "HTTP", SkipValidation: true}})
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "subscription.sink") || !strings.Contains(st.Message(), "not allowed") {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming subscription.sink and why", sink, err)
		}
	}
	list, err := n.subs.ListSubscriptions(ctx(t), &heraldv1.ListSubscriptionsRequest{})
	if err != nil || len(list.GetSubscriptions()) != 0 {
		t.Fatalf("%d subscriptions stored (%v), want none", len(list.GetSubscriptions()), err)
	}

	cfg = nodeConfig(t, tempStore(t))
	cfg.AllowPrivateSinks = false
	cfg.SinkAllowCIDRs = []string{"127.0.0.0/8"}
	allowed := startNode(t, cfg)
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, allowed, rcv.URL)
	id := publish(t, allowed, newEvent("egress-1"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, allowed, id, heraldv1.DeliveryState_DELIVERY_STATE_DELIVERED)
}
