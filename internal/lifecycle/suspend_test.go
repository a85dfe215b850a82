package lifecycle

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// memSubs is a store of subscriptions in memory.
type memSubs struct {
	mu     sync.Mutex
	subs   map[string]*store.Subscription
	writes int
}

func (m *memSubs) SubscriptionUpdate(_ context.Context, id string, change func(*store.Subscription) error) (*store.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.subs[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	c := *s
	if err := change(&c); err != nil {
		return nil, err
	}
	m.subs[id], m.writes = &c, m.writes+1
	out := c
	return &out, nil
}

func (m *memSubs) get(id string) store.Subscription {
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.subs[id]
}

func TestHealth_SuspendsASinkFailingContinuouslyForSuspendAfter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0).UTC()
	subs := &memSubs{subs: map[string]*store.Subscription{"sub_1": {ID: "sub_1", State: store.SubscriptionActive, SuspendAfter: time.Minute}}}
	var told []string
	h := &Health{Store: subs, Suspended: func(_ context.Context, s *store.Subscription) { told = append(told, s.ID) }}
	observe := func(ok bool, at time.Duration) bool {
		t.Helper()
		sub := subs.get("sub_1") // as a fresh catalog would have it
		got, err := h.Observe(t.Context(), &sub, ok, "500", t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	observe(false, 0)
	if got := subs.get("sub_1").FailingSince; !got.Equal(t0) {
		t.Fatalf("after the first failure FailingSince = %v, want %v", got, t0)
	}
	if observe(false, 59*time.Second) {
		t.Fatal("suspended before SuspendAfter")
	}
	observe(true, 59500*time.Millisecond)
	if got := subs.get("sub_1").FailingSince; !got.IsZero() {
		t.Fatalf("after a success FailingSince = %v, want zero", got)
	}
	observe(false, 70*time.Second)
	if observe(false, 129*time.Second) {
		t.Fatal("suspended before SuspendAfter from the failure after the success")
	}
	if !observe(false, 130*time.Second) {
		t.Fatal("not suspended after failing for SuspendAfter")
	}
	got := subs.get("sub_1")
	if got.State != store.SubscriptionSuspended || !strings.Contains(got.StateReason, "500") || len(told) != 1 {
		t.Fatalf("state %s (%q), told %v; want suspended, saying the last failure, told once", got.State, got.StateReason, told)
	}
	if observe(false, 200*time.Second) || len(told) != 1 {
		t.Fatal("a suspended subscription was suspended again")
	}
}

func TestHealth_WritesOnlyWhenTheRunChangesOrOnceASecond(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0).UTC()
	subs := &memSubs{subs: map[string]*store.Subscription{"sub_1": {ID: "sub_1", State: store.SubscriptionActive}}}
	h := &Health{Store: subs}
	stale := subs.get("sub_1") // the catalog's copy, never reloaded
	for i := range 1000 {
		if _, err := h.Observe(t.Context(), &stale, false, "timeout", t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if subs.writes != 1 {
		t.Errorf("1000 failures in a second wrote the subscription %d times, want 1", subs.writes)
	}
}

func TestHealth_ASuccessOnAnotherNodeEndsTheRun(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0).UTC()
	subs := &memSubs{subs: map[string]*store.Subscription{"sub_1": {ID: "sub_1", State: store.SubscriptionActive, SuspendAfter: time.Minute}}}
	a, b := &Health{Store: subs}, &Health{Store: subs}
	sub := subs.get("sub_1")
	if _, err := a.Observe(t.Context(), &sub, false, "500", t0); err != nil {
		t.Fatal(err)
	}
	sub = subs.get("sub_1")
	if _, err := b.Observe(t.Context(), &sub, true, "", t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	sub = subs.get("sub_1")
	suspended, err := a.Observe(t.Context(), &sub, false, "500", t0.Add(2*time.Minute))
	if err != nil || suspended {
		t.Fatalf("Observe = %v, %v; want not suspended: the run began again after the other node's success", suspended, err)
	}
}

// memHeld releases held deliveries in memory.
type memHeld struct{ held, calls int }

func (m *memHeld) DeliveryUnhold(_ context.Context, p store.DeliveryUnholdParams) (int, error) {
	m.calls++
	n := min(m.held, p.Limit)
	m.held -= n
	return n, nil
}

func TestReleased_ReleasesEveryHeldDeliveryInBatches(t *testing.T) {
	m := &memHeld{held: 2*releaseBatch + 3}
	n, err := Released(t.Context(), m, "sub_1", time.Now())
	if err != nil || n != 2*releaseBatch+3 || m.held != 0 || m.calls != 3 {
		t.Fatalf("Released = %d, %v after %d calls, %d left; want all in 3 calls", n, err, m.calls, m.held)
	}
}
