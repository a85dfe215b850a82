// Package storetest is the behaviour suite every store driver must pass.
//
// A driver's tests call Run with a function that opens a new, empty store
// and arranges (with t.Cleanup) for it to be closed; its benchmarks call
// Bench the same way. The suite only uses times truncated to the
// millisecond, the precision every driver must keep.
package storetest

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// Run runs the behaviour suite against the stores open returns, one new
// store per subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
	}{
		{"Subscription", subscriptionTests},
		{"EventInsertBatch", eventTests},
		{"DeliveryClaim", claimTests},
		{"DeliveryUpdateBatch", updateTests},
		{"DeliveryHolder", holderTests},
		{"DeliveryRead", readTests},
		{"APIKey", apiKeyTests},
		{"Prune", pruneTests},
		{"EventList", eventListTests},
		{"DeliverySearch", searchTests},
		{"Limits", limitTests},
		{"Held", heldTests},
	}
	for _, g := range groups {
		for _, tc := range g.tests {
			t.Run(g.name+"/"+tc.name, func(t *testing.T) {
				tc.run(t, open(t))
			})
		}
	}
}

// test is one behaviour, named for what it asserts.
type test struct {
	name string
	run  func(t *testing.T, s store.Store)
}

// t0 is the suite's reference time; every time it stores derives from it.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 8_000_000, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// deliveryID returns an ID that sorts by n, so tests control "newest".
func deliveryID(n int) string { return fmt.Sprintf("dlv_%06d", n) }

// newEvent returns an event with a payload that names it.
func newEvent(source, id string, created time.Time) store.Event {
	return store.Event{
		Source:    source,
		ID:        id,
		Type:      "com.example.thing.happened",
		Payload:   []byte("payload of " + source + "/" + id),
		CreatedAt: created,
	}
}

// newDelivery returns a delivery ready for EventInsertParams.
func newDelivery(id, subscription string, state store.DeliveryState, nextAt, created time.Time) store.Delivery {
	return store.Delivery{
		ID:             id,
		SubscriptionID: subscription,
		State:          state,
		NextAt:         nextAt,
		CreatedAt:      created,
	}
}

// insert stores params and fails the test on error.
func insert(t testing.TB, s store.Store, params ...store.EventInsertParams) []store.EventInsertResult {
	t.Helper()
	res, err := s.EventInsertBatch(t.Context(), params)
	if err != nil {
		t.Fatalf("EventInsertBatch: %v", err)
	}
	if len(res) != len(params) {
		t.Fatalf("EventInsertBatch returned %d results for %d events", len(res), len(params))
	}
	return res
}

// insertPending stores one event per delivery, each pending with the given
// NextAt, and returns the delivery IDs.
func insertPending(t testing.TB, s store.Store, firstID int, nextAts ...time.Time) []string {
	t.Helper()
	var params []store.EventInsertParams
	var ids []string
	for i, next := range nextAts {
		n := firstID + i
		ids = append(ids, deliveryID(n))
		params = append(params, store.EventInsertParams{
			Event:      newEvent("/pending", fmt.Sprint(n), t0),
			Deliveries: []store.Delivery{newDelivery(deliveryID(n), "sub_1", store.DeliveryPending, next, t0)},
		})
	}
	insert(t, s, params...)
	return ids
}

func claim(t testing.TB, s store.Store, limit int, now, lease time.Time) []*store.Delivery {
	t.Helper()
	ds, err := s.DeliveryClaim(t.Context(), store.DeliveryClaimParams{Limit: limit, Now: now, LeaseUntil: lease})
	if err != nil {
		t.Fatalf("DeliveryClaim: %v", err)
	}
	return ds
}

func update(t testing.TB, s store.Store, updates ...store.DeliveryUpdate) {
	t.Helper()
	if err := s.DeliveryUpdateBatch(t.Context(), updates); err != nil {
		t.Fatalf("DeliveryUpdateBatch: %v", err)
	}
}

func get(t testing.TB, s store.Store, id string) *store.Delivery {
	t.Helper()
	d, err := s.DeliveryGet(t.Context(), id)
	if err != nil {
		t.Fatalf("DeliveryGet(%s): %v", id, err)
	}
	return d
}

func ids(ds []*store.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// checkDelivery compares the fields a driver stores as given; UpdatedAt is
// the driver's to set.
func checkDelivery(t testing.TB, got *store.Delivery, want store.Delivery) {
	t.Helper()
	var diffs []string
	field := func(name string, got, want any) {
		if !reflect.DeepEqual(got, want) {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", name, got, want))
		}
	}
	timeField := func(name string, got, want time.Time) {
		if !got.Equal(want) {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", name, got, want))
		}
	}
	field("ID", got.ID, want.ID)
	field("SubscriptionID", got.SubscriptionID, want.SubscriptionID)
	field("EventSource", got.EventSource, want.EventSource)
	field("EventID", got.EventID, want.EventID)
	field("EventType", got.EventType, want.EventType)
	field("State", got.State, want.State)
	field("Attempts", got.Attempts, want.Attempts)
	field("LastStatus", got.LastStatus, want.LastStatus)
	field("LastError", got.LastError, want.LastError)
	timeField("NextAt", got.NextAt, want.NextAt)
	timeField("LeaseUntil", got.LeaseUntil, want.LeaseUntil)
	field("Holder", got.Holder, want.Holder)
	timeField("CreatedAt", got.CreatedAt, want.CreatedAt)
	if !bytes.Equal(got.EventPayload, want.EventPayload) {
		diffs = append(diffs, fmt.Sprintf("EventPayload = %q, want %q", got.EventPayload, want.EventPayload))
	}
	for _, d := range diffs {
		t.Errorf("delivery %s: %s", want.ID, d)
	}
}
