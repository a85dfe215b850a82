package dispatch

import (
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// TestClaims_RenewalLossAndTheEndOfTheHold: a renewal extends the claims
// the store renewed and marks the others lost (not the node's to send);
// one let go of since the snapshot is left alone; a claim past the end
// of the node's hold is not renewed any more.
func TestClaims_RenewalLossAndTheEndOfTheHold(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cs := newClaims()
	a := &store.Delivery{ID: "a", LeaseUntil: t0.Add(30 * time.Second)}
	b := &store.Delivery{ID: "b", LeaseUntil: t0.Add(30 * time.Second)}
	c := &store.Delivery{ID: "c", LeaseUntil: t0.Add(30 * time.Second)}
	unleased := &store.Delivery{ID: "u"}
	cs.add([]*store.Delivery{a, b, c, unleased}, t0, 2*time.Minute)

	ids, cls := cs.snapshot(t0.Add(time.Second))
	// Sorted apart: ids and cls pair by index, in the map's order.
	if sorted := slices.Sorted(slices.Values(ids)); !slices.Equal(sorted, []string{"a", "b", "c"}) {
		t.Fatalf("snapshot = %v, want the leased deliveries", ids)
	}
	cs.drop("c") // its result is on its way
	until := t0.Add(45 * time.Second)
	if lost := cs.renewed(ids, cls, []string{"a"}, until); lost != 1 {
		t.Errorf("%d lost, want 1 (b)", lost)
	}
	if end, ok := cs.end([]*store.Delivery{a}); !ok || !end.Equal(until) {
		t.Errorf("a ends at %s (ok %v), want renewed to %s", end, ok, until)
	}
	if !cs.endsBefore(b, t0) || cs.holds([]*store.Delivery{a, b}, t0) {
		t.Error("b, lost, is still held")
	}
	if !cs.holds([]*store.Delivery{a, unleased}, until) || cs.holds([]*store.Delivery{a}, until.Add(time.Millisecond)) {
		t.Error("a is not held exactly until its renewed lease")
	}
	if k := cs.keepUntil([]*store.Delivery{a, b}); !k.Equal(t0.Add(2 * time.Minute)) {
		t.Errorf("keepUntil = %s, want two minutes after the claim", k)
	}
	if ids, _ := cs.snapshot(t0.Add(2 * time.Minute)); len(ids) != 0 {
		t.Errorf("renewing %v after the end of the hold", ids)
	}
	if _, ok := cs.held["a"]; ok || cs.holds([]*store.Delivery{a}, t0) {
		t.Error("a is still held after the end of the hold")
	}
}
