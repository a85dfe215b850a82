package dispatch_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/clients/signing"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/dispatch"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
	"github.com/heraldhq/herald/workflows"
)

// stuckHandoff is a Temporal that never answers.
type stuckHandoff struct{ ctx context.Context }

func (h stuckHandoff) Start(context.Context, workflows.DeliveryInput) error {
	<-h.ctx.Done()
	return h.ctx.Err()
}

// newStore opens a SQLite store with an active subscription (validated
// already) for each ID in sinks, to its sink URL, and a catalog of them.
func newStore(tb testing.TB, sinks map[string]string) (*sqlite.Store, *catalog.Catalog) {
	tb.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "herald.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	now := time.Now()
	for id, sink := range sinks {
		if err := s.SubscriptionInsert(ctx, &store.Subscription{
			ID: id, Sink: sink, Protocol: "HTTP", State: store.SubscriptionActive, SkipValidation: true,
			Secrets: []store.Secret{{Key: signing.NewSecret()}}, CreatedAt: now, UpdatedAt: now,
		}); err != nil {
			tb.Fatal(err)
		}
	}
	cat := catalog.New(s, nil)
	if err := cat.Reload(ctx); err != nil {
		tb.Fatal(err)
	}
	return s, cat
}

// TestDispatch_HangingSinkNeverDelaysAnotherSink: one sink accepts
// connections and never answers, and its deliveries come first; Temporal
// is stuck too, so nothing is handed off. The other sink still gets every
// one of its deliveries while every request to the hanging sink is still
// held, and the hanging sink never holds more than its origin's limit.
func TestDispatch_HangingSinkNeverDelaysAnotherSink(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	hanging := heraldtest.NewReceiver(t, func(int, *http.Request) (int, http.Header) {
		<-release
		return http.StatusNoContent, nil
	})
	good := heraldtest.NewReceiver(t, nil)
	s, cat := newStore(t, map[string]string{"sub_bad": hanging.URL, "sub_good": good.URL})
	now := time.Now()

	// Many deliveries to the hanging sink first, then the good sink's.
	const bad, perGood = 200, 40
	var params []store.EventInsertParams
	for i := range bad + perGood {
		sub := "sub_bad"
		if i >= bad {
			sub = "sub_good"
		}
		pe := &cloudeventsv1.CloudEvent{Id: fmt.Sprint(i), Source: "/t", SpecVersion: "1.0", Type: "t"}
		payload, _ := proto.Marshal(pe)
		params = append(params, store.EventInsertParams{
			Event: store.Event{Source: "/t", ID: fmt.Sprint(i), Type: "t", Payload: payload, CreatedAt: now},
			Deliveries: []store.Delivery{{ID: fmt.Sprintf("dlv_%03d", i), SubscriptionID: sub,
				State: store.DeliveryPending, NextAt: now.Add(time.Duration(i) * time.Millisecond)}},
		})
	}
	if _, err := s.EventInsertBatch(ctx, params); err != nil {
		t.Fatal(err)
	}

	// A small node: 20 requests in flight in all, 16 per origin.
	sched := scheduler.New(scheduler.Config{MaxInFlight: 20, OriginConcurrency: 16})
	d := dispatch.New(dispatch.Config{BatchSize: 64, Handoffs: 1, HandoffQueue: 2},
		s, cat, &attempt.Attempter{Sender: delivery.NewSender(), Scheduler: sched}, stuckHandoff{ctx})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	good.WaitFor(t, perGood, time.Minute)
	if n := len(hanging.Requests()); n == 0 || n > 16 {
		t.Errorf("the hanging sink got %d requests, want 1 to its origin's limit of 16", n)
	}
	if st := sched.Origin(delivery.Origin(hanging.URL)); st.InFlight != len(hanging.Requests()) {
		t.Errorf("hanging origin: %d in flight, %d received: a request to it ended", st.InFlight, len(hanging.Requests()))
	}
	cancel()
	sched.Close()
	close(release) // the hanging requests end, and Run with them
	<-done

	// None of the hanging sink's deliveries was lost or finished.
	for i := range bad {
		dl, err := s.DeliveryGet(context.Background(), fmt.Sprintf("dlv_%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		if dl.State == store.DeliveryDead {
			t.Errorf("%s is dead", dl.ID)
		}
	}
}

func TestReserve_TakesOnlyTheRoomThereIs(t *testing.T) {
	d := dispatch.New(dispatch.Config{BatchSize: 4, Queue: 4}, nil, nil, nil, nil)
	got, lease := d.Reserve(want(5), 10*time.Millisecond, time.Second) // waits, then gives what there is
	if got["sub"] != 4 || lease.IsZero() {
		t.Fatalf("Reserve(5) = %v, %v; want 4 with a lease", got, lease)
	}
	if got, _ := d.Reserve(want(1), 0, 0); got["sub"] != 0 {
		t.Errorf("Reserve on a full queue = %v, want 0", got)
	}
	d.Enqueue(nil, nil, got) // nothing stored claimed after all: all 4 back
	if got, _ := d.Reserve(want(3), 0, 0); got["sub"] != 3 {
		t.Errorf("Reserve after giving room back = %v, want 3", got)
	}
}

// While room is being made, Reserve waits for all it asked for, even
// longer than one stall interval in all.
func TestReserve_WaitsWhileRoomIsMade(t *testing.T) {
	d := dispatch.New(dispatch.Config{BatchSize: 8, Queue: 8}, nil, nil, nil, nil)
	if got, _ := d.Reserve(want(8), 0, 0); got["sub"] != 8 {
		t.Fatalf("Reserve(8) on an empty queue = %v", got)
	}
	const stall = 400 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		// One place every stall/4: eight places take two stall intervals.
		for range 8 {
			time.Sleep(stall / 4)
			d.Enqueue(nil, nil, want(1))
		}
	}()
	got, _ := d.Reserve(want(8), stall, time.Minute)
	<-done
	if got["sub"] != 8 {
		t.Errorf("Reserve(8) while room is made = %v, want 8", got)
	}
}

// When requests make no room, Reserve gives up after one stall interval
// rather than its whole maximum wait.
func TestReserve_StopsWaitingWhenTheQueueStalls(t *testing.T) {
	d := dispatch.New(dispatch.Config{BatchSize: 2, Queue: 2}, nil, nil, nil, nil)
	d.Reserve(want(2), 0, 0)
	result := make(chan int, 1)
	go func() {
		got, _ := d.Reserve(want(1), 10*time.Millisecond, time.Hour)
		result <- got["sub"]
	}()
	select {
	case got := <-result:
		if got != 0 {
			t.Errorf("Reserve on a stalled full queue = %d, want 0", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("Reserve waited for its maximum instead of giving up on a stall")
	}
}

// want asks Reserve for n places for subscription "sub".
func want(n int) map[string]int { return map[string]int{"sub": n} }

// TestReserve_AnOriginTakesOnlyItsShare: room for a sink's deliveries is
// bounded by its origin's share of the queue, so room for another sink's
// is always left, and held places wait for their jobs.
func TestReserve_AnOriginTakesOnlyItsShare(t *testing.T) {
	s, cat := newStore(t, map[string]string{"sub_a": "http://a.example/", "sub_b": "http://b.example/"})
	sched := scheduler.New(scheduler.Config{MaxQueued: 60})
	d := dispatch.New(dispatch.Config{BatchSize: 60, Queue: 60}, s, cat,
		&attempt.Attempter{Sender: delivery.NewSender(), Scheduler: sched}, stuckHandoff{context.Background()})
	got, _ := d.Reserve(map[string]int{"sub_a": 100}, 0, 0)
	if got["sub_a"] != 30 {
		t.Fatalf("a alone got %d places of 60, want 30", got["sub_a"])
	}
	// b finds room though a asked for more than the queue; with two
	// origins busy, a takes no more.
	got, _ = d.Reserve(map[string]int{"sub_a": 100, "sub_b": 100}, 0, 0)
	if got["sub_a"] != 0 || got["sub_b"] != 20 {
		t.Fatalf("a and b got %v, want a nothing more and b its share of 20", got)
	}
	if st := sched.Stats(); st.Held != 50 {
		t.Errorf("scheduler holds %d places, want 50", st.Held)
	}
	// Nothing was stored claimed after all: every place comes back.
	d.Enqueue(nil, nil, map[string]int{"sub_a": 30})
	d.Enqueue(nil, nil, map[string]int{"sub_b": 20})
	if st := sched.Stats(); st.Held != 0 {
		t.Errorf("scheduler holds %d places after Enqueue gave them back", st.Held)
	}
	if got, _ := d.Reserve(want(60), 0, 0); got["sub"] != 60 {
		t.Errorf("the queue has %v places free, want all 60", got)
	}
}

// clock is a clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestReserve_DoesNotWaitForAnOriginThatDoesNotAnswer: room for a sink
// whose origin is at its share and has gone a second without a request
// ending will not come soon, so Reserve returns what it has at once
// instead of holding the publisher for its stall interval.
func TestReserve_DoesNotWaitForAnOriginThatDoesNotAnswer(t *testing.T) {
	s, cat := newStore(t, map[string]string{"sub_a": "http://a.example/"})
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	sched := scheduler.New(scheduler.Config{MaxQueued: 60, OriginConcurrency: 1, Now: c.Now})
	d := dispatch.New(dispatch.Config{BatchSize: 60, Queue: 60}, s, cat,
		&attempt.Attempter{Sender: delivery.NewSender(), Scheduler: sched}, stuckHandoff{context.Background()})
	hung, err := sched.Acquire(context.Background(), scheduler.Request{Origin: delivery.Origin("http://a.example/"), Key: "sub_a"})
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Release()
	got, _ := d.Reserve(map[string]int{"sub_a": 100}, 0, 0)
	if got["sub_a"] != 30 {
		t.Fatalf("a got %v places, want its share of 30", got)
	}
	c.Add(2 * time.Second) // its one request still has not ended
	done := make(chan map[string]int, 1)
	go func() {
		got, _ := d.Reserve(map[string]int{"sub_a": 10}, time.Hour, time.Hour)
		done <- got
	}()
	select {
	case got := <-done:
		if got["sub_a"] != 0 {
			t.Errorf("got %v, want no room", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("Reserve waited for room for an origin that does not answer")
	}
}
