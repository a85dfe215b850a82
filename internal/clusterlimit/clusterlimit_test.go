package clusterlimit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/clusterlimit"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/sqlite"
)

func openStore(tb testing.TB) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(tb.Context(), filepath.Join(tb.TempDir(), "herald.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// clock is a fake clock the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// take is Take waiting for a lease in flight, as the scheduler would.
func take(l *clusterlimit.Limiter, key string, perMinute, waiting int, now time.Time) (bool, time.Time) {
	for {
		done := make(chan struct{})
		var once sync.Once
		ok, retry := l.Take(key, perMinute, waiting, now, func() { once.Do(func() { close(done) }) })
		if ok || !retry.IsZero() {
			return ok, retry
		}
		<-done
	}
}

// TestTake_TwoNodesTogetherKeepToTheRate: two limiters on one store, each
// taking every token it can every 10ms for 30s, take together no more
// than rate × (T + spend) + burst in any window of T.
func TestTake_TwoNodesTogetherKeepToTheRate(t *testing.T) {
	for _, perMinute := range []int{60, 600, 6000} {
		t.Run(fmt.Sprint(perMinute), func(t *testing.T) {
			s := openStore(t)
			clk := &clock{now: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)}
			cfg := clusterlimit.Config{Now: clk.Now}
			a, b := clusterlimit.New(s, cfg), clusterlimit.New(s, cfg)
			var starts []time.Time
			perNode := map[*clusterlimit.Limiter]int{}
			name := map[*clusterlimit.Limiter]string{a: "a", b: "b"}
			start := clk.Now()
			nodes := []*clusterlimit.Limiter{a, b}
			for clk.Now().Sub(start) < 30*time.Second {
				if rand.N(2) == 0 { // neither always first
					nodes[0], nodes[1] = nodes[1], nodes[0]
				}
				for _, l := range nodes {
					for {
						ok, _ := take(l, "sub_1", perMinute, 50, clk.Now())
						if !ok {
							break
						}
						starts = append(starts, clk.Now())
						perNode[l]++
					}
				}
				clk.add(10 * time.Millisecond)
			}
			rate := float64(perMinute) / 60
			burst := float64(a.Burst(perMinute))
			spend := 500 * time.Millisecond
			for i := range starts {
				for j := i; j < len(starts); j++ {
					window := starts[j].Sub(starts[i])
					if n := float64(j - i + 1); n > rate*(window+spend).Seconds()+burst {
						t.Fatalf("%v requests started in %v at %d/min (burst %v): over the bound", n, window, perMinute, burst)
					}
				}
			}
			total := float64(len(starts))
			if want := rate * 30; total < want*0.9 {
				t.Errorf("%v requests in 30s at %d/min: the two nodes together got under 90%% of the rate", total, perMinute)
			}
			if perNode[a] == 0 || perNode[b] == 0 {
				t.Errorf("one node got nothing: a %d, b %d", perNode[a], perNode[b])
			}
			trips := a.Trips() + b.Trips()
			t.Logf("%d/min: %v requests, %d store round trips (%.2f per request), %s %d, %s %d", perMinute, total, trips, float64(trips)/total, name[a], perNode[a], name[b], perNode[b])
		})
	}
}

// TestTake_LeaseSizeFollowsTheRate: the burst is the lease size (at
// least 2), and one round trip lends a quarter second of the rate.
func TestTake_LeaseSizeFollowsTheRate(t *testing.T) {
	s := openStore(t)
	clk := &clock{now: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := clusterlimit.New(s, clusterlimit.Config{Now: clk.Now})
	for _, tc := range []struct{ perMinute, burst int }{{60, 2}, {600, 3}, {60000, 250}} {
		if got := l.Burst(tc.perMinute); got != tc.burst {
			t.Errorf("Burst(%d) = %d, want %d", tc.perMinute, got, tc.burst)
		}
	}
	// 60,000 a minute, many waiting: one round trip lends a quarter
	// second's worth.
	for i := range 250 {
		if ok, _ := take(l, "fast", 60000, 1000, clk.Now()); !ok {
			t.Fatalf("token %d of the first lease refused", i)
		}
	}
	if n := l.Trips(); n != 1 {
		t.Fatalf("250 tokens at 60,000/min took %d round trips, want 1", n)
	}
}

func TestPause_OneNodesPauseReachesTheOther(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	a, b := clusterlimit.New(s, clusterlimit.Config{}), clusterlimit.New(s, clusterlimit.Config{})
	until := time.Now().Add(5 * time.Second).Truncate(time.Millisecond)
	if err := a.Pause(ctx, "https://api.example.com:443", until); err != nil {
		t.Fatal(err)
	}
	if got := a.PausedUntil("https://api.example.com:443"); !got.Equal(until) {
		t.Fatalf("the pausing node sees %v, want %v at once", got, until)
	}
	if got := b.PausedUntil("https://api.example.com:443"); !got.IsZero() {
		t.Fatalf("the other node saw the pause before it refreshed: %v", got)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.PausedUntil("https://api.example.com:443"); !got.Equal(until) {
		t.Fatalf("after a refresh the other node sees %v, want %v", got, until)
	}
	if got := b.PausedUntil("https://other.example.com:443"); !got.IsZero() {
		t.Fatalf("another origin is paused: %v", got)
	}
}

func TestShare_ConcurrencyIsSharedAmongLiveNodes(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	clk := &clock{now: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := clusterlimit.New(s, clusterlimit.Config{Node: "a", Now: clk.Now})
	b := clusterlimit.New(s, clusterlimit.Config{Node: "b", Now: clk.Now})
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Share(10); got != 10 {
		t.Fatalf("alone, a's share of 10 is %d", got)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ max, share int }{{10, 5}, {5, 3}, {1, 1}, {0, 0}} {
		if got := a.Share(tc.max); got != tc.share {
			t.Errorf("with two nodes, Share(%d) = %d, want %d", tc.max, got, tc.share)
		}
	}
	clk.add(6 * time.Second) // b's heartbeat ends
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.Share(10); got != 10 {
		t.Fatalf("b gone, a's share of 10 is %d", got)
	}
}

var _ clusterlimit.Store = store.Store(nil)

// TestForget_AnIdleBucketIsAsGoodAsNew: whatever the rate, a bucket
// refills to its burst well within config.DefaultLimitsForget, so
// forgetting one idle for that long changes nothing a node can take;
// Forget deletes it, and the pauses that ended as long ago, and keeps
// what is in use.
func TestForget_AnIdleBucketIsAsGoodAsNew(t *testing.T) {
	s := openStore(t)
	clk := &clock{now: time.Unix(1_000_000, 0)}
	l := clusterlimit.New(s, clusterlimit.Config{Now: clk.Now})
	for _, perMinute := range []int{1, 7, 60, 480, 6000, 60_000, 1_000_000} {
		refill := time.Duration(float64(l.Burst(perMinute)) / (float64(perMinute) / 60) * float64(time.Second))
		if refill > 2*time.Minute {
			t.Errorf("at %d/min a bucket takes %s to refill, over the 2 minutes Forget's doc promises", perMinute, refill)
		}
	}
	ctx := t.Context()
	if ok, _ := take(l, "sub:idle", 60, 1, clk.Now()); !ok {
		t.Fatal("no token from a new bucket")
	}
	if err := l.Pause(ctx, "https://ended.example:443", clk.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	clk.add(config.DefaultLimitsForget + time.Minute)
	if ok, _ := take(l, "sub:busy", 60, 1, clk.Now()); !ok {
		t.Fatal("no token from a second new bucket")
	}
	if err := l.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := s.LimitsForget(ctx, clk.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("after Forget, %d rows were left to forget, want 1 (the bucket in use)", n)
	}
}

// TestReturn_AReturnedTokenIsSpentWithoutAStoreTrip: a token Take gave
// and Return gave back is the next Take's, with no lease from the store.
func TestReturn_AReturnedTokenIsSpentWithoutAStoreTrip(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	l := clusterlimit.New(openStore(t), clusterlimit.Config{Now: clk.Now})
	if ok, _ := take(l, "origin:https://a:443", 60, 1, clk.Now()); !ok {
		t.Fatal("no token from a new bucket")
	}
	trips := l.Trips()
	l.Return("origin:https://a:443")
	if ok, _ := l.Take("origin:https://a:443", 60, 1, clk.Now(), nil); !ok {
		t.Fatal("the returned token was not given again")
	}
	if got := l.Trips(); got != trips {
		t.Errorf("%d store trips for a returned token, want none", got-trips)
	}
}
