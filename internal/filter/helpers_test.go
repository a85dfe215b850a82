package filter

import (
	"net/url"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// orderEvent is a CloudEvents 1.0 event with every kind of attribute value.
func orderEvent(t testing.TB) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("evt-1")
	e.SetSource("https://example.com/orders")
	e.SetType("com.example.order.created")
	e.SetSubject("orders/42")
	e.SetTime(time.Date(2024, 1, 2, 3, 4, 5, 600_000_000, time.FixedZone("CET", 3600)))
	e.SetDataSchema("https://example.com/schemas/order.json")
	if err := e.SetData("application/json", map[string]int{"total": 12}); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]any{
		"tenant":   "acme",
		"priority": 5,
		"urgent":   true,
		"blob":     []byte{1, 2, 3},
		"ref":      &url.URL{Scheme: "https", Host: "example.com", Path: "/ref"},
		"created":  types.Timestamp{Time: time.Date(2023, 12, 31, 23, 0, 0, 0, time.UTC)},
	} {
		e.SetExtension(name, value)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	return &e
}

// bareEvent has only the required attributes.
func bareEvent(t testing.TB) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("evt-2")
	e.SetSource("/orders")
	e.SetType("com.example.order.created")
	return &e
}
