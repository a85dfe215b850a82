package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

var eventListTests = []test{
	{"ListsASubscriptionsEventsInOrderAndPages", testEventList},
	{"ListFiltersByTimeAndType", testEventListFilters},
	{"GetReturnsTheEventAndItsDeliveries", testEventGet},
	{"RecentDeliveriesNewestFirstWithTheirFirstAttempt", testDeliveryRecent},
}

// insertForSubscriptions stores events 1..n, each with a delivery to
// sub_a and, for even ones, to sub_b; event i is of type t<i%2> and
// stored at t0 + i minutes.
func insertForSubscriptions(t testing.TB, s store.Store, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		e := newEvent("/list", fmt.Sprint(i), at(time.Duration(i)*time.Minute))
		e.Type = fmt.Sprintf("t%d", i%2)
		ds := []store.Delivery{newDelivery(fmt.Sprintf("dlv_a%03d", i), "sub_a", store.DeliveryDelivered, e.CreatedAt, e.CreatedAt)}
		if i%2 == 0 {
			ds = append(ds, newDelivery(fmt.Sprintf("dlv_b%03d", i), "sub_b", store.DeliveryPending, e.CreatedAt, e.CreatedAt))
		}
		insert(t, s, store.EventInsertParams{Event: e, Deliveries: ds})
	}
}

func listEvents(t testing.TB, s store.Store, p store.EventListParams) []string {
	t.Helper()
	rows, err := s.EventList(t.Context(), p)
	if err != nil {
		t.Fatalf("EventList: %v", err)
	}
	var out []string
	for _, r := range rows {
		if r.Delivery.SubscriptionID != p.SubscriptionID || r.Event.Source != "/list" || len(r.Event.Payload) == 0 {
			t.Errorf("row %+v", r)
		}
		out = append(out, r.Event.ID+"/"+string(r.Delivery.State))
	}
	return out
}

func testEventList(t *testing.T, s store.Store) {
	insertForSubscriptions(t, s, 5)
	if got := listEvents(t, s, store.EventListParams{SubscriptionID: "sub_b", Limit: 10}); fmt.Sprint(got) != "[2/pending 4/pending]" {
		t.Errorf("sub_b's events: %v", got)
	}
	p := store.EventListParams{SubscriptionID: "sub_a", Limit: 2}
	var pages [][]string
	for range 5 {
		rows, err := s.EventList(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		var page []string
		for _, r := range rows {
			page = append(page, r.Event.ID)
		}
		pages = append(pages, page)
		p.After = rows[len(rows)-1].Delivery.ID
	}
	if fmt.Sprint(pages) != "[[1 2] [3 4] [5]]" {
		t.Errorf("sub_a's events by pages of 2: %v", pages)
	}
}

func testEventListFilters(t *testing.T, s store.Store) {
	insertForSubscriptions(t, s, 6)
	tests := []struct {
		p    store.EventListParams
		want string
	}{
		{store.EventListParams{CreatedFrom: at(3 * time.Minute), CreatedTo: at(5 * time.Minute)}, "[3/delivered 4/delivered]"},
		{store.EventListParams{Types: []string{"t1"}}, "[1/delivered 3/delivered 5/delivered]"},
		{store.EventListParams{Types: []string{"t0", "t1"}, CreatedFrom: at(6 * time.Minute)}, "[6/delivered]"},
	}
	for _, tt := range tests {
		tt.p.SubscriptionID, tt.p.Limit = "sub_a", 10
		if got := listEvents(t, s, tt.p); fmt.Sprint(got) != tt.want {
			t.Errorf("%+v: %v, want %s", tt.p, got, tt.want)
		}
	}
}

func testEventGet(t *testing.T, s store.Store) {
	insertForSubscriptions(t, s, 2)
	e, ds, err := s.EventGet(t.Context(), "", "/list", "2")
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != "t0" || string(e.Payload) != "payload of /list/2" || !e.CreatedAt.Equal(at(2*time.Minute)) {
		t.Errorf("event %+v", e)
	}
	if len(ds) != 2 || ds[0].ID != "dlv_a002" || ds[1].ID != "dlv_b002" || ds[1].State != store.DeliveryPending {
		t.Errorf("deliveries %v, want dlv_a002 then dlv_b002 (pending)", ids(ds))
	}
	for _, args := range [][3]string{{"", "/list", "9"}, {"acme", "/list", "2"}} {
		if _, _, err := s.EventGet(t.Context(), args[0], args[1], args[2]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("EventGet%v = %v, want ErrNotFound", args, err)
		}
	}
}

func testDeliveryRecent(t *testing.T, s store.Store) {
	insertForSubscriptions(t, s, 4)
	update(t, s, store.DeliveryUpdate{ID: "dlv_a004", State: store.DeliveryDelivered, Attempts: 1, ExpectState: store.DeliveryDelivered,
		Attempt: &store.Attempt{Number: 1, StartedAt: at(0), StatusCode: 201, Latency: 7 * time.Millisecond}})
	got, err := s.DeliveryRecent(t.Context(), store.DeliveryRecentParams{SubscriptionID: "sub_a", FromID: "dlv_a002", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, o := range got {
		order = append(order, o.ID)
	}
	if fmt.Sprint(order) != "[dlv_a004 dlv_a003 dlv_a002]" {
		t.Fatalf("recent from dlv_a002: %v, want newest first", order)
	}
	if o := got[0]; o.FirstStatus != 201 || o.FirstLatency != 7*time.Millisecond || o.State != store.DeliveryDelivered || o.Attempts != 1 {
		t.Errorf("the newest: %+v", o)
	}
	if got, _ := s.DeliveryRecent(t.Context(), store.DeliveryRecentParams{SubscriptionID: "sub_a", Limit: 1}); len(got) != 1 || got[0].ID != "dlv_a004" {
		t.Errorf("limit 1: %v", got)
	}
}
