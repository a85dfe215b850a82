package postgres

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// A result batch whose updates all apply costs no delivery lookup: the
// update reports what it changed. Only an update that did not apply (here,
// not in its ExpectState) makes the store look its delivery up. Lookups
// are what a stale generic plan made slow (docs/benchmarks.md, item 18).
// PostgreSQL lists the statements each session prepared, so the store gets
// a pool of one connection and the test asks it.
func TestResultBatchesLookUpOnlyWhatDidNotApply(t *testing.T) {
	ctx := context.Background()
	s, _ := OpenTestStore(t, url.Values{"pool_max_conns": {"1"}})

	// Batches of one delivery each, whose updates all apply.
	const batches = 12
	now := time.Now()
	for i := range batches {
		id := fmt.Sprintf("dlv_%02d", i)
		_, err := s.EventInsertBatch(ctx, []store.EventInsertParams{{
			Event:      store.Event{Source: "/lookups", ID: id, Type: "t", Payload: []byte("{}"), CreatedAt: now},
			Deliveries: []store.Delivery{{ID: id, SubscriptionID: "sub_1", State: store.DeliveryInFlight, NextAt: now, LeaseUntil: now.Add(time.Minute)}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		err = s.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{{ID: id, State: store.DeliveryDelivered, Attempts: 1, LastStatus: 204,
			ExpectState: store.DeliveryInFlight, Attempt: &store.Attempt{Number: 1, StartedAt: now, StatusCode: 204}}})
		if err != nil {
			t.Fatal(err)
		}
	}

	lookups := func() int64 {
		t.Helper()
		generic, custom := plans(t, s, deliveriesExistingSQL)
		return generic + custom
	}
	if n := lookups(); n != 0 {
		t.Errorf("%d lookups for %d batches whose updates all applied, want 0", n, batches)
	}

	// Delivered already: the update does not apply, the attempt is kept.
	err := s.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{{ID: "dlv_00", State: store.DeliveryDelivered, Attempts: 2, LastStatus: 204,
		ExpectState: store.DeliveryInFlight, Attempt: &store.Attempt{Number: 2, StartedAt: now, StatusCode: 204}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := lookups(); n != 1 {
		t.Errorf("%d lookups after an update that did not apply, want 1", n)
	}
	as, err := s.AttemptList(ctx, "dlv_00")
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 {
		t.Errorf("dlv_00 has %d attempts, want 2 (the one recorded with the update that did not apply too)", len(as))
	}
}
