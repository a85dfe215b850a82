package attempt

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/clusterlimit"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

// TestDo_A429PausesTheOriginForOtherSubscriptionsUnlessTheyPauseAlone:
// one subscription's 429 with Retry-After pauses every subscription on
// the sink's origin, on every node sharing the store; a subscription
// with SubscriptionPauseOnly is neither held by it nor pauses others.
func TestDo_A429PausesTheOriginForOtherSubscriptionsUnlessTheyPauseAlone(t *testing.T) {
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rcv := heraldtest.NewReceiver(t, func(n int, r *http.Request) (int, http.Header) {
		if strings.HasSuffix(r.URL.Path, "/busy") {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"30"}}
		}
		return http.StatusNoContent, nil
	})
	node := func() *Attempter {
		c := clusterlimit.New(s, clusterlimit.Config{})
		return &Attempter{Sender: delivery.NewSender(), Scheduler: scheduler.New(scheduler.Config{Tokens: c}), Cluster: c}
	}
	a, b := node(), node()
	sub := func(id, path string, alone bool) *catalog.Entry {
		en := entry(t, rcv.URL+path, policy.ContentBinary)
		en.Subscription.ID, en.Subscription.SubscriptionPauseOnly = id, alone
		return en
	}
	busy, other, lone := sub("sub_busy", "/busy", false), sub("sub_other", "/other", false), sub("sub_lone", "/lone", true)
	res, err := a.Do(context.Background(), []*store.Delivery{stored(t, "1")}, nil, busy, 1, noDeadline)
	if err != nil || !res[0].PauseSink {
		t.Fatalf("the busy sink's answer: %+v, %v; want a pause", res, err)
	}
	if until := a.PausedUntil(other); until.IsZero() {
		t.Fatal("the answered node does not hold another subscription on the origin")
	}
	if err := b.Cluster.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if until := b.PausedUntil(other); until.IsZero() {
		t.Fatal("the other node does not hold another subscription on the origin")
	}
	if _, err := b.Do(context.Background(), []*store.Delivery{stored(t, "2")}, nil, other, 1, noDeadline); err == nil {
		t.Fatal("the other node sent to the paused origin")
	}
	if until := b.PausedUntil(lone); !until.IsZero() {
		t.Fatalf("a subscription that pauses alone is held until %v", until)
	}
	if res, err := b.Do(context.Background(), []*store.Delivery{stored(t, "3")}, nil, lone, 1, noDeadline); err != nil || res[0].Outcome != policy.Delivered {
		t.Fatalf("a subscription that pauses alone: %+v, %v; want delivered", res, err)
	}
	if n := len(rcv.Requests()); n != 2 {
		t.Errorf("the sink got %d requests, want 2 (the 429 and the lone subscription's)", n)
	}
}
