package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

var eventTests = []test{
	{"InsertsDeliveriesWithEventFields", testEventInsertFillsEventFields},
	{"ResultsAreInParamsOrder", testEventInsertResultsInOrder},
	{"DuplicateAcrossBatchesReturnsOriginalDeliveryIDs", testEventInsertDuplicateAcrossBatches},
	{"DuplicateWithinBatchReturnsFirstDeliveryIDs", testEventInsertDuplicateWithinBatch},
	{"SameIDFromAnotherSourceIsNotDuplicate", testEventInsertSameIDOtherSource},
	{"SameEventFromAnotherTenantIsNotDuplicate", testEventInsertOtherTenant},
	{"EventWithoutDeliveries", testEventInsertNoDeliveries},
	{"EmptyBatch", testEventInsertEmpty},
	{"LargeBatchStoresEveryDelivery", testEventInsertLarge},
	{"FailedBatchStoresNothing", testEventInsertFailedBatch},
}

func testEventInsertFillsEventFields(t *testing.T, s store.Store) {
	e1 := newEvent("/orders", "1", at(time.Second))
	e2 := newEvent("/orders", "2", at(2*time.Second))
	e2.Type = "com.example.order.paid"
	d1 := newDelivery("dlv_1", "sub_a", store.DeliveryPending, at(time.Minute), e1.CreatedAt)
	d2 := newDelivery("dlv_2", "sub_b", store.DeliveryPending, at(2*time.Minute), e1.CreatedAt)
	d3 := newDelivery("dlv_3", "sub_a", store.DeliveryDead, at(3*time.Minute), e2.CreatedAt)
	d3.Attempts, d3.LastStatus, d3.LastError = 2, 410, "gone"
	insert(t, s,
		store.EventInsertParams{Event: e1, Deliveries: []store.Delivery{d1, d2}},
		store.EventInsertParams{Event: e2, Deliveries: []store.Delivery{d3}},
	)
	for _, c := range []struct {
		d store.Delivery
		e store.Event
	}{{d1, e1}, {d2, e1}, {d3, e2}} {
		want := c.d
		want.EventSource, want.EventID, want.EventType, want.EventPayload = c.e.Source, c.e.ID, c.e.Type, c.e.Payload
		checkDelivery(t, get(t, s, c.d.ID), want)
	}
}

func testEventInsertResultsInOrder(t *testing.T, s store.Store) {
	var params []store.EventInsertParams
	var want [][]string
	for i := range 5 {
		p := store.EventInsertParams{Event: newEvent("/orders", fmt.Sprint(i), t0)}
		var ids []string
		for j := range i {
			id := deliveryID(i*10 + j)
			ids = append(ids, id)
			p.Deliveries = append(p.Deliveries, newDelivery(id, fmt.Sprintf("sub_%d", j), store.DeliveryPending, t0, t0))
		}
		params = append(params, p)
		want = append(want, ids)
	}
	res := insert(t, s, params...)
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("result %d: Duplicate = true for a new event", i)
		}
		if !equalStrings(r.DeliveryIDs, want[i]) {
			t.Errorf("result %d: DeliveryIDs = %v, want %v", i, r.DeliveryIDs, want[i])
		}
	}
}

func testEventInsertDuplicateAcrossBatches(t *testing.T, s store.Store) {
	e := newEvent("/orders", "1", t0)
	// Not in ID order, so that the original order is visible.
	original := []store.Delivery{
		newDelivery("dlv_9", "sub_a", store.DeliveryPending, t0, t0),
		newDelivery("dlv_5", "sub_b", store.DeliveryPending, t0, t0),
		newDelivery("dlv_7", "sub_c", store.DeliveryPending, t0, t0),
	}
	insert(t, s, store.EventInsertParams{Event: e, Deliveries: original})

	again := e
	again.Payload = []byte("a different body")
	res := insert(t, s,
		store.EventInsertParams{Event: newEvent("/orders", "2", t0), Deliveries: []store.Delivery{newDelivery("dlv_20", "sub_a", store.DeliveryPending, t0, t0)}},
		store.EventInsertParams{Event: again, Deliveries: []store.Delivery{newDelivery("dlv_10", "sub_a", store.DeliveryPending, t0, t0)}},
	)
	if res[0].Duplicate || !equalStrings(res[0].DeliveryIDs, []string{"dlv_20"}) {
		t.Errorf("new event result = %+v, want not duplicate with [dlv_20]", res[0])
	}
	if want := []string{"dlv_9", "dlv_5", "dlv_7"}; !res[1].Duplicate || !equalStrings(res[1].DeliveryIDs, want) {
		t.Errorf("duplicate result = %+v, want duplicate with %v", res[1], want)
	}
	if _, err := s.DeliveryGet(t.Context(), "dlv_10"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a duplicate's delivery was stored: DeliveryGet error = %v, want ErrNotFound", err)
	}
	if d := get(t, s, "dlv_9"); string(d.EventPayload) != string(e.Payload) {
		t.Errorf("a duplicate replaced the payload: %q, want %q", d.EventPayload, e.Payload)
	}
}

func testEventInsertDuplicateWithinBatch(t *testing.T, s store.Store) {
	e := newEvent("/orders", "1", t0)
	res := insert(t, s,
		store.EventInsertParams{Event: e, Deliveries: []store.Delivery{newDelivery("dlv_a", "sub_a", store.DeliveryPending, t0, t0)}},
		store.EventInsertParams{Event: newEvent("/orders", "2", t0), Deliveries: []store.Delivery{newDelivery("dlv_b", "sub_a", store.DeliveryPending, t0, t0)}},
		store.EventInsertParams{Event: e, Deliveries: []store.Delivery{newDelivery("dlv_c", "sub_a", store.DeliveryPending, t0, t0)}},
	)
	wants := []store.EventInsertResult{
		{Duplicate: false, DeliveryIDs: []string{"dlv_a"}},
		{Duplicate: false, DeliveryIDs: []string{"dlv_b"}},
		{Duplicate: true, DeliveryIDs: []string{"dlv_a"}},
	}
	for i, want := range wants {
		if res[i].Duplicate != want.Duplicate || !equalStrings(res[i].DeliveryIDs, want.DeliveryIDs) {
			t.Errorf("result %d = %+v, want %+v", i, res[i], want)
		}
	}
	if _, err := s.DeliveryGet(t.Context(), "dlv_c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a duplicate's delivery was stored: DeliveryGet error = %v, want ErrNotFound", err)
	}
}

func testEventInsertSameIDOtherSource(t *testing.T, s store.Store) {
	res := insert(t, s,
		store.EventInsertParams{Event: newEvent("/orders", "1", t0), Deliveries: []store.Delivery{newDelivery("dlv_a", "sub_a", store.DeliveryPending, t0, t0)}},
		store.EventInsertParams{Event: newEvent("/invoices", "1", t0), Deliveries: []store.Delivery{newDelivery("dlv_b", "sub_a", store.DeliveryPending, t0, t0)}},
	)
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("result %d: Duplicate = true, want false (sources differ)", i)
		}
	}
	if d := get(t, s, "dlv_b"); d.EventSource != "/invoices" {
		t.Errorf("EventSource = %q, want /invoices", d.EventSource)
	}
}

func testEventInsertOtherTenant(t *testing.T, s store.Store) {
	acme, globex := newEvent("/orders", "1", t0), newEvent("/orders", "1", t0)
	acme.Tenant, globex.Tenant = "acme", "globex"
	res := insert(t, s,
		store.EventInsertParams{Event: acme, Deliveries: []store.Delivery{newDelivery("dlv_a", "sub_a", store.DeliveryPending, t0, t0)}},
		store.EventInsertParams{Event: globex, Deliveries: []store.Delivery{newDelivery("dlv_b", "sub_b", store.DeliveryPending, t0, t0)}},
	)
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("result %d: Duplicate = true, want false (tenants differ)", i)
		}
	}
	// Within one tenant, the same event is a duplicate, in a later batch
	// too, and gets that tenant's deliveries.
	res = insert(t, s,
		store.EventInsertParams{Event: globex, Deliveries: []store.Delivery{newDelivery("dlv_c", "sub_b", store.DeliveryPending, t0, t0)}},
		store.EventInsertParams{Event: acme, Deliveries: []store.Delivery{newDelivery("dlv_d", "sub_a", store.DeliveryPending, t0, t0)}},
	)
	if !res[0].Duplicate || !equalStrings(res[0].DeliveryIDs, []string{"dlv_b"}) {
		t.Errorf("globex again = %+v, want a duplicate with [dlv_b]", res[0])
	}
	if !res[1].Duplicate || !equalStrings(res[1].DeliveryIDs, []string{"dlv_a"}) {
		t.Errorf("acme again = %+v, want a duplicate with [dlv_a]", res[1])
	}
}

func testEventInsertNoDeliveries(t *testing.T, s store.Store) {
	e := newEvent("/orders", "1", t0)
	res := insert(t, s, store.EventInsertParams{Event: e})
	if res[0].Duplicate || len(res[0].DeliveryIDs) != 0 {
		t.Errorf("first insert = %+v, want not duplicate, no deliveries", res[0])
	}
	res = insert(t, s, store.EventInsertParams{Event: e, Deliveries: []store.Delivery{newDelivery("dlv_a", "sub_a", store.DeliveryPending, t0, t0)}})
	if !res[0].Duplicate || len(res[0].DeliveryIDs) != 0 {
		t.Errorf("second insert = %+v, want duplicate, no deliveries", res[0])
	}
}

// testEventInsertFailedBatch: a batch that fails (here, a delivery ID
// already taken) stores none of its events or deliveries, so that the
// events can be published again.
func testEventInsertFailedBatch(t *testing.T, s store.Store) {
	insert(t, s, store.EventInsertParams{Event: newEvent("/orders", "1", t0),
		Deliveries: []store.Delivery{newDelivery("dlv_taken", "sub_a", store.DeliveryPending, t0, t0)}})
	_, err := s.EventInsertBatch(t.Context(), []store.EventInsertParams{
		{Event: newEvent("/orders", "2", t0), Deliveries: []store.Delivery{newDelivery("dlv_new", "sub_a", store.DeliveryPending, t0, t0)}},
		{Event: newEvent("/orders", "3", t0), Deliveries: []store.Delivery{newDelivery("dlv_taken", "sub_b", store.DeliveryPending, t0, t0)}},
	})
	if err == nil {
		t.Fatal("EventInsertBatch with a delivery ID already stored succeeded, want an error")
	}
	if _, err := s.DeliveryGet(t.Context(), "dlv_new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the failed batch stored a delivery: DeliveryGet error = %v, want ErrNotFound", err)
	}
	res := insert(t, s,
		store.EventInsertParams{Event: newEvent("/orders", "2", t0), Deliveries: []store.Delivery{newDelivery("dlv_2", "sub_a", store.DeliveryPending, t0, t0)}},
		store.EventInsertParams{Event: newEvent("/orders", "3", t0), Deliveries: []store.Delivery{newDelivery("dlv_3", "sub_a", store.DeliveryPending, t0, t0)}},
	)
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("event %d after the failed batch: Duplicate = true, want false (the failed batch stored it)", i+2)
		}
	}
}

func testEventInsertEmpty(t *testing.T, s store.Store) {
	res, err := s.EventInsertBatch(t.Context(), nil)
	if err != nil || len(res) != 0 {
		t.Fatalf("EventInsertBatch(nil) = %v, %v; want no results, nil", res, err)
	}
}

// testEventInsertLarge inserts more rows than drivers are likely to put in
// one statement.
func testEventInsertLarge(t *testing.T, s store.Store) {
	const events, perEvent = 1000, 3
	params := make([]store.EventInsertParams, events)
	for i := range params {
		params[i].Event = newEvent("/bulk", fmt.Sprint(i), t0)
		for j := range perEvent {
			params[i].Deliveries = append(params[i].Deliveries,
				newDelivery(deliveryID(i*perEvent+j), fmt.Sprintf("sub_%d", j), store.DeliveryPending, t0, t0))
		}
	}
	res := insert(t, s, params...)
	for i, r := range res {
		if r.Duplicate || len(r.DeliveryIDs) != perEvent {
			t.Fatalf("result %d = %+v, want %d new deliveries", i, r, perEvent)
		}
	}
	listed := 0
	after := ""
	for {
		page, err := s.DeliveryList(t.Context(), store.DeliveryListParams{Limit: 500, After: after})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		listed += len(page)
		after = page[len(page)-1].ID
	}
	if listed != events*perEvent {
		t.Errorf("DeliveryList found %d deliveries, want %d", listed, events*perEvent)
	}
	d := get(t, s, deliveryID(events*perEvent-1))
	if d.EventID != fmt.Sprint(events-1) || string(d.EventPayload) != string(params[events-1].Event.Payload) {
		t.Errorf("last delivery has event %s payload %q, want event %d", d.EventID, d.EventPayload, events-1)
	}
}
