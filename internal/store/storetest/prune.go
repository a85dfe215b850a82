package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

var pruneTests = []test{
	{"DeletesEndedDeliveriesPastTheirCutoffsAndTheirEvents", testPruneCutoffs},
	{"PagesWithItsCursorsAndEndsAtRecentRows", testPrunePages},
	{"EventsNothingMatchedGoWhenOld", testPruneUnmatchedEvents},
	{"EraseRemovesDataKeepsTheDedupeRecord", testEventErase},
	{"EraseRefusesAnEventStillInProgress", testEventEraseInProgress},
	{"EraseSubjectErasesOneTenantsEventsAboutIt", testEventEraseSubject},
	{"LeaseHasOneHolderUntilItExpires", testLease},
}

// insertIn stores one event per delivery state given, each delivery
// created (and last changed) at created, and returns their IDs.
func insertIn(t testing.TB, s store.Store, first int, created time.Time, states ...store.DeliveryState) []string {
	t.Helper()
	var ids []string
	for i, st := range states {
		n := first + i
		ids = append(ids, deliveryID(n))
		d := newDelivery(deliveryID(n), "sub_1", st, created, created)
		insert(t, s, store.EventInsertParams{Event: newEvent("/prune", fmt.Sprint(n), created), Deliveries: []store.Delivery{d}})
	}
	return ids
}

func prune(t testing.TB, s store.Store, p store.PruneParams) store.PruneResult {
	t.Helper()
	res, err := s.Prune(t.Context(), p)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	return res
}

func exists(t testing.TB, s store.Store, id string) bool {
	t.Helper()
	_, err := s.DeliveryGet(t.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func testPruneCutoffs(t *testing.T, s store.Store) {
	old := insertIn(t, s, 1, at(0), store.DeliveryDelivered, store.DeliveryDead, store.DeliveryPending, store.DeliveryRetrying)
	recent := insertIn(t, s, 10, at(2*time.Hour), store.DeliveryDelivered, store.DeliveryDead)
	// A retried attempt on the old dead delivery goes with it.
	update(t, s, store.DeliveryUpdate{ID: old[1], State: store.DeliveryDead, Attempts: 2, ExpectState: store.DeliveryDead,
		Attempt: &store.Attempt{Number: 2, StartedAt: at(0), StatusCode: 500}})
	// An event with one ended delivery and one pending stays.
	insert(t, s, store.EventInsertParams{Event: newEvent("/prune", "mixed", at(0)), Deliveries: []store.Delivery{
		newDelivery("dlv_000020", "sub_1", store.DeliveryDelivered, at(0), at(0)),
		newDelivery("dlv_000021", "sub_2", store.DeliveryPending, at(0), at(0)),
	}})

	// Updates set UpdatedAt to the wall clock; cutoffs past it in the
	// suite's future (t0 is in 2031) catch the updated dead delivery too.
	res := prune(t, s, store.PruneParams{
		DeliveredBefore: at(time.Hour), DeadBefore: at(3 * time.Hour), EventsBefore: at(3 * time.Hour), Limit: 100,
	})
	gone := map[string]bool{old[0]: true, old[1]: true, recent[1]: true, "dlv_000020": true}
	for _, id := range append(append(old, recent...), "dlv_000020", "dlv_000021") {
		if exists(t, s, id) == gone[id] {
			t.Errorf("%s: exists %v, want gone %v", id, !gone[id], gone[id])
		}
	}
	if res.Deliveries != 4 || res.Attempts != 1 || res.Events != 3 || !res.Done {
		t.Errorf("Prune = %+v, want 4 deliveries, 1 attempt, 3 events, done", res)
	}
	// Their events went: published again, they are new. The mixed event
	// stays, and a kept delivery's too.
	again := insert(t, s,
		store.EventInsertParams{Event: newEvent("/prune", "1", at(0))},
		store.EventInsertParams{Event: newEvent("/prune", "mixed", at(0))},
		store.EventInsertParams{Event: newEvent("/prune", "3", at(0))},
	)
	if again[0].Duplicate || !again[1].Duplicate || !again[2].Duplicate {
		t.Errorf("published again: %+v; want the pruned event new, the kept ones duplicates", again)
	}
}

func testPrunePages(t *testing.T, s store.Store) {
	insertIn(t, s, 1, at(0), store.DeliveryDelivered, store.DeliveryDelivered, store.DeliveryDelivered, store.DeliveryDelivered, store.DeliveryDelivered)
	insertIn(t, s, 10, at(time.Hour), store.DeliveryDelivered) // too recent
	p := store.PruneParams{DeliveredBefore: at(time.Minute), EventsBefore: at(time.Minute), Limit: 2}
	var deleted []int
	for range 10 {
		res := prune(t, s, p)
		deleted = append(deleted, res.Deliveries)
		if res.Done {
			break
		}
		p.AfterDelivery, p.AfterEvent = res.AfterDelivery, res.AfterEvent
	}
	if fmt.Sprint(deleted) != "[2 2 1]" {
		t.Errorf("deliveries deleted per call: %v, want [2 2 1] (done at the recent row)", deleted)
	}
	if !exists(t, s, deliveryID(10)) {
		t.Error("the recent delivery went")
	}
}

func testPruneUnmatchedEvents(t *testing.T, s store.Store) {
	// Stored in two commits, as they would be an hour apart.
	insert(t, s, store.EventInsertParams{Event: newEvent("/none", "old", at(0))})
	insert(t, s, store.EventInsertParams{Event: newEvent("/none", "new", at(time.Hour))})
	res := prune(t, s, store.PruneParams{EventsBefore: at(time.Minute), Limit: 10})
	if res.Events != 1 || !res.Done {
		t.Errorf("Prune = %+v, want the old event gone", res)
	}
	again := insert(t, s,
		store.EventInsertParams{Event: newEvent("/none", "old", at(0))},
		store.EventInsertParams{Event: newEvent("/none", "new", at(time.Hour))},
	)
	if again[0].Duplicate || !again[1].Duplicate {
		t.Errorf("published again: %+v; want old new, new a duplicate", again)
	}
}

func testEventErase(t *testing.T, s store.Store) {
	ids := insertIn(t, s, 1, at(0), store.DeliveryDelivered, store.DeliveryDelivered)
	update(t, s, store.DeliveryUpdate{ID: ids[0], State: store.DeliveryDelivered, Attempts: 1, ExpectState: store.DeliveryDelivered,
		Attempt: &store.Attempt{Number: 1, StartedAt: at(0), StatusCode: 200, ResponseBody: []byte("thanks, Alice")}})
	update(t, s, store.DeliveryUpdate{ID: ids[0], State: store.DeliveryDelivered, Attempts: 2, ExpectState: store.DeliveryDelivered,
		Attempt: &store.Attempt{Number: 2, StartedAt: at(0), StatusCode: 200, ResponseBody: []byte("Alice again")}})
	if err := s.EventErase(t.Context(), "", "/prune", "1"); err != nil {
		t.Fatalf("EventErase: %v", err)
	}
	d := get(t, s, ids[0])
	if len(d.EventPayload) != 0 || d.State != store.DeliveryDelivered {
		t.Errorf("after erasure: payload %q, state %s; want no payload, still delivered", d.EventPayload, d.State)
	}
	if as, err := s.AttemptList(t.Context(), ids[0]); err != nil || len(as) != 0 {
		t.Errorf("after erasure, attempts %v, %v; want none", as, err)
	}
	if other := get(t, s, ids[1]); len(other.EventPayload) == 0 {
		t.Error("erasure reached another event")
	}
	if r := insert(t, s, store.EventInsertParams{Event: newEvent("/prune", "1", at(0))}); !r[0].Duplicate {
		t.Error("an erased event is no longer a duplicate")
	}
	if err := s.EventErase(t.Context(), "", "/prune", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EventErase(missing) = %v, want ErrNotFound", err)
	}
	if err := s.EventErase(t.Context(), "acme", "/prune", "2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EventErase(another tenant's) = %v, want ErrNotFound", err)
	}
}

func testEventEraseInProgress(t *testing.T, s store.Store) {
	ids := insertIn(t, s, 1, at(0), store.DeliveryRetrying)
	if err := s.EventErase(t.Context(), "", "/prune", "1"); !errors.Is(err, store.ErrInProgress) {
		t.Fatalf("EventErase(retrying) = %v, want ErrInProgress", err)
	}
	if d := get(t, s, ids[0]); len(d.EventPayload) == 0 {
		t.Error("a refused erasure removed the payload")
	}
}

func testEventEraseSubject(t *testing.T, s store.Store) {
	type ev struct {
		tenant, subject string
		state           store.DeliveryState
	}
	events := []ev{
		{"", "cust-1", store.DeliveryDelivered},
		{"", "cust-1", store.DeliveryRetrying},
		{"", "cust-2", store.DeliveryDelivered},
		{"acme", "cust-1", store.DeliveryDelivered},
		{"", "cust-1", store.DeliveryDead},
		{"", "", store.DeliveryDelivered},
		{"", "cust-1", store.DeliveryDelivered},
	}
	var ids []string
	for i, e := range events {
		d := newDelivery(deliveryID(i), "sub_1", e.state, at(0), at(0))
		ev := newEvent("/erase", fmt.Sprint(i), at(0))
		ev.Tenant, ev.Subject = e.tenant, e.subject
		insert(t, s, store.EventInsertParams{Event: ev, Deliveries: []store.Delivery{d}})
		ids = append(ids, d.ID)
	}
	update(t, s, store.DeliveryUpdate{ID: ids[0], State: store.DeliveryDelivered, Attempts: 1, ExpectState: store.DeliveryDelivered,
		Attempt: &store.Attempt{Number: 1, StartedAt: at(0), StatusCode: 200, ResponseBody: []byte("about cust-1")}})

	eraseAll := func() (total store.EraseBatch, calls int) {
		t.Helper()
		for cursor := int64(0); ; calls++ {
			b, err := s.EventEraseSubject(t.Context(), "", "cust-1", cursor, 2)
			if err != nil {
				t.Fatalf("EventEraseSubject: %v", err)
			}
			total.Erased += b.Erased
			total.InProgress += b.InProgress
			if b.Done {
				return total, calls + 1
			}
			if b.Cursor <= cursor {
				t.Fatalf("EventEraseSubject did not move on from cursor %d", cursor)
			}
			cursor = b.Cursor
		}
	}
	total, calls := eraseAll()
	if total.Erased != 3 || total.InProgress != 1 || calls < 2 {
		t.Errorf("erased %d, in progress %d, in %d calls; want 3 and 1 in at least 2 calls of 2", total.Erased, total.InProgress, calls)
	}
	for i, e := range events {
		erased := e.tenant == "" && e.subject == "cust-1" && e.state != store.DeliveryRetrying
		if got := len(get(t, s, ids[i]).EventPayload) == 0; got != erased {
			t.Errorf("event %d (%+v): erased %v, want %v", i, e, got, erased)
		}
	}
	if as, err := s.AttemptList(t.Context(), ids[0]); err != nil || len(as) != 0 {
		t.Errorf("after erasure, attempts %v, %v; want none", as, err)
	}
	if again, _ := eraseAll(); again.Erased != 0 || again.InProgress != 1 {
		t.Errorf("again: %+v; want nothing erased, the one in progress counted again", again)
	}
}

func testLease(t *testing.T, s store.Store) {
	ctx := t.Context()
	take := func(holder string, now time.Time) bool {
		t.Helper()
		ok, err := s.LeaseAcquire(ctx, "prune", holder, now, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !take("a", at(0)) {
		t.Fatal("a free lease was not taken")
	}
	if take("b", at(30*time.Second)) {
		t.Error("b took a's unexpired lease")
	}
	if !take("a", at(50*time.Second)) {
		t.Error("a could not renew its lease")
	}
	if take("b", at(100*time.Second)) {
		t.Error("b took a's renewed lease before it expired")
	}
	if !take("b", at(111*time.Second)) {
		t.Error("b could not take an expired lease")
	}
	if ok, err := s.LeaseAcquire(ctx, "other", "a", at(0), at(time.Minute)); err != nil || !ok {
		t.Errorf("another lease's name: %v, %v", ok, err)
	}
}
