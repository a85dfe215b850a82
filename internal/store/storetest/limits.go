package storetest

import (
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

var limitTests = []test{
	{"TokenBucketStartsFullAndRefillsByElapsedTime", testTokenRefill},
	{"TokenBucketNeverGivesMoreThanRateTimesTimePlusBurst", testTokenBound},
	{"TokenBucketConcurrentTakersShareOneBucket", testTokenConcurrent},
	{"TokenBucketClockBehindAddsNothing", testTokenClockBehind},
	{"SinkPauseOnlyExtends", testSinkPause},
	{"NodeBeatCountsLiveNodes", testNodeBeat},
	{"LimitsForgetDeletesOnlyIdleBucketsAndEndedPauses", testLimitsForget},
}

func take(t testing.TB, s store.Store, key string, rate, burst float64, want int, now time.Time) store.TokenGrant {
	t.Helper()
	g, err := s.TokenTake(t.Context(), store.TokenTakeParams{Key: key, Rate: rate, Burst: burst, Want: want, Now: now})
	if err != nil {
		t.Fatalf("TokenTake: %v", err)
	}
	return g
}

func testTokenRefill(t *testing.T, s store.Store) {
	// 2 a second, burst 3.
	if g := take(t, s, "k", 2, 3, 5, at(0)); g.Taken != 3 || g.Left != 0 {
		t.Fatalf("a new bucket gave %+v, want its burst of 3", g)
	}
	if g := take(t, s, "k", 2, 3, 5, at(0)); g.Taken != 0 {
		t.Fatalf("an empty bucket gave %+v", g)
	}
	if g := take(t, s, "k", 2, 3, 5, at(250*time.Millisecond)); g.Taken != 0 || math.Abs(g.Left-0.5) > 1e-6 {
		t.Fatalf("after 250ms: %+v, want 0 taken and 0.5 left", g)
	}
	if g := take(t, s, "k", 2, 3, 1, at(500*time.Millisecond)); g.Taken != 1 || math.Abs(g.Left) > 1e-6 {
		t.Fatalf("after 500ms: %+v, want 1 taken", g)
	}
	if g := take(t, s, "k", 2, 3, 10, at(time.Hour)); g.Taken != 3 {
		t.Fatalf("after an hour: %+v, want the burst of 3 (capped)", g)
	}
	if g := take(t, s, "other", 2, 3, 1, at(time.Hour)); g.Taken != 1 || g.Left != 2 {
		t.Fatalf("another key: %+v, want its own full bucket", g)
	}
}

// testTokenBound takes as fast as it may every 23ms for 10s: the total
// is the rate times the time, plus the burst.
func testTokenBound(t *testing.T, s store.Store) {
	const rate, burst = 10.0, 2.0
	total := 0
	end := 10 * time.Second
	for d := time.Duration(0); d <= end; d += 23 * time.Millisecond {
		total += take(t, s, "k", rate, burst, 3, at(d)).Taken
	}
	if max := int(rate*end.Seconds() + burst); total > max || total < max-1 {
		t.Fatalf("took %d tokens in %v at %v/s burst %v; want %d (or one less, for the last partial token)", total, end, rate, burst, max)
	}
}

func testTokenConcurrent(t *testing.T, s store.Store) {
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				g, err := s.TokenTake(t.Context(), store.TokenTakeParams{Key: "k", Rate: 1, Burst: 20, Want: 1, Now: at(0)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += g.Taken
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if total != 20 {
		t.Fatalf("80 concurrent takes of one token from a bucket of 20 took %d", total)
	}
}

func testTokenClockBehind(t *testing.T, s store.Store) {
	take(t, s, "k", 1, 1, 1, at(10*time.Second))
	if g := take(t, s, "k", 1, 1, 1, at(5*time.Second)); g.Taken != 0 {
		t.Fatalf("a clock 5s behind took %+v", g)
	}
	if g := take(t, s, "k", 1, 1, 1, at(10500*time.Millisecond)); g.Taken != 0 {
		t.Fatalf("half a token later: %+v", g)
	}
	if g := take(t, s, "k", 1, 1, 1, at(11*time.Second)); g.Taken != 1 {
		t.Fatalf("a second after the last take: %+v", g)
	}
}

func testSinkPause(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, p := range []store.SinkPause{
		{Origin: "https://a.example:443", Until: at(10 * time.Second)},
		{Origin: "https://a.example:443", Until: at(5 * time.Second)}, // shorter: ignored
		{Origin: "http://b.example:80", Until: at(3 * time.Second)},
	} {
		if err := s.SinkPauseSet(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	list := func(now time.Time) []store.SinkPause {
		t.Helper()
		ps, err := s.SinkPauseList(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	want := []store.SinkPause{{Origin: "http://b.example:80", Until: at(3 * time.Second)}, {Origin: "https://a.example:443", Until: at(10 * time.Second)}}
	if got := list(at(0)); !reflect.DeepEqual(got, want) {
		t.Fatalf("pauses at 0: %v, want %v", got, want)
	}
	if got := list(at(3 * time.Second)); !reflect.DeepEqual(got, want[1:]) {
		t.Fatalf("pauses at 3s: %v, want %v", got, want[1:])
	}
	if got := list(at(10 * time.Second)); len(got) != 0 {
		t.Fatalf("pauses at 10s: %v, want none", got)
	}
}

func testLimitsForget(t *testing.T, s store.Store) {
	ctx := t.Context()
	take(t, s, "idle", 1, 2, 2, at(0))
	take(t, s, "busy", 1, 2, 2, at(0))
	take(t, s, "busy", 1, 2, 2, at(time.Hour))
	for _, p := range []store.SinkPause{
		{Origin: "https://ended.example:443", Until: at(time.Minute)},
		{Origin: "https://later.example:443", Until: at(2 * time.Hour)},
	} {
		if err := s.SinkPauseSet(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.LimitsForget(ctx, at(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("LimitsForget deleted %d rows, want 2 (the idle bucket, the ended pause)", n)
	}
	// The busy bucket was kept: it is still empty. The idle one starts
	// full again, as a new bucket.
	if g := take(t, s, "busy", 1, 2, 2, at(time.Hour)); g.Taken != 0 {
		t.Errorf("the bucket taken from at 1h gave %+v at 1h: it was forgotten", g)
	}
	if g := take(t, s, "idle", 1, 2, 2, at(time.Hour)); g.Taken != 2 {
		t.Errorf("the forgotten bucket gave %+v, want a new bucket's 2", g)
	}
	ps, err := s.SinkPauseList(ctx, at(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Origin != "https://later.example:443" {
		t.Errorf("pauses after forgetting: %v, want only the later one", ps)
	}
}

func testNodeBeat(t *testing.T, s store.Store) {
	beat := func(id string, now time.Time) int {
		t.Helper()
		n, err := s.NodeBeat(t.Context(), store.NodeBeatParams{ID: id, Now: now, Until: now.Add(10 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := beat("a", at(0)); n != 1 {
		t.Fatalf("the first node counts %d", n)
	}
	if n := beat("b", at(time.Second)); n != 2 {
		t.Fatalf("the second node counts %d", n)
	}
	if n := beat("a", at(5*time.Second)); n != 2 {
		t.Fatalf("a again counts %d", n)
	}
	if n := beat("a", at(12*time.Second)); n != 1 {
		t.Fatalf("after b's beat ended, a counts %d", n)
	}
	if n := beat("b", at(2*time.Hour)); n != 1 {
		t.Fatalf("b alone again counts %d", n)
	}
}
