package publish_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/heraldhq/herald/clients/signing"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/publish"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

// countingStore counts transactions, and fails them while fail is set.
type countingStore struct {
	*sqlite.Store
	txs  atomic.Int64
	fail atomic.Bool
}

func (c *countingStore) EventInsertBatch(ctx context.Context, p []store.EventInsertParams) ([]store.EventInsertResult, error) {
	c.txs.Add(1)
	if c.fail.Load() {
		return nil, errors.New("disk full")
	}
	return c.Store.EventInsertBatch(ctx, p)
}

func setup(t *testing.T, types ...string) (*publish.Publisher, *countingStore) {
	t.Helper()
	return setupWith(t, publish.Config{}, types...)
}

func setupWith(t testing.TB, cfg publish.Config, types ...string) (*publish.Publisher, *countingStore) {
	t.Helper()
	subs := make([]*store.Subscription, len(types))
	for i, typ := range types {
		subs[i] = newSub(fmt.Sprintf("sub_%d", i), typ, store.SubscriptionActive)
	}
	return setupSubs(t, cfg, subs...)
}

// newSub is a subscription to typ in state st, for setupSubs.
func newSub(id, typ string, st store.SubscriptionState) *store.Subscription {
	now := time.Now()
	return &store.Subscription{ID: id, Types: []string{typ}, Sink: "http://127.0.0.1:1/", Protocol: "HTTP",
		State: st, Secrets: []store.Secret{{Key: signing.NewSecret()}}, CreatedAt: now, UpdatedAt: now}
}

// setupSubs returns a publisher with cfg on a new SQLite store holding
// subs, and the store.
func setupSubs(t testing.TB, cfg publish.Config, subs ...*store.Subscription) (*publish.Publisher, *countingStore) {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, sub := range subs {
		if err := s.SubscriptionInsert(ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
	cat := catalog.New(s, nil)
	if err := cat.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: s}
	p := publish.New(cs, cat, cfg)
	t.Cleanup(p.Close)
	return p, cs
}

func ev(id, typ string) *cloudeventsv1.CloudEvent {
	return &cloudeventsv1.CloudEvent{Id: id, Source: "/test", SpecVersion: "1.0", Type: typ}
}

func TestPublish_OneDeliveryPerMatchingSubscription(t *testing.T) {
	p, _ := setup(t, "a", "a", "b")
	res, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev("1", "a"), ev("2", "b"), ev("3", "c")})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{2, 1, 0} {
		if got := len(res[i].DeliveryIDs); got != want || res[i].Duplicate {
			t.Errorf("event %d: %d deliveries (duplicate %v), want %d", i, got, res[i].Duplicate, want)
		}
	}
}

// An operational event goes only to subscriptions naming its type, and
// one that none takes is not stored at all.
func TestPublishOps_StoresOnlyWhatASubscriptionTakes(t *testing.T) {
	p, cs := setup(t, "io.herald.delivery.dead")
	ctx := context.Background()
	if err := p.PublishOps(ctx, "", "", []*cloudeventsv1.CloudEvent{ev("nobody", "io.herald.subscription.disabled")}); err != nil {
		t.Fatal(err)
	}
	if n := cs.txs.Load(); n != 0 {
		t.Errorf("an operational event nobody takes cost %d transactions, want none", n)
	}
	if _, _, err := cs.EventGet(ctx, "", "/test", "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an operational event nobody takes was stored: %v", err)
	}
	if err := p.PublishOps(ctx, "", "", []*cloudeventsv1.CloudEvent{ev("taken", "io.herald.delivery.dead")}); err != nil {
		t.Fatal(err)
	}
	if _, ds, err := cs.EventGet(ctx, "", "/test", "taken"); err != nil || len(ds) != 1 {
		t.Errorf("the taken operational event: %d deliveries, %v; want 1", len(ds), err)
	}
}

func TestPublish_ConcurrentCallsShareTransactions(t *testing.T) {
	p, cs := setup(t, "a")
	const calls = 200
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	start := make(chan struct{})
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev(fmt.Sprint(i), "a")})
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.txs.Load(); n >= calls {
		t.Errorf("%d transactions for %d concurrent calls, want fewer (group commit)", n, calls)
	}
}

// A commit waits for a call announced by Arriving, however late it comes
// within GatherWait, and takes it into the same transaction.
func TestPublish_CommitWaitsForArrivingCalls(t *testing.T) {
	p, cs := setupWith(t, publish.Config{GatherWait: time.Hour}, "a")
	endA, endB := p.Arriving(), p.Arriving()
	done := make(chan error, 2)
	go func() {
		defer endA()
		_, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev("a", "a")})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // A is queued and its commit waits for B
	go func() {
		defer endB()
		_, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev("b", "a")})
		done <- err
	}()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.txs.Load(); n != 1 {
		t.Errorf("%d transactions for two announced calls, want 1", n)
	}
}

// An announced call that ended without publishing (say, its request was
// malformed) holds no commit back.
func TestPublish_EndedArrivalsDoNotHoldCommits(t *testing.T) {
	p, _ := setupWith(t, publish.Config{GatherWait: time.Hour}, "a")
	p.Arriving()() // announced, then gone
	done := make(chan error, 1)
	go func() {
		end := p.Arriving()
		defer end()
		_, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev("1", "a")})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a lone call waited for an arrival that had ended")
	}
}

func TestPublish_DuplicateWithinOneCall(t *testing.T) {
	p, _ := setup(t, "a")
	res, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev("1", "a"), ev("1", "a")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Duplicate || !res[1].Duplicate || res[1].DeliveryIDs[0] != res[0].DeliveryIDs[0] {
		t.Errorf("results = %+v, want the second a duplicate of the first", res)
	}
}

func TestPublish_AfterCloseFails(t *testing.T) {
	p, _ := setup(t)
	p.Close()
	if _, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev("1", "a")}); err != publish.ErrClosed {
		t.Errorf("err = %v, want ErrClosed", err)
	}
}

// fakeDispatcher takes up to room deliveries straight from the publisher.
type fakeDispatcher struct {
	mu       sync.Mutex
	room     int
	got      []*store.Delivery
	returned int // reserved slots given back unused
}

func (f *fakeDispatcher) Reserve(want map[string]int, _, _ time.Duration) (map[string]int, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	got := map[string]int{}
	for _, sub := range slices.Sorted(maps.Keys(want)) {
		k := min(want[sub], f.room)
		f.room -= k
		if k > 0 {
			got[sub] = k
		}
	}
	return got, time.Now().Add(time.Minute)
}

func (f *fakeDispatcher) NodeID() string { return "node-test" }

func (f *fakeDispatcher) Enqueue(ds []*store.Delivery, events []*event.Event, reserved map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range ds {
		if events[i] == nil || events[i].ID() != d.EventID {
			panic("Enqueue without the delivery's decoded event")
		}
	}
	f.got = append(f.got, ds...)
	for _, n := range reserved {
		f.returned += n
	}
	f.returned -= len(ds)
}

func TestPublish_HandsFreshDeliveriesToTheDispatcherAsFarAsItHasRoom(t *testing.T) {
	ctx := context.Background()
	fd := &fakeDispatcher{room: 2}
	p, s := setupWith(t, publish.Config{Dispatcher: fd}, "a", "a", "a")

	res, err := p.Publish(ctx, "", []*cloudeventsv1.CloudEvent{ev("1", "a")}) // 3 deliveries, room for 2
	if err != nil {
		t.Fatal(err)
	}
	if len(fd.got) != 2 {
		t.Fatalf("dispatcher got %d deliveries, want 2", len(fd.got))
	}
	for _, d := range fd.got {
		if d.State != store.DeliveryInFlight || d.EventID != "1" || len(d.EventPayload) == 0 || d.Holder != "node-test" {
			t.Errorf("handed over %+v, want in flight, held by the dispatcher's node, with its event", d)
		}
		stored, err := s.DeliveryGet(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Holder != "node-test" {
			t.Errorf("%s stored held by %q, want the dispatcher's node", d.ID, stored.Holder)
		}
	}
	// The third is pending, for a claim; the two handed over are leased.
	claimed, err := s.DeliveryClaim(ctx, store.DeliveryClaimParams{Limit: 10, Now: time.Now(), LeaseUntil: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 || len(res[0].DeliveryIDs) != 3 {
		t.Errorf("claimable %d of %d deliveries, want 1", len(claimed), len(res[0].DeliveryIDs))
	}
	// A duplicate hands nothing over and gives its reservation back.
	fd.room = 5
	if _, err := p.Publish(ctx, "", []*cloudeventsv1.CloudEvent{ev("1", "a")}); err != nil {
		t.Fatal(err)
	}
	if len(fd.got) != 2 || fd.returned != 3 {
		t.Errorf("after a duplicate: %d handed over, %d returned; want 2 and 3", len(fd.got), fd.returned)
	}
}

func TestCommitFailing_SaysTheNodeCannotStoreUntilACommitSucceeds(t *testing.T) {
	p, s := setup(t, "a")
	if err := p.CommitFailing(time.Now()); err != nil {
		t.Fatalf("before any commit: %v", err)
	}
	s.fail.Store(true)
	if _, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev("1", "a")}); err == nil {
		t.Fatal("a publish on a failing store succeeded")
	}
	now := time.Now()
	if err := p.CommitFailing(now); err == nil {
		t.Error("after a failed commit, CommitFailing is nil")
	}
	if err := p.CommitFailing(now.Add(time.Minute)); err != nil {
		t.Errorf("a minute after the failure, with no commit since: %v, want nil (try the node again)", err)
	}
	s.fail.Store(false)
	if _, err := p.Publish(context.Background(), "", []*cloudeventsv1.CloudEvent{ev("2", "a")}); err != nil {
		t.Fatal(err)
	}
	if err := p.CommitFailing(time.Now()); err != nil {
		t.Errorf("after a commit that succeeded: %v", err)
	}
}

// TestPublish_SuspendedAndDisabledSubscriptionsGetHeldDeliveries: an
// event matching a suspended or a disabled subscription is stored for it
// held, and not handed to the dispatcher nor claimable; an active one's
// delivery is handed over as usual.
func TestPublish_SuspendedAndDisabledSubscriptionsGetHeldDeliveries(t *testing.T) {
	ctx := context.Background()
	fd := &fakeDispatcher{room: 10}
	p, s := setupSubs(t, publish.Config{Dispatcher: fd}, newSub("sub_active", "a", store.SubscriptionActive),
		newSub("sub_suspended", "a", store.SubscriptionSuspended), newSub("sub_disabled", "a", store.SubscriptionDisabled))

	res, err := p.Publish(ctx, "", []*cloudeventsv1.CloudEvent{ev("1", "a")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res[0].DeliveryIDs) != 3 {
		t.Fatalf("%d deliveries, want one per subscription", len(res[0].DeliveryIDs))
	}
	if len(fd.got) != 1 || fd.got[0].SubscriptionID != "sub_active" {
		t.Fatalf("handed over %v, want sub_active's only", fd.got)
	}
	for _, id := range res[0].DeliveryIDs {
		d, err := s.DeliveryGet(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := store.DeliveryHeld; d.SubscriptionID != "sub_active" && d.State != want {
			t.Errorf("%s's delivery is %s, want %s", d.SubscriptionID, d.State, want)
		}
	}
	if claimed, err := s.DeliveryClaim(ctx, store.DeliveryClaimParams{Limit: 10, Now: time.Now(), LeaseUntil: time.Now().Add(time.Minute)}); err != nil || len(claimed) != 0 {
		t.Errorf("claimed %d deliveries (%v), want none", len(claimed), err)
	}
}
