package storetest

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

var heldTests = []test{
	{"HeldIsNeverClaimedAndListsByState", testHeldNotClaimed},
	{"UnholdReleasesOneSubscriptionInEventOrder", testUnholdOrder},
	{"PruneDeletesDeliveriesHeldPastTheCutoff", testPruneHeld},
}

// insertHeld stores one event per id, in order (so in that event order),
// each with a held delivery of sub.
func insertHeld(t testing.TB, s store.Store, sub string, created time.Time, ids ...string) {
	t.Helper()
	for _, id := range ids {
		d := newDelivery(id, sub, store.DeliveryHeld, created, created)
		insert(t, s, store.EventInsertParams{Event: newEvent("/held", sub+"/"+id, created), Deliveries: []store.Delivery{d}})
	}
}

func unhold(t testing.TB, s store.Store, sub string, next time.Time, limit int) int {
	t.Helper()
	n, err := s.DeliveryUnhold(t.Context(), store.DeliveryUnholdParams{SubscriptionID: sub, NextAt: next, Limit: limit})
	if err != nil {
		t.Fatalf("DeliveryUnhold: %v", err)
	}
	return n
}

func testHeldNotClaimed(t *testing.T, s store.Store) {
	insertHeld(t, s, "sub_1", t0, deliveryID(1), deliveryID(2))
	insertPending(t, s, 3, at(0))
	if got, want := ids(claim(t, s, 10, at(time.Hour), at(2*time.Hour))), []string{deliveryID(3)}; !equalStrings(got, want) {
		t.Errorf("claimed %v, want %v (held deliveries are not claimable)", got, want)
	}
	got := listIDs(t, s, store.DeliveryListParams{State: store.DeliveryHeld, Limit: 10})
	if want := want(2, 1); !equalStrings(got, want) {
		t.Errorf("listed held %v, want %v", got, want)
	}
}

func testUnholdOrder(t *testing.T, s store.Store) {
	// Delivery IDs run against the events' order: release follows the
	// events.
	insertHeld(t, s, "sub_a", t0, deliveryID(5), deliveryID(4), deliveryID(3), deliveryID(2), deliveryID(1))
	insertHeld(t, s, "sub_b", t0, deliveryID(9))
	if n := unhold(t, s, "sub_a", at(time.Minute), 2); n != 2 {
		t.Fatalf("first unhold released %d, want 2", n)
	}
	if n := unhold(t, s, "sub_a", at(time.Minute+2*time.Millisecond), 10); n != 3 {
		t.Fatalf("second unhold released %d, want 3", n)
	}
	if n := unhold(t, s, "sub_a", at(time.Minute), 10); n != 0 {
		t.Fatalf("third unhold released %d, want 0", n)
	}
	d := get(t, s, deliveryID(5))
	if d.State != store.DeliveryPending || !d.NextAt.Equal(at(time.Minute)) {
		t.Errorf("first released: %s next at %v, want pending at %v", d.State, d.NextAt, at(time.Minute))
	}
	got := ids(claim(t, s, 10, at(time.Hour), at(2*time.Hour)))
	if want := []string{deliveryID(5), deliveryID(4), deliveryID(3), deliveryID(2), deliveryID(1)}; !equalStrings(got, want) {
		t.Errorf("claimed %v, want %v (the events' order)", got, want)
	}
	if d := get(t, s, deliveryID(9)); d.State != store.DeliveryHeld {
		t.Errorf("another subscription's delivery is %s, want held", d.State)
	}
	if _, err := s.DeliveryUnhold(t.Context(), store.DeliveryUnholdParams{SubscriptionID: "sub_b"}); err == nil {
		t.Error("DeliveryUnhold without a Limit succeeded")
	}
}

func testPruneHeld(t *testing.T, s store.Store) {
	insertHeld(t, s, "sub_1", at(0), deliveryID(1))
	insertHeld(t, s, "sub_1", at(2*time.Hour), deliveryID(2))
	res := prune(t, s, store.PruneParams{HeldBefore: at(time.Hour), EventsBefore: at(time.Hour), Limit: 100})
	if res.Deliveries != 1 || exists(t, s, deliveryID(1)) || !exists(t, s, deliveryID(2)) {
		t.Errorf("pruned %d deliveries; want only %s gone (held before the cutoff)", res.Deliveries, deliveryID(1))
	}
	if got := prune(t, s, store.PruneParams{DeliveredBefore: at(3 * time.Hour), DeadBefore: at(3 * time.Hour), Limit: 100}); got.Deliveries != 0 {
		t.Errorf("without HeldBefore, pruned %d held deliveries", got.Deliveries)
	}
}
