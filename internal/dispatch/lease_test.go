package dispatch_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/dispatch"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
)

// oneAtATime is an attempter that lets one request at a time start for
// each origin, so the rest wait in memory, claimed.
func oneAtATime() *attempt.Attempter {
	return &attempt.Attempter{Sender: delivery.NewSender(),
		Scheduler: scheduler.New(scheduler.Config{OriginConcurrency: 1, MaxOriginConcurrency: 1})}
}

// hangingReceiver answers 204 once release is called (at the latest
// when the test ends); until then every request waits.
func hangingReceiver(t *testing.T) (*heraldtest.Receiver, func()) {
	ch := make(chan struct{})
	rcv := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		<-ch
		return http.StatusNoContent, nil
	})
	release := sync.OnceFunc(func() { close(ch) })
	t.Cleanup(release) // before the receiver closes
	return rcv, release
}

// TestRelease_PutsBackWhatTheNodeHeldWhenItStopped: a node started again
// with its ID finds its own claims of before it stopped claimable at
// once, long before their lease ends, and sends them; another node's
// claims stay claimed.
func TestRelease_PutsBackWhatTheNodeHeldWhenItStopped(t *testing.T) {
	rcv := heraldtest.NewReceiver(t, nil)
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	lease := time.Now().Add(time.Hour)
	put(t, s, "mine", "sub_1", store.Delivery{State: store.DeliveryInFlight, LeaseUntil: lease, Holder: "node-a"})
	put(t, s, "theirs", "sub_1", store.Delivery{State: store.DeliveryInFlight, LeaseUntil: lease, Holder: "node-b"})
	d := dispatch.New(dispatch.Config{NodeID: "node-a", PollInterval: 10 * time.Millisecond}, s, cat, newAttempter(), stuckHandoff{context.Background()})
	released := testutil.ToFloat64(metrics.ClaimsReleased)
	if n, err := d.Release(context.Background()); err != nil || n != 1 {
		t.Fatalf("Release = %d, %v; want 1 put back", n, err)
	}
	if got := testutil.ToFloat64(metrics.ClaimsReleased) - released; got != 1 {
		t.Errorf("herald_claims_released_total moved by %g, want 1", got)
	}
	run(t, d)
	got := rcv.WaitFor(t, 1, time.Minute)
	if id := got[0].Header.Get("Ce-Id"); id != "mine" {
		t.Errorf("sent %q, want the node's own delivery", id)
	}
	heraldtest.Eventually(t, time.Minute, "the node's delivery recorded", func() bool {
		return state(t, s, "dlv_mine").State == store.DeliveryDelivered
	})
	time.Sleep(100 * time.Millisecond) // a few more polls
	if n := len(rcv.Requests()); n != 1 {
		t.Errorf("%d requests: another node's claim was sent", n)
	}
	if d := state(t, s, "dlv_theirs"); d.State != store.DeliveryInFlight || d.Holder != "node-b" {
		t.Errorf("node-b's delivery is %s held by %q", d.State, d.Holder)
	}
}

// TestRenew_ClaimsWaitingInMemoryOutliveTheirFirstLease: deliveries that
// wait for their turn behind a slow request keep their claims, renewed,
// past the short lease they were claimed with: another node cannot claim
// them, and each is sent once.
func TestRenew_ClaimsWaitingInMemoryOutliveTheirFirstLease(t *testing.T) {
	rcv, release := hangingReceiver(t)
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	for i := range 3 {
		put(t, s, fmt.Sprint(i), "sub_1", store.Delivery{State: store.DeliveryPending, NextAt: time.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	const leaseRenew = 3 * time.Second
	claimedBy := time.Now().Add(leaseRenew)
	stop := run(t, dispatch.New(dispatch.Config{NodeID: "node-a", Lease: time.Minute, LeaseRenew: leaseRenew,
		RequestTimeout: 100 * time.Millisecond}, s, cat, oneAtATime(), stuckHandoff{context.Background()}))
	rcv.WaitFor(t, 1, time.Minute) // one in flight, two waiting
	time.Sleep(2 * leaseRenew)     // past the lease of the first claim
	if got, err := s.DeliveryClaim(context.Background(), store.DeliveryClaimParams{Limit: 10, Now: time.Now(),
		LeaseUntil: time.Now().Add(time.Hour), Holder: "node-b"}); err != nil || len(got) != 0 {
		t.Fatalf("node-b claimed %d deliveries (%v) that node-a holds", len(got), err)
	}
	for i := range 3 {
		if d := state(t, s, fmt.Sprintf("dlv_%d", i)); d.State != store.DeliveryInFlight || d.Holder != "node-a" || !d.LeaseUntil.After(claimedBy) {
			t.Errorf("%s is %s held by %q until %s: want node-a's claim, renewed past %s", d.ID, d.State, d.Holder, d.LeaseUntil, claimedBy)
		}
	}
	release()
	heraldtest.Eventually(t, time.Minute, "all delivered", func() bool {
		for i := range 3 {
			if state(t, s, fmt.Sprintf("dlv_%d", i)).State != store.DeliveryDelivered {
				return false
			}
		}
		return true
	})
	stop()
	if n := len(rcv.Requests()); n != 3 {
		t.Errorf("the sink got %d requests, want 3: one per delivery", n)
	}
}

// TestRenew_AClaimTakenOverIsNeitherSentNorOverwritten: when another
// node has claimed deliveries this node still waits to send (as after a
// store outage longer than the lease), the renewal finds them lost: this
// node does not send them and its put-back changes nothing of the other
// node's claim.
func TestRenew_AClaimTakenOverIsNeitherSentNorOverwritten(t *testing.T) {
	rcv, release := hangingReceiver(t)
	s, cat := newStore(t, map[string]string{"sub_1": rcv.URL})
	for i := range 3 {
		put(t, s, fmt.Sprint(i), "sub_1", store.Delivery{State: store.DeliveryPending, NextAt: time.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	const leaseRenew = 3 * time.Second
	lost, renewals := testutil.ToFloat64(metrics.ClaimsLost), testutil.ToFloat64(metrics.LeaseRenewals.WithLabelValues("ok"))
	stop := run(t, dispatch.New(dispatch.Config{NodeID: "node-a", Lease: time.Minute, LeaseRenew: leaseRenew,
		RequestTimeout: 100 * time.Millisecond}, s, cat, oneAtATime(), stuckHandoff{context.Background()}))
	first := rcv.WaitFor(t, 1, time.Minute)[0].Header.Get("Ce-Id")
	// node-b takes node-a's claims over, as if node-a's lease had run out.
	if _, err := s.DeliveryRelease(context.Background(), store.DeliveryReleaseParams{Holder: "node-a", NextAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	taken, err := s.DeliveryClaim(context.Background(), store.DeliveryClaimParams{Limit: 10, Now: time.Now(),
		LeaseUntil: time.Now().Add(time.Hour), Holder: "node-b"})
	if err != nil || len(taken) != 3 {
		t.Fatalf("node-b took %d (%v), want 3", len(taken), err)
	}
	time.Sleep(leaseRenew / 2) // a renewal or more
	release()
	heraldtest.Eventually(t, time.Minute, "the attempt in flight recorded", func() bool {
		as, err := s.AttemptList(context.Background(), "dlv_"+first)
		return err == nil && len(as) == 1
	})
	time.Sleep(500 * time.Millisecond) // node-a's turn for the others comes
	stop()
	if n := len(rcv.Requests()); n != 1 {
		t.Errorf("the sink got %d requests, want 1: the lost claims were sent", n)
	}
	if got := testutil.ToFloat64(metrics.ClaimsLost) - lost; got != 3 {
		t.Errorf("herald_claims_lost_total moved by %g, want the 3 claims taken over", got)
	}
	if testutil.ToFloat64(metrics.LeaseRenewals.WithLabelValues("ok")) == renewals {
		t.Error("herald_lease_renewals_total{result=\"ok\"} did not move")
	}
	for i := range 3 {
		if d := state(t, s, fmt.Sprintf("dlv_%d", i)); d.State != store.DeliveryInFlight || d.Holder != "node-b" {
			t.Errorf("%s is %s held by %q: node-a overwrote node-b's claim", d.ID, d.State, d.Holder)
		}
	}
	as, err := s.AttemptList(context.Background(), "dlv_"+first)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].StatusCode != http.StatusNoContent {
		t.Errorf("attempts of the request node-a sent: %+v, want it recorded", as)
	}
}
