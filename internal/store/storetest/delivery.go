package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

var claimTests = []test{
	{"ClaimsOnlyDuePendingAndExpiredLeases", testClaimOnlyClaimable},
	{"SetsInFlightAndLeaseAndReturnsPayload", testClaimSetsLease},
	{"RespectsLimitOldestNextAtFirst", testClaimLimitAndOrder},
	{"ConcurrentClaimersNeverShareADelivery", testClaimConcurrent},
	{"InsertedInFlightIsClaimableOnlyAfterItsLease", testClaimInsertedInFlight},
}

// testClaimInsertedInFlight: a publisher may store a delivery already
// claimed by its node; nobody else claims it until the lease ends.
func testClaimInsertedInFlight(t *testing.T, s store.Store) {
	e := newEvent("/orders", "1", at(0))
	d := newDelivery("dlv_1", "sub_a", store.DeliveryInFlight, at(0), e.CreatedAt)
	d.LeaseUntil = at(time.Minute)
	insert(t, s, store.EventInsertParams{Event: e, Deliveries: []store.Delivery{d}})
	if got := claim(t, s, 10, at(30*time.Second), at(2*time.Minute)); len(got) != 0 {
		t.Fatalf("claimed %d deliveries under a live lease", len(got))
	}
	got := claim(t, s, 10, at(time.Minute), at(3*time.Minute))
	if len(got) != 1 || got[0].ID != "dlv_1" {
		t.Fatalf("after the lease: claimed %v, want dlv_1", got)
	}
}

var updateTests = []test{
	{"ChangesStateAndClearsLease", testUpdateChangesState},
	{"PendingWithNextAtIsClaimableThen", testUpdateReschedules},
	{"ExpectStateMismatchSkipsUpdateButRecordsAttempt", testUpdateExpectStateMismatch},
	{"ExpectStateMatchApplies", testUpdateExpectStateMatch},
	{"SameAttemptNumberReplacesAttempt", testUpdateAttemptReplace},
	{"MissingDeliveryIsErrNotFoundAndAppliesNothing", testUpdateMissing},
	{"SameDeliveryTwiceAppliesInOrder", testUpdateSameDeliveryTwice},
	{"LargeBatchAppliesEachUpdateOnItsOwnTerms", testUpdateLargeBatch},
}

var readTests = []test{
	{"GetMissingIsErrNotFound", testGetMissing},
	{"ListFiltersNewestFirst", testListFilters},
	{"ListPagesWithAfter", testListPages},
	{"AttemptListOldestFirst", testAttemptList},
}

func testClaimOnlyClaimable(t *testing.T, s store.Store) {
	// due is claimable at t0+1m; later is not; the rest are never claimable.
	var params []store.EventInsertParams
	for i, d := range []store.Delivery{
		newDelivery("dlv_due_early", "sub_1", store.DeliveryPending, at(0), t0),
		newDelivery("dlv_due_now", "sub_1", store.DeliveryPending, at(time.Minute), t0),
		newDelivery("dlv_later", "sub_1", store.DeliveryPending, at(time.Minute+time.Millisecond), t0),
		newDelivery("dlv_delivered", "sub_1", store.DeliveryDelivered, at(0), t0),
		newDelivery("dlv_retrying", "sub_1", store.DeliveryRetrying, at(0), t0),
		newDelivery("dlv_dead", "sub_1", store.DeliveryDead, at(0), t0),
	} {
		params = append(params, store.EventInsertParams{Event: newEvent("/claim", fmt.Sprint(i), t0), Deliveries: []store.Delivery{d}})
	}
	insert(t, s, params...)

	steps := []struct {
		name       string
		now, lease time.Time
		want       []string
	}{
		{"due pending, NextAt <= Now", at(time.Minute), at(2 * time.Minute), []string{"dlv_due_early", "dlv_due_now"}},
		{"leases still held", at(time.Minute + 30*time.Second), at(3 * time.Minute), []string{"dlv_later"}},
		{"nothing claimable", at(time.Minute + 59*time.Second), at(3 * time.Minute), nil},
		{"leases expired, LeaseUntil <= Now", at(2 * time.Minute), at(4 * time.Minute), []string{"dlv_due_early", "dlv_due_now"}},
	}
	for _, step := range steps {
		got := ids(claim(t, s, 100, step.now, step.lease))
		if !equalStrings(got, step.want) {
			t.Errorf("%s: claimed %v, want %v", step.name, got, step.want)
		}
	}
}

func testClaimSetsLease(t *testing.T, s store.Store) {
	e := newEvent("/orders", "1", t0)
	d := newDelivery("dlv_1", "sub_1", store.DeliveryPending, at(0), t0)
	d.Attempts, d.LastStatus, d.LastError = 1, 503, "unavailable"
	insert(t, s, store.EventInsertParams{Event: e, Deliveries: []store.Delivery{d}})

	lease := at(time.Minute)
	want := d
	want.State, want.LeaseUntil = store.DeliveryInFlight, lease
	want.EventSource, want.EventID, want.EventType, want.EventPayload = e.Source, e.ID, e.Type, e.Payload

	got := claim(t, s, 10, at(time.Second), lease)
	if len(got) != 1 {
		t.Fatalf("claimed %v, want [dlv_1]", ids(got))
	}
	checkDelivery(t, got[0], want)
	checkDelivery(t, get(t, s, "dlv_1"), want)
}

func testClaimLimitAndOrder(t *testing.T, s store.Store) {
	// IDs in the opposite order to NextAt, so ordering by ID would fail.
	insertPending(t, s, 1, at(5*time.Second), at(4*time.Second), at(3*time.Second), at(2*time.Second), at(time.Second))
	now, lease := at(time.Minute), at(time.Hour)
	if got, want := ids(claim(t, s, 2, now, lease)), []string{deliveryID(5), deliveryID(4)}; !equalStrings(got, want) {
		t.Errorf("first claim = %v, want %v", got, want)
	}
	if got, want := ids(claim(t, s, 10, now, lease)), []string{deliveryID(3), deliveryID(2), deliveryID(1)}; !equalStrings(got, want) {
		t.Errorf("second claim = %v, want %v", got, want)
	}
	if got := claim(t, s, 10, now, lease); len(got) != 0 {
		t.Errorf("third claim = %v, want none", ids(got))
	}
}

func testClaimConcurrent(t *testing.T, s store.Store) {
	const total, claimers, limit = 300, 4, 7
	nextAts := make([]time.Time, total)
	for i := range nextAts {
		nextAts[i] = at(time.Duration(i) * time.Millisecond)
	}
	insertPending(t, s, 1, nextAts...)

	var (
		mu      sync.Mutex
		claimed = make(map[string]int) // delivery ID -> times claimed
		wg      sync.WaitGroup
		errs    = make(chan error, claimers)
	)
	for range claimers {
		wg.Go(func() {
			for {
				ds, err := s.DeliveryClaim(t.Context(), store.DeliveryClaimParams{Limit: limit, Now: at(time.Hour), LeaseUntil: at(2 * time.Hour)})
				if err != nil {
					errs <- err
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					claimed[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("DeliveryClaim: %v", err)
	}
	for id, n := range claimed {
		if n > 1 {
			t.Errorf("%s was claimed %d times", id, n)
		}
	}
	if len(claimed) != total {
		t.Errorf("claimed %d distinct deliveries, want %d", len(claimed), total)
	}
}

func testUpdateChangesState(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0), at(0))
	claim(t, s, 10, at(time.Second), at(time.Minute))
	update(t, s,
		store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryDelivered, Attempts: 1, LastStatus: 204},
		store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryRetrying, Attempts: 1, LastStatus: 500, LastError: "HTTP 500", NextAt: at(0)},
	)
	want1 := store.Delivery{State: store.DeliveryDelivered, Attempts: 1, LastStatus: 204} // NextAt is stored as given: zero
	want2 := store.Delivery{State: store.DeliveryRetrying, Attempts: 1, LastStatus: 500, LastError: "HTTP 500", NextAt: at(0)}
	for id, want := range map[string]store.Delivery{deliveryID(1): want1, deliveryID(2): want2} {
		got := get(t, s, id)
		if got.State != want.State || got.Attempts != want.Attempts || got.LastStatus != want.LastStatus ||
			got.LastError != want.LastError || !got.NextAt.Equal(want.NextAt) {
			t.Errorf("%s = %s attempts %d status %d error %q next %v; want %s %d %d %q %v", id,
				got.State, got.Attempts, got.LastStatus, got.LastError, got.NextAt,
				want.State, want.Attempts, want.LastStatus, want.LastError, want.NextAt)
		}
		if !got.LeaseUntil.IsZero() {
			t.Errorf("%s left in_flight but kept LeaseUntil %v", id, got.LeaseUntil)
		}
	}
	if got := claim(t, s, 10, at(time.Hour), at(2*time.Hour)); len(got) != 0 {
		t.Errorf("claimed %v after they left in_flight, want none", ids(got))
	}
}

func testUpdateReschedules(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0))
	claim(t, s, 10, at(0), at(time.Hour))
	update(t, s, store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryPending, Attempts: 1, LastStatus: 429, NextAt: at(time.Minute)})
	if got := claim(t, s, 10, at(time.Minute-time.Millisecond), at(time.Hour)); len(got) != 0 {
		t.Errorf("claimed %v before NextAt, want none", ids(got))
	}
	if got := ids(claim(t, s, 10, at(time.Minute), at(time.Hour))); !equalStrings(got, []string{deliveryID(1)}) {
		t.Errorf("claimed %v at NextAt, want [%s]", got, deliveryID(1))
	}
}

func testUpdateExpectStateMismatch(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0))
	claim(t, s, 10, at(0), at(time.Minute))
	attempt := &store.Attempt{Number: 1, StartedAt: at(time.Second), StatusCode: 200, Latency: 42 * time.Millisecond}
	update(t, s, store.DeliveryUpdate{
		ID: deliveryID(1), State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200,
		ExpectState: store.DeliveryPending, Attempt: attempt,
	})
	if got := get(t, s, deliveryID(1)); got.State != store.DeliveryInFlight || got.Attempts != 0 {
		t.Errorf("state = %s, attempts %d; want in_flight, 0 (ExpectState did not match)", got.State, got.Attempts)
	}
	as, err := s.AttemptList(t.Context(), deliveryID(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].StatusCode != 200 {
		t.Errorf("attempts = %+v, want the one attempt recorded", as)
	}
}

func testUpdateExpectStateMatch(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0))
	claim(t, s, 10, at(0), at(time.Minute))
	update(t, s, store.DeliveryUpdate{
		ID: deliveryID(1), State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200,
		ExpectState: store.DeliveryInFlight,
	})
	if got := get(t, s, deliveryID(1)); got.State != store.DeliveryDelivered {
		t.Errorf("state = %s, want delivered", got.State)
	}
}

func testUpdateAttemptReplace(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0))
	first := store.Attempt{Number: 1, StartedAt: at(time.Second), StatusCode: 500, Latency: time.Second, Error: "HTTP 500", ResponseBody: []byte("oops")}
	replaced := store.Attempt{Number: 1, StartedAt: at(2 * time.Second), StatusCode: 0, Latency: 15 * time.Second, Error: "timeout"}
	second := store.Attempt{Number: 2, StartedAt: at(time.Minute), StatusCode: 200, Latency: time.Millisecond, ResponseBody: []byte("ok")}
	update(t, s, store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryRetrying, Attempts: 1, Attempt: &first})
	update(t, s, store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryRetrying, Attempts: 1, Attempt: &replaced})
	update(t, s, store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryDelivered, Attempts: 2, Attempt: &second})
	as, err := s.AttemptList(t.Context(), deliveryID(1))
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Attempt{replaced, second}
	if len(as) != len(want) {
		t.Fatalf("AttemptList returned %d attempts, want %d", len(as), len(want))
	}
	for i, w := range want {
		w.DeliveryID = deliveryID(1)
		checkAttempt(t, as[i], w)
	}
}

// CheckAttempts fails t unless got, as AttemptList returned it, holds
// exactly want's attempts in order. Drivers' own tests use it too, e.g.
// to check attempts a migration moved.
func CheckAttempts(t testing.TB, got []*store.Attempt, want []store.Attempt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("AttemptList returned %d attempts, want %d", len(got), len(want))
	}
	for i, w := range want {
		checkAttempt(t, got[i], w)
	}
}

func checkAttempt(t testing.TB, got *store.Attempt, want store.Attempt) {
	t.Helper()
	if got.DeliveryID != want.DeliveryID || got.Number != want.Number || !got.StartedAt.Equal(want.StartedAt) ||
		got.StatusCode != want.StatusCode || got.Latency != want.Latency || got.Error != want.Error ||
		string(got.ResponseBody) != string(want.ResponseBody) {
		t.Errorf("attempt = %+v, want %+v", *got, want)
	}
}

// testUpdateMissing: an update of a missing delivery fails the batch,
// with or without an attempt to record.
func testUpdateMissing(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0))
	for _, attempt := range []*store.Attempt{nil, {Number: 1, StartedAt: at(time.Second), StatusCode: 200}} {
		err := s.DeliveryUpdateBatch(t.Context(), []store.DeliveryUpdate{
			{ID: deliveryID(1), State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200, Attempt: attempt},
			{ID: "dlv_missing", State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200, Attempt: attempt},
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("DeliveryUpdateBatch (attempt %v) error = %v, want ErrNotFound", attempt, err)
		}
		if got := get(t, s, deliveryID(1)); got.State != store.DeliveryPending {
			t.Errorf("state = %s, want pending: a failed batch must apply nothing", got.State)
		}
		if as, err := s.AttemptList(t.Context(), deliveryID(1)); err != nil || len(as) != 0 {
			t.Errorf("attempts = %v, %v; want none: a failed batch must record nothing", as, err)
		}
	}
}

// testUpdateSameDeliveryTwice: a batch may name a delivery twice (a retry
// recorded right after the first attempt); the later update wins and both
// attempts are kept.
func testUpdateSameDeliveryTwice(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0), at(0))
	first := store.Attempt{Number: 1, StartedAt: at(time.Second), StatusCode: 500, Latency: time.Second, Error: "HTTP 500"}
	second := store.Attempt{Number: 2, StartedAt: at(2 * time.Second), StatusCode: 200, Latency: time.Millisecond}
	update(t, s,
		store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryRetrying, Attempts: 1, LastStatus: 500, Attempt: &first},
		store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200},
		store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryDelivered, Attempts: 2, LastStatus: 200,
			ExpectState: store.DeliveryRetrying, Attempt: &second},
	)
	for _, id := range []string{deliveryID(1), deliveryID(2)} {
		if got := get(t, s, id); got.State != store.DeliveryDelivered {
			t.Errorf("%s state = %s, want delivered", id, got.State)
		}
	}
	if got := get(t, s, deliveryID(1)); got.Attempts != 2 {
		t.Errorf("attempts = %d, want 2 (the later update)", got.Attempts)
	}
	as, err := s.AttemptList(t.Context(), deliveryID(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 {
		t.Fatalf("AttemptList returned %d attempts, want 2", len(as))
	}
	first.DeliveryID, second.DeliveryID = deliveryID(1), deliveryID(1)
	checkAttempt(t, as[0], first)
	checkAttempt(t, as[1], second)
}

// testUpdateLargeBatch: a batch bigger than any one statement a driver
// might use, where every other update expects a state its delivery is not
// in.
func testUpdateLargeBatch(t *testing.T, s store.Store) {
	const n = 300
	nextAts := make([]time.Time, n)
	for i := range nextAts {
		nextAts[i] = at(0)
	}
	ids := insertPending(t, s, 1, nextAts...)
	updates := make([]store.DeliveryUpdate, n)
	for i, id := range ids {
		expect := store.DeliveryPending
		if i%2 == 1 {
			expect = store.DeliveryInFlight // does not match: stays pending
		}
		updates[i] = store.DeliveryUpdate{
			ID: id, State: store.DeliveryDelivered, Attempts: 1, LastStatus: 200 + i%2, ExpectState: expect,
			Attempt: &store.Attempt{Number: 1, StartedAt: at(time.Second), StatusCode: 200 + i%2},
		}
	}
	update(t, s, updates...)
	for i, id := range ids {
		want := store.DeliveryDelivered
		if i%2 == 1 {
			want = store.DeliveryPending
		}
		if got := get(t, s, id); got.State != want {
			t.Errorf("%s state = %s, want %s", id, got.State, want)
		}
		as, err := s.AttemptList(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 1 || as[0].StatusCode != 200+i%2 {
			t.Errorf("%s attempts = %+v, want one with status %d", id, as, 200+i%2)
		}
	}
}

func testGetMissing(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0))
	if _, err := s.DeliveryGet(t.Context(), "dlv_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeliveryGet(missing) error = %v, want ErrNotFound", err)
	}
}

// insertListFixture stores deliveries 1..9: created one minute apart,
// alternating subscriptions a and b, and states cycling pending, delivered,
// dead.
func insertListFixture(t *testing.T, s store.Store) {
	states := []store.DeliveryState{store.DeliveryPending, store.DeliveryDelivered, store.DeliveryDead}
	var params []store.EventInsertParams
	for n := 1; n <= 9; n++ {
		created := at(time.Duration(n) * time.Minute)
		sub := "sub_a"
		if n%2 == 0 {
			sub = "sub_b"
		}
		params = append(params, store.EventInsertParams{
			Event:      newEvent("/list", fmt.Sprint(n), created),
			Deliveries: []store.Delivery{newDelivery(deliveryID(n), sub, states[(n-1)%3], created, created)},
		})
	}
	insert(t, s, params...)
}

func listIDs(t *testing.T, s store.Store, p store.DeliveryListParams) []string {
	t.Helper()
	ds, err := s.DeliveryList(t.Context(), p)
	if err != nil {
		t.Fatalf("DeliveryList(%+v): %v", p, err)
	}
	for _, d := range ds {
		if len(d.EventPayload) != 0 {
			t.Errorf("DeliveryList filled EventPayload of %s", d.ID)
		}
	}
	return ids(ds)
}

func want(ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, deliveryID(n))
	}
	return out
}

func testListFilters(t *testing.T, s store.Store) {
	insertListFixture(t, s)
	tests := []struct {
		name string
		p    store.DeliveryListParams
		want []string
	}{
		{"all", store.DeliveryListParams{Limit: 100}, want(9, 8, 7, 6, 5, 4, 3, 2, 1)},
		{"subscription", store.DeliveryListParams{SubscriptionID: "sub_b", Limit: 100}, want(8, 6, 4, 2)},
		{"state", store.DeliveryListParams{State: store.DeliveryDead, Limit: 100}, want(9, 6, 3)},
		{"subscription and state", store.DeliveryListParams{SubscriptionID: "sub_a", State: store.DeliveryPending, Limit: 100}, want(7, 1)},
		{"created from, inclusive", store.DeliveryListParams{CreatedFrom: at(7 * time.Minute), Limit: 100}, want(9, 8, 7)},
		{"created to, exclusive", store.DeliveryListParams{CreatedTo: at(3 * time.Minute), Limit: 100}, want(2, 1)},
		{"created range and state", store.DeliveryListParams{CreatedFrom: at(2 * time.Minute), CreatedTo: at(9 * time.Minute), State: store.DeliveryDelivered, Limit: 100}, want(8, 5, 2)},
		{"no match", store.DeliveryListParams{SubscriptionID: "sub_c", Limit: 100}, nil},
		{"subscriptions", store.DeliveryListParams{SubscriptionIDs: []string{"sub_b", "sub_c"}, Limit: 100}, want(8, 6, 4, 2)},
		{"subscriptions and state", store.DeliveryListParams{SubscriptionIDs: []string{"sub_a", "sub_b"}, State: store.DeliveryDead, Limit: 100}, want(9, 6, 3)},
		{"no subscriptions", store.DeliveryListParams{SubscriptionIDs: []string{}, Limit: 100}, nil},
		{"subscription within subscriptions", store.DeliveryListParams{SubscriptionID: "sub_a", SubscriptionIDs: []string{"sub_b"}, Limit: 100}, nil},
		{"limit", store.DeliveryListParams{Limit: 2}, want(9, 8)},
	}
	for _, tt := range tests {
		if got := listIDs(t, s, tt.p); !equalStrings(got, tt.want) {
			t.Errorf("%s: DeliveryList = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func testListPages(t *testing.T, s store.Store) {
	insertListFixture(t, s)
	tests := []struct {
		name  string
		p     store.DeliveryListParams
		pages [][]string
	}{
		{"all", store.DeliveryListParams{Limit: 4}, [][]string{want(9, 8, 7, 6), want(5, 4, 3, 2), want(1)}},
		{"subscription", store.DeliveryListParams{SubscriptionID: "sub_a", Limit: 2}, [][]string{want(9, 7), want(5, 3), want(1)}},
	}
	for _, tt := range tests {
		p := tt.p
		for i, page := range append(tt.pages, nil) {
			got := listIDs(t, s, p)
			if !equalStrings(got, page) {
				t.Errorf("%s: page %d = %v, want %v", tt.name, i+1, got, page)
				break
			}
			if len(got) > 0 {
				p.After = got[len(got)-1]
			}
		}
	}
}

func testAttemptList(t *testing.T, s store.Store) {
	insertPending(t, s, 1, at(0), at(0))
	if as, err := s.AttemptList(t.Context(), deliveryID(1)); err != nil || len(as) != 0 {
		t.Fatalf("AttemptList(no attempts) = %v, %v; want none", as, err)
	}
	var attempts []store.Attempt
	for n := 1; n <= 3; n++ {
		attempts = append(attempts, store.Attempt{
			DeliveryID: deliveryID(1), Number: n, StartedAt: at(time.Duration(n) * time.Minute),
			StatusCode: 500 + n, Latency: time.Duration(n) * time.Millisecond, Error: fmt.Sprintf("HTTP %d", 500+n),
			ResponseBody: []byte(fmt.Sprintf("body %d", n)),
		})
	}
	// Recorded newest first, in one batch, with another delivery between.
	update(t, s,
		store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryRetrying, Attempts: 3, Attempt: &attempts[2]},
		store.DeliveryUpdate{ID: deliveryID(2), State: store.DeliveryRetrying, Attempts: 1, Attempt: &store.Attempt{Number: 1, StartedAt: t0}},
		store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryRetrying, Attempts: 3, Attempt: &attempts[0]},
		store.DeliveryUpdate{ID: deliveryID(1), State: store.DeliveryRetrying, Attempts: 3, Attempt: &attempts[1]},
	)
	as, err := s.AttemptList(t.Context(), deliveryID(1))
	if err != nil {
		t.Fatal(err)
	}
	CheckAttempts(t, as, attempts)
}
