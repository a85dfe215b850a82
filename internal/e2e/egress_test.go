package e2e

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
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

// TestEgress_TheDialedAddressIsCheckedAtSendTime: a subscription stored
// while private sinks were allowed (or whose name has since come to
// resolve to a private address) is refused when the delivery dials: the
// attempt fails permanently, says why, and nothing reaches the address.
func TestEgress_TheDialedAddressIsCheckedAtSendTime(t *testing.T) {
	path := tempStore(t)
	rcv := heraldtest.NewReceiver(t, nil)
	open := startNode(t, nodeConfig(t, path)) // private sinks allowed, as in dev
	createSub(t, open, strings.Replace(rcv.URL, "127.0.0.1", "localhost", 1))
	open.Stop(ctx(t))

	cfg := nodeConfig(t, path)
	cfg.AllowPrivateSinks = false
	guarded := startNode(t, cfg)
	id := publish(t, guarded, newEvent("rebound-1"))[0].GetDeliveryIds()[0]
	waitDeliveryState(t, guarded, id, heraldv1.DeliveryState_DELIVERY_STATE_DEAD)
	as, err := guarded.deliveries.ListAttempts(ctx(t), &heraldv1.ListAttemptsRequest{DeliveryId: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(as.GetAttempts()) != 1 || !strings.Contains(as.GetAttempts()[0].GetError(), "not allowed") {
		t.Errorf("attempts %v, want one that says the address is not allowed", as.GetAttempts())
	}
	if n := len(rcv.Requests()); n != 0 {
		t.Errorf("the private address got %d requests", n)
	}
}

// TestEgress_RedirectsAreNeverFollowed: a sink on the allow-list that
// redirects to a loopback address outside it gets its 3xx recorded as a
// permanent failure, and the redirect's target is never contacted.
func TestEgress_RedirectsAreNeverFollowed(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 is not available: %v", err)
	}
	var contacted atomic.Int32
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			contacted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { target.Close() })
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		return http.StatusTemporaryRedirect, http.Header{"Location": {"http://" + target.Addr().String() + "/internal"}}
	})
	cfg := nodeConfig(t, tempStore(t))
	cfg.AllowPrivateSinks = false
	cfg.SinkAllowCIDRs = []string{"127.0.0.1/32"}
	n := startNode(t, cfg)
	createSub(t, n, rcv.URL)
	id := publish(t, n, newEvent("redirect-1"))[0].GetDeliveryIds()[0]
	d := waitDeliveryState(t, n, id, heraldv1.DeliveryState_DELIVERY_STATE_DEAD)
	if d.GetLastStatusCode() != http.StatusTemporaryRedirect {
		t.Errorf("last status %d, want 307", d.GetLastStatusCode())
	}
	if c := contacted.Load(); c != 0 {
		t.Errorf("the redirect's target was contacted %d times", c)
	}
}
