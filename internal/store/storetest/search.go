package storetest

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// searchTests are DeliveryList's filters on the event and on the latest
// attempt's outcome: what an operator searches by.
var searchTests = []test{
	{"ListFiltersByEventAndLastStatus", testListSearch},
}

// testListSearch stores deliveries 1..7 of events of several types,
// sources and latest outcomes, and searches them.
func testListSearch(t *testing.T, s store.Store) {
	fixture := []struct {
		source, typ      string
		attempts, status int
		state            store.DeliveryState
		lastError        string
	}{
		1: {"/search", "a.created", 1, 200, store.DeliveryDelivered, ""},
		2: {"/search", "b.updated", 2, 503, store.DeliveryRetrying, "503 Service Unavailable"},
		3: {"/search", "a.created", 1, 0, store.DeliveryRetrying, "connection refused"},
		4: {"/search", "b.updated", 1, 404, store.DeliveryRetrying, "404 Not Found"},
		5: {"/search", "a.created", 0, 0, store.DeliveryPending, ""},
		6: {"/search", "c.moved", 1, 302, store.DeliveryRetrying, "302 Found"},
		7: {"/other", "a.created", 3, 500, store.DeliveryDead, "500 Internal Server Error"},
	}
	var params []store.EventInsertParams
	for n := 1; n < len(fixture); n++ {
		f := fixture[n]
		created := at(time.Duration(n) * time.Minute)
		id := string(rune('0' + n))
		if n == 7 {
			id = "3" // the same id as 3's event, from another source
		}
		e := newEvent(f.source, id, created)
		e.Type = f.typ
		d := newDelivery(deliveryID(n), "sub_a", f.state, created, created)
		d.Attempts, d.LastStatus, d.LastError = f.attempts, f.status, f.lastError
		params = append(params, store.EventInsertParams{Event: e, Deliveries: []store.Delivery{d}})
	}
	insert(t, s, params...)

	tests := []struct {
		name string
		p    store.DeliveryListParams
		want []string
	}{
		{"one type", store.DeliveryListParams{EventTypes: []string{"a.created"}}, want(7, 5, 3, 1)},
		{"two types", store.DeliveryListParams{EventTypes: []string{"a.created", "c.moved"}}, want(7, 6, 5, 3, 1)},
		{"type no event has", store.DeliveryListParams{EventTypes: []string{"a"}}, nil},
		{"2xx", store.DeliveryListParams{LastStatus: store.Status2xx}, want(1)},
		{"3xx", store.DeliveryListParams{LastStatus: store.Status3xx}, want(6)},
		{"4xx", store.DeliveryListParams{LastStatus: store.Status4xx}, want(4)},
		{"5xx", store.DeliveryListParams{LastStatus: store.Status5xx}, want(7, 2)},
		{"no response, never attempted excluded", store.DeliveryListParams{LastStatus: store.NoResponse}, want(3)},
		{"event id, every source", store.DeliveryListParams{EventID: "3"}, want(7, 3)},
		{"event source and id", store.DeliveryListParams{EventSource: "/search", EventID: "3"}, want(3)},
		{"event source", store.DeliveryListParams{EventSource: "/other"}, want(7)},
		{"type and class", store.DeliveryListParams{EventTypes: []string{"a.created"}, LastStatus: store.Status5xx}, want(7)},
		{"class and state", store.DeliveryListParams{LastStatus: store.Status5xx, State: store.DeliveryRetrying}, want(2)},
		{"type and subscriptions", store.DeliveryListParams{EventTypes: []string{"b.updated"}, SubscriptionIDs: []string{"sub_a"}}, want(4, 2)},
	}
	for _, tt := range tests {
		tt.p.Limit = 100
		if got := listIDs(t, s, tt.p); !equalStrings(got, tt.want) {
			t.Errorf("%s: DeliveryList = %v, want %v", tt.name, got, tt.want)
		}
	}
}
