package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// holderTests are the behaviours of a claim's holder: the node that made
// it renews it while it works on the delivery, puts it back when it
// starts again, and writes results only while its claim stands.
var holderTests = []test{
	{"ClaimAndInsertRecordTheHolder", testHolderRecorded},
	{"RenewExtendsOnlyTheHoldersInFlightClaims", testRenewOnlyHolders},
	{"RenewedLeaseIsNotClaimableUntilItEnds", testRenewedNotClaimable},
	{"ReleasePutsBackOnlyTheHoldersInFlightClaims", testReleaseOnlyHolders},
	{"ExpectHolderSkipsAnUpdateFromAClaimTakenOver", testUpdateExpectHolder},
	{"LeavingInFlightClearsTheHolder", testUpdateClearsHolder},
}

func claimAs(t testing.TB, s store.Store, holder string, limit int, now, lease time.Time) []*store.Delivery {
	t.Helper()
	ds, err := s.DeliveryClaim(t.Context(), store.DeliveryClaimParams{Limit: limit, Now: now, LeaseUntil: lease, Holder: holder})
	if err != nil {
		t.Fatalf("DeliveryClaim: %v", err)
	}
	return ds
}

func renew(t testing.TB, s store.Store, holder string, until time.Time, ids ...string) []string {
	t.Helper()
	got, err := s.DeliveryRenew(t.Context(), store.DeliveryRenewParams{Holder: holder, IDs: ids, Until: until})
	if err != nil {
		t.Fatalf("DeliveryRenew: %v", err)
	}
	slices.Sort(got)
	return got
}

// testHolderRecorded: a claim stores its holder, and so does a delivery
// a publisher stores already claimed; both read back with it.
func testHolderRecorded(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0))
	e := newEvent("/orders", "fresh", at(0))
	fresh := newDelivery("dlv_fresh", "sub_1", store.DeliveryInFlight, at(0), e.CreatedAt)
	fresh.LeaseUntil, fresh.Holder = at(time.Minute), "node-b"
	insert(t, s, store.EventInsertParams{Event: e, Deliveries: []store.Delivery{fresh}})

	got := claimAs(t, s, "node-a", 10, at(time.Second), at(time.Minute))
	if len(got) != 1 || got[0].Holder != "node-a" {
		t.Fatalf("claimed %v, want %s held by node-a", got, deliveryID(1))
	}
	for id, want := range map[string]string{deliveryID(1): "node-a", "dlv_fresh": "node-b"} {
		if h := get(t, s, id).Holder; h != want {
			t.Errorf("%s is held by %q, want %q", id, h, want)
		}
	}
}

// testRenewOnlyHolders: a renewal extends the holder's claims that are
// still in flight, and reports only those: not another node's claim, not
// a delivery recorded since, not one another node took over after the
// holder's lease ran out, and not a delivery that does not exist.
func testRenewOnlyHolders(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0), at(time.Millisecond), at(2*time.Millisecond), at(3*time.Millisecond))
	// 1, 2 and 4 are node-a's, 3 is node-b's.
	claimAs(t, s, "node-a", 2, at(time.Second), at(time.Minute))
	claimAs(t, s, "node-b", 1, at(time.Second), at(time.Hour))
	claimAs(t, s, "node-a", 1, at(time.Second), at(time.Minute))
	// node-a's 2 is recorded; its 4's lease runs out and node-b takes it.
	update(t, s, store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200,
		ExpectState: store.DeliveryInFlight, ExpectHolder: "node-a"})
	renew(t, s, "node-a", at(2*time.Minute), deliveryID(1)) // 1 lives on; 4 is not renewed
	if got := claimAs(t, s, "node-b", 10, at(time.Minute), at(3*time.Minute)); len(got) != 1 || got[0].ID != deliveryID(4) {
		t.Fatalf("node-b's claim after node-a's lease of %s ended took %v", deliveryID(4), ids(got))
	}

	until := at(5 * time.Minute)
	got := renew(t, s, "node-a", until, deliveryID(1), deliveryID(2), deliveryID(3), deliveryID(4), "dlv_missing")
	if want := []string{deliveryID(1)}; !equalStrings(got, want) {
		t.Errorf("node-a renewed %v, want %v", got, want)
	}
	for id, want := range map[string]struct {
		lease  time.Time
		holder string
	}{
		deliveryID(1): {until, "node-a"},
		deliveryID(3): {at(time.Hour), "node-b"},
		deliveryID(4): {at(3 * time.Minute), "node-b"},
	} {
		if d := get(t, s, id); !d.LeaseUntil.Equal(want.lease) || d.Holder != want.holder || d.State != store.DeliveryInFlight {
			t.Errorf("%s is %s held by %q until %v, want in_flight held by %q until %v", id, d.State, d.Holder, d.LeaseUntil, want.holder, want.lease)
		}
	}
	if d := get(t, s, deliveryID(2)); d.State != store.DeliveryDelivered || !d.LeaseUntil.IsZero() {
		t.Errorf("%s is %s until %v after a renewal, want delivered with no lease", d.ID, d.State, d.LeaseUntil)
	}
	if got := renew(t, s, "node-a", until); len(got) != 0 {
		t.Errorf("a renewal of nothing renewed %v", got)
	}
}

// testRenewedNotClaimable: once renewed, a claim is not claimable after
// its first lease would have ended, only after the renewed one.
func testRenewedNotClaimable(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0))
	claimAs(t, s, "node-a", 10, at(0), at(30*time.Second))
	renew(t, s, "node-a", at(time.Minute), deliveryID(1))
	if got := claimAs(t, s, "node-b", 10, at(45*time.Second), at(2*time.Minute)); len(got) != 0 {
		t.Errorf("node-b claimed %v under a renewed lease", ids(got))
	}
	if got := claimAs(t, s, "node-b", 10, at(time.Minute), at(2*time.Minute)); len(got) != 1 {
		t.Errorf("node-b claimed %v after the renewed lease, want %s", ids(got), deliveryID(1))
	}
}

// testReleaseOnlyHolders: a node starting again puts back its own
// in-flight claims (pending, claimable at NextAt, no attempt spent, no
// lease or holder left), and nothing else: not another node's claims,
// not its deliveries in other states.
func testReleaseOnlyHolders(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0), at(time.Millisecond), at(2*time.Millisecond), at(3*time.Millisecond), at(4*time.Millisecond))
	claimAs(t, s, "node-a", 2, at(time.Second), at(time.Hour)) // 1, 2
	claimAs(t, s, "node-b", 1, at(time.Second), at(time.Hour)) // 3
	claimAs(t, s, "node-a", 1, at(time.Second), at(time.Hour)) // 4, recorded below
	update(t, s, store.DeliveryUpdate{ID: deliveryID(4), State: store.DeliveryRetrying, Attempts: 1, LastStatus: 500,
		ExpectState: store.DeliveryInFlight, ExpectHolder: "node-a"})
	update(t, s, store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryInFlight, Attempts: 1, LastStatus: 503, LastError: "HTTP 503",
		ExpectState: store.DeliveryInFlight, ExpectHolder: "node-a"}) // kept in flight, its attempt counted

	next := at(time.Minute)
	n, err := s.DeliveryRelease(t.Context(), store.DeliveryReleaseParams{Holder: "node-a", NextAt: next})
	if err != nil {
		t.Fatalf("DeliveryRelease: %v", err)
	}
	if n != 2 {
		t.Errorf("released %d deliveries, want 2", n)
	}
	for id, attempts := range map[string]int{deliveryID(1): 0, deliveryID(2): 1} {
		d := get(t, s, id)
		if d.State != store.DeliveryPending || !d.NextAt.Equal(next) || !d.LeaseUntil.IsZero() || d.Holder != "" || d.Attempts != attempts {
			t.Errorf("%s is %s next %v lease %v holder %q attempts %d; want pending at %v, no lease or holder, attempts %d",
				id, d.State, d.NextAt, d.LeaseUntil, d.Holder, d.Attempts, next, attempts)
		}
	}
	if d := get(t, s, deliveryID(3)); d.State != store.DeliveryInFlight || d.Holder != "node-b" {
		t.Errorf("node-b's %s is %s held by %q after node-a's release", d.ID, d.State, d.Holder)
	}
	if d := get(t, s, deliveryID(4)); d.State != store.DeliveryRetrying {
		t.Errorf("%s is %s after the release, want retrying", d.ID, d.State)
	}
	if got := claimAs(t, s, "node-a", 10, next.Add(-time.Millisecond), at(time.Hour)); len(got) != 1 || got[0].ID != deliveryID(5) {
		t.Errorf("claimed %v before NextAt, want only %s, never released", ids(got), deliveryID(5))
	}
	if got := ids(claimAs(t, s, "node-a", 10, next, at(time.Hour))); !equalStrings(got, []string{deliveryID(1), deliveryID(2)}) {
		t.Errorf("claimed %v at NextAt, want the two released", got)
	}
	if n, err := s.DeliveryRelease(t.Context(), store.DeliveryReleaseParams{Holder: "node-c", NextAt: next}); err != nil || n != 0 {
		t.Errorf("a release by a node holding nothing: %d, %v", n, err)
	}
}

// testUpdateExpectHolder: after a node's lease ran out and another node
// claimed the delivery, the first node's late results change nothing
// (their attempts are still recorded), while the new holder's apply.
// Both the single and the repeated-delivery forms of a batch are checked.
func testUpdateExpectHolder(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0), at(time.Millisecond))
	claimAs(t, s, "node-a", 10, at(time.Second), at(time.Minute))
	claimAs(t, s, "node-b", 10, at(time.Minute), at(2*time.Minute)) // both taken over
	late := store.Attempt{Number: 1, StartedAt: at(50 * time.Second), StatusCode: 503, Error: "HTTP 503"}
	update(t, s,
		store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryPending, NextAt: at(time.Hour), Attempts: 1, LastStatus: 503,
			ExpectState: store.DeliveryInFlight, ExpectHolder: "node-a", Attempt: &late},
		store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryDead, LastError: "gone",
			ExpectState: store.DeliveryInFlight, ExpectHolder: "node-a"},
	)
	// The same again in a batch that names a delivery twice.
	update(t, s,
		store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryPending, NextAt: at(time.Hour),
			ExpectState: store.DeliveryInFlight, ExpectHolder: "node-a"},
		store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryDead, LastError: "gone",
			ExpectState: store.DeliveryInFlight, ExpectHolder: "node-a"},
	)
	for _, id := range []string{deliveryID(1), deliveryID(2)} {
		if d := get(t, s, id); d.State != store.DeliveryInFlight || d.Holder != "node-b" || d.Attempts != 0 {
			t.Errorf("%s is %s held by %q, attempts %d; want node-b's claim untouched", id, d.State, d.Holder, d.Attempts)
		}
	}
	as, err := s.AttemptList(t.Context(), deliveryID(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].StatusCode != 503 {
		t.Errorf("attempts = %+v, want node-a's late attempt recorded", as)
	}
	update(t, s, store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200,
		ExpectState: store.DeliveryInFlight, ExpectHolder: "node-b"})
	if d := get(t, s, deliveryID(1)); d.State != store.DeliveryDelivered {
		t.Errorf("the holder's own result left %s %s, want delivered", d.ID, d.State)
	}
}

// testUpdateClearsHolder: a delivery that leaves in_flight has no holder;
// one kept in flight keeps its holder and lease.
func testUpdateClearsHolder(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0), at(time.Millisecond))
	claimAs(t, s, "node-a", 10, at(time.Second), at(time.Minute))
	update(t, s,
		store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryRetrying, Attempts: 1, LastStatus: 500},
		store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryInFlight, Attempts: 1, LastStatus: 500},
	)
	if d := get(t, s, deliveryID(1)); d.Holder != "" || !d.LeaseUntil.IsZero() {
		t.Errorf("%s left in_flight held by %q until %v, want neither", d.ID, d.Holder, d.LeaseUntil)
	}
	if d := get(t, s, deliveryID(2)); d.Holder != "node-a" || !d.LeaseUntil.Equal(at(time.Minute)) {
		t.Errorf("%s kept in flight is held by %q until %v, want node-a's lease", d.ID, d.Holder, d.LeaseUntil)
	}
}
