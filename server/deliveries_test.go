package server

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/publish"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

// TestListDeliveries_RefusesBadFilters: a status class the API does not
// define and a list of types past the cap are InvalidArgument naming the
// field; the filters an operator uses are accepted.
func TestListDeliveries_RefusesBadFilters(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cat := catalog.New(s, nil)
	p := publish.New(s, cat, publish.Config{})
	t.Cleanup(p.Close)
	svc := NewServices(p, s, cat, noWorkflows{}, Options{})

	tooMany := make([]string, maxFilterTypes+1)
	for i := range tooMany {
		tooMany[i] = "t"
	}
	for _, tt := range []struct {
		req   *heraldv1.ListDeliveriesRequest
		field string
	}{
		{&heraldv1.ListDeliveriesRequest{LastStatusClass: 99}, "last_status_class"},
		{&heraldv1.ListDeliveriesRequest{EventTypes: tooMany}, "event_types"},
	} {
		_, err := svc.ListDeliveries(ctx, tt.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("ListDeliveries(%v) = %v, want InvalidArgument naming %s", tt.req, err, tt.field)
		}
	}
	ok := &heraldv1.ListDeliveriesRequest{EventTypes: tooMany[1:], EventSource: "/orders", EventId: "1",
		LastStatusClass: heraldv1.StatusClass_STATUS_CLASS_NO_RESPONSE}
	if _, err := svc.ListDeliveries(ctx, ok); err != nil {
		t.Errorf("ListDeliveries with every filter: %v", err)
	}
	if _, err := svc.ListEvents(ctx, &heraldv1.ListEventsRequest{SubscriptionId: "sub_1", Types: tooMany}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListEvents with %d types: %v, want InvalidArgument", len(tooMany), err)
	}
}
