package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// waitFor polls cond until it holds; a liveness bound, never a speed
// assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// acquireAsync starts Acquire in a goroutine and returns its result.
func acquireAsync(s *Scheduler, req Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		g, err := s.Acquire(context.Background(), req)
		ch <- result{g, err}
	}()
	return ch
}

type result struct {
	g   *Grant
	err error
}

func mustAcquire(t *testing.T, s *Scheduler, req Request) *Grant {
	t.Helper()
	g, err := s.Acquire(context.Background(), req)
	if err != nil {
		t.Fatalf("Acquire(%+v): %v", req, err)
	}
	return g
}

func TestAcquire_OriginAtItsLimitDoesNotHoldOthers(t *testing.T) {
	s := New(Config{OriginConcurrency: 2})
	a := Request{Origin: "http://a", Key: "sub_a"}
	g1, g2 := mustAcquire(t, s, a), mustAcquire(t, s, a)
	waiting := acquireAsync(s, a)
	waitFor(t, "a's third request to wait", func() bool { return s.Origin("http://a").Waiting == 1 })
	// Another origin starts at once, while a's request waits.
	g := mustAcquire(t, s, Request{Origin: "http://b", Key: "sub_b"})
	g.Done(Answered)
	select {
	case <-waiting:
		t.Fatal("a's third request started while a was at its limit")
	default:
	}
	g1.Done(Answered)
	r := <-waiting
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.g.Done(Answered)
	g2.Done(Answered)
	if st := s.Stats(); st.InFlight != 0 || st.Queued != 0 {
		t.Errorf("stats after all done = %+v", st)
	}
}

// TestDispatch_OriginsTakeTurnsForTheBudget: with the node's budget full,
// freed slots go round robin between origins, so an origin with one
// request waiting is served before a busy origin's backlog.
func TestDispatch_OriginsTakeTurnsForTheBudget(t *testing.T) {
	s := New(Config{MaxInFlight: 1, OriginConcurrency: 100})
	hold := mustAcquire(t, s, Request{Origin: "http://busy", Key: "k"})
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	start := func(origin string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := s.Acquire(context.Background(), Request{Origin: origin, Key: "k"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, origin)
			mu.Unlock()
			g.Done(Answered)
		}()
	}
	for range 5 {
		start("http://busy")
	}
	waitFor(t, "busy's backlog", func() bool { return s.Origin("http://busy").Waiting == 5 })
	start("http://quiet")
	waitFor(t, "quiet's request", func() bool { return s.Origin("http://quiet").Waiting == 1 })
	hold.Done(Answered)
	wg.Wait()
	// busy was first in the ring, so it takes the first turn, then quiet.
	if len(order) != 6 || order[1] != "http://quiet" {
		t.Errorf("order = %v, want quiet second", order)
	}
}

func TestBreaker_OpensAfterFailuresThenProbes(t *testing.T) {
	recovered := make(chan string, 1)
	req := Request{Origin: "http://hang", Key: "sub"}
	s2 := New(Config{OriginConcurrency: 3, BreakerThreshold: 3, BreakerOpen: 100 * time.Millisecond,
		OnRecover: func(o string) { recovered <- o }})
	g := []*Grant{mustAcquire(t, s2, req), mustAcquire(t, s2, req), mustAcquire(t, s2, req)}
	waiting := acquireAsync(s2, req)
	waitFor(t, "a waiting request", func() bool { return s2.Origin(req.Origin).Waiting == 1 })
	for _, x := range g {
		x.Done(Unreachable)
	}
	// The third failure opens the breaker: the waiting request is refused
	// with the time to come back.
	r := <-waiting
	ref, ok := AsRefused(r.err)
	if !ok || ref.Reason != ReasonBreakerOpen || ref.Until.IsZero() {
		t.Fatalf("waiting request got %v, want refused with the breaker open", r.err)
	}
	if _, err := s2.Acquire(context.Background(), req); err == nil {
		t.Fatal("a new request started while the breaker was open")
	}
	if !s2.Origin(req.Origin).Open {
		t.Error("origin stats do not show the breaker open")
	}
	// After the open time one probe goes; a second request waits for it.
	time.Sleep(time.Until(ref.Until))
	probe := mustAcquire(t, s2, req)
	second := acquireAsync(s2, req)
	waitFor(t, "a request behind the probe", func() bool { return s2.Origin(req.Origin).Waiting == 1 })
	probe.Done(Answered)
	if r := <-second; r.err != nil {
		t.Fatalf("request after a good probe: %v", r.err)
	} else {
		r.g.Done(Answered)
	}
	if got := <-recovered; got != req.Origin {
		t.Errorf("OnRecover(%q), want %q", got, req.Origin)
	}
	if st := s2.Origin(req.Origin); st.Open || st.Failures != 0 {
		t.Errorf("after recovery: %+v", st)
	}
}

func TestBreaker_FailedProbeOpensItAgainForLonger(t *testing.T) {
	s := New(Config{OriginConcurrency: 1, BreakerThreshold: 1, BreakerOpen: 50 * time.Millisecond, BreakerMaxOpen: time.Second})
	req := Request{Origin: "http://down", Key: "sub"}
	mustAcquire(t, s, req).Done(Unreachable)
	first := s.Origin(req.Origin).OpenUntil
	time.Sleep(time.Until(first))
	opened := time.Now()
	mustAcquire(t, s, req).Done(Unreachable)
	st := s.Origin(req.Origin)
	if !st.Open || st.OpenUntil.Sub(opened) < 100*time.Millisecond-5*time.Millisecond {
		t.Errorf("after a failed probe: open %v until +%s, want open for about twice as long", st.Open, st.OpenUntil.Sub(opened))
	}
}

func TestRate_RequestsWaitForTheirToken(t *testing.T) {
	s := New(Config{})
	req := Request{Origin: "http://r", Key: "sub", Limits: Limits{PerMinute: 1200}} // one per 50 ms
	start := time.Now()
	for range 6 {
		mustAcquire(t, s, req).Done(Answered)
	}
	// A burst of two, then four waits of 50 ms: the limiter never lets
	// them go sooner.
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Errorf("6 requests at 20/s took %s, want at least 200ms", d)
	}
	// Another key on the same origin is not held by this one's rate.
	other := acquireAsync(s, Request{Origin: "http://r", Key: "other"})
	if r := <-other; r.err != nil {
		t.Fatal(r.err)
	}
}

func TestKey_ConcurrencyLimitLetsOtherKeysOfTheOriginGo(t *testing.T) {
	s := New(Config{OriginConcurrency: 10})
	limited := Request{Origin: "http://o", Key: "limited", Limits: Limits{Concurrency: 1}}
	g := mustAcquire(t, s, limited)
	waiting := acquireAsync(s, limited)
	waitFor(t, "the limited key to wait", func() bool { return s.Origin("http://o").Waiting == 1 })
	mustAcquire(t, s, Request{Origin: "http://o", Key: "free"}).Done(Answered)
	g.Done(Answered)
	if r := <-waiting; r.err != nil {
		t.Fatal(r.err)
	}
}

func TestAcquire_DeadlineRefusesAWaiter(t *testing.T) {
	s := New(Config{OriginConcurrency: 1})
	g := mustAcquire(t, s, Request{Origin: "http://slow", Key: "k"})
	defer g.Done(Answered)
	_, err := s.Acquire(context.Background(), Request{Origin: "http://slow", Key: "k", Deadline: time.Now().Add(20 * time.Millisecond)})
	if r, ok := AsRefused(err); !ok || r.Reason != ReasonDeadline {
		t.Fatalf("err = %v, want refused at its deadline", err)
	}
	if _, err := s.Acquire(context.Background(), Request{Origin: "http://slow", Key: "k", Deadline: time.Now().Add(-time.Second)}); err == nil {
		t.Fatal("a request past its deadline started")
	}
}

// waitMany starts n Acquires of req under ctx; wg ends with them.
func waitMany(s *Scheduler, ctx context.Context, wg *sync.WaitGroup, req Request, n int, refused *atomicCount) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := s.Acquire(ctx, req)
			if g != nil {
				g.Release()
			}
			if isReason(err, ReasonQueueFull) {
				refused.add(req.Origin)
			}
		}()
	}
}

// atomicCount counts refusals by origin.
type atomicCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *atomicCount) add(o string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[o]++
}

func (c *atomicCount) get(o string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[o]
}

func TestAcquire_ALoneOriginMayHoldOnlyHalfTheQueue(t *testing.T) {
	s := New(Config{OriginConcurrency: 1, MaxQueued: 64})
	g := mustAcquire(t, s, Request{Origin: "http://hot", Key: "k"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var refused atomicCount
	waitMany(s, ctx, &wg, Request{Origin: "http://hot", Key: "k"}, 32, &refused)
	waitFor(t, "32 waiting", func() bool { return s.Origin("http://hot").Waiting == 32 })
	_, err := s.Acquire(ctx, Request{Origin: "http://hot", Key: "k"})
	if r, ok := AsRefused(err); !ok || r.Reason != ReasonQueueFull {
		t.Errorf("33rd = %v, want refused: queue full", err)
	}
	cancel()
	wg.Wait()
	if st := s.Stats(); st.Queued != 0 || st.Refused[ReasonQueueFull] != 1 {
		t.Errorf("after cancelling the waiters: %+v", st)
	}
	g.Done(Answered)
}

// TestAcquire_AnOriginThatBecomesBusyAlwaysFindsRoom: origins whose
// requests never end fill the queue one after another, each as far as it
// may; every new origin still finds room, because the busy ones give back
// their newest waiters as their shares shrink.
func TestAcquire_AnOriginThatBecomesBusyAlwaysFindsRoom(t *testing.T) {
	const queue = 60
	s := New(Config{OriginConcurrency: 1, MaxQueued: queue})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var refused atomicCount
	stuck := []string{"http://a", "http://b", "http://c", "http://d", "http://e"}
	var grants []*Grant
	for i, o := range stuck {
		// The origin's one request in flight never ends; then it asks for
		// more room than the whole queue.
		grants = append(grants, mustAcquire(t, s, Request{Origin: o, Key: "k"}))
		share := queue / (i + 2)
		waitMany(s, ctx, &wg, Request{Origin: o, Key: "k"}, queue, &refused)
		waitFor(t, o+" at its share", func() bool {
			return s.Origin(o).Waiting == share && refused.get(o) == queue-share
		})
		total := 0
		for _, p := range stuck[:i+1] {
			w := s.Origin(p).Waiting
			if w > share {
				t.Errorf("with %d origins busy, %s holds %d waiting, over its share %d", i+1, p, w, share)
			}
			total += w
		}
		if room := queue - total; room < share {
			t.Errorf("with %d origins busy, %d places are free, want at least a share (%d)", i+1, room, share)
		}
	}
	if st := s.Stats(); st.Refused[ReasonQueueFull] == 0 {
		t.Errorf("stats count no refusals: %+v", st)
	}
	cancel()
	wg.Wait()
	for _, g := range grants {
		g.Release()
	}
}

// TestHold_TakesTheOriginsShareAndAcquireUsesIt: Hold takes no more than
// an origin's share, Acquire with the places held waits without another
// check, and Unhold gives back what was not used.
func TestHold_TakesTheOriginsShareAndAcquireUsesIt(t *testing.T) {
	s := New(Config{OriginConcurrency: 1, MaxQueued: 64})
	busy := mustAcquire(t, s, Request{Origin: "http://o", Key: "k"})
	ps := []Places{{Origin: "http://o", Want: 40}, {Origin: "http://p", Want: 5}}
	if got := s.Hold(ps, 100); got != 32+5 || ps[0].Held != 32 || ps[1].Held != 5 {
		t.Fatalf("Hold = %d, %+v; want 32 for o (half the queue) and 5 for p", got, ps)
	}
	// With two origins busy, o's share is 21: it holds more already, and
	// no more is given.
	if got := s.Hold(ps, 100); got != 0 {
		t.Errorf("second Hold = %d, want 0", got)
	}
	if w := s.Origin("http://o").Waiting; w != 32 {
		t.Errorf("o: %d waiting or held, want 32", w)
	}
	// A request on held places waits though o is over its share.
	w := acquireAsync(s, Request{Origin: "http://o", Key: "k", Held: 1})
	waitFor(t, "the held request waiting", func() bool { return s.Stats().Queued == 1 })
	if st := s.Stats(); st.Held != 31+5 {
		t.Errorf("held after one Acquire = %d, want 36", st.Held)
	}
	s.Unhold("http://o", 31)
	s.Unhold("http://p", 5)
	if st := s.Stats(); st.Held != 0 {
		t.Errorf("held after Unhold = %d", st.Held)
	}
	busy.Done(Answered)
	r := <-w
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.g.Done(Answered)
	if st := s.Stats(); st.InFlight != 0 || st.Queued != 0 {
		t.Errorf("stats at the end: %+v", st)
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLimit_GrowsWhileSaturatedAndHalvesOnOverload(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := New(Config{OriginConcurrency: 2, MaxOriginConcurrency: 8, Now: clock.Now})
	req := Request{Origin: "http://o", Key: "k"}
	// saturate answers every request of a full round with a request
	// waiting behind them, each in 10 ms, then lets a second go by.
	saturate := func(rounds int) {
		for range rounds {
			gs := []*Grant{}
			for range max(2, s.Origin(req.Origin).Limit) {
				gs = append(gs, mustAcquire(t, s, req))
			}
			w := acquireAsync(s, req)
			waitFor(t, "a waiter", func() bool { return s.Origin(req.Origin).Waiting == 1 })
			clock.Add(10 * time.Millisecond)
			for _, g := range gs {
				g.Done(Answered)
			}
			(<-w).g.Done(Answered)
			clock.Add(time.Second)
		}
	}
	saturate(10)
	if l := s.Origin(req.Origin).Limit; l != 8 {
		t.Fatalf("limit after saturated answers = %d, want the maximum 8", l)
	}
	g := mustAcquire(t, s, req)
	clock.Add(10 * time.Millisecond)
	g.Done(Overloaded)
	if l := s.Origin(req.Origin).Limit; l != 4 {
		t.Errorf("limit after a 429 = %d, want 4", l)
	}
	// Answers that keep coming far slower than unloaded ones shrink it.
	// (Two requests held in flight make the slow ones loaded samples.)
	hold := []*Grant{mustAcquire(t, s, req), mustAcquire(t, s, req)}
	slow := func() {
		clock.Add(time.Second)
		g := mustAcquire(t, s, req)
		clock.Add(time.Second)
		g.Done(Answered)
	}
	for range 40 {
		if s.Origin(req.Origin).Limit < 4 {
			break
		}
		slow()
	}
	if l := s.Origin(req.Origin).Limit; l >= 4 {
		t.Errorf("limit after answers 100 times slower = %d, want it below 4", l)
	}
	for _, g := range hold {
		g.Release()
	}
}

func TestClose_RefusesWaitersAndLaterRequests(t *testing.T) {
	s := New(Config{OriginConcurrency: 1})
	g := mustAcquire(t, s, Request{Origin: "http://o", Key: "k"})
	w := acquireAsync(s, Request{Origin: "http://o", Key: "k"})
	waitFor(t, "a waiter", func() bool { return s.Stats().Queued == 1 })
	s.Close()
	if r := <-w; !isReason(r.err, ReasonClosed) {
		t.Errorf("waiter got %v, want refused: closed", r.err)
	}
	if _, err := s.Acquire(context.Background(), Request{Origin: "http://p", Key: "k"}); !isReason(err, ReasonClosed) {
		t.Errorf("Acquire after Close = %v", err)
	}
	g.Done(Answered)
}

func isReason(err error, reason string) bool {
	var r *Refused
	return errors.As(err, &r) && r.Reason == reason
}

func TestDefaults_AreConfigs(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.MaxInFlight != config.DefaultMaxInFlight || c.MaxQueued != config.DefaultQueue ||
		c.OriginConcurrency != config.DefaultOriginConcurrency || c.MaxOriginConcurrency != config.DefaultMaxOriginConcurrency ||
		c.BreakerThreshold != config.DefaultBreakerThreshold || c.BreakerOpen != config.DefaultBreakerOpen ||
		c.BreakerMaxOpen != config.DefaultBreakerMaxOpen {
		t.Errorf("zero Config takes %+v, not package config's defaults", c)
	}
}

// TestAcquire_AnOriginThatDoesNotAnswerIsAskedLessOften: a request refused
// for its origin's share comes back after as long as the origin has gone
// without an answer, from 1 s to 30 s.
func TestAcquire_AnOriginThatDoesNotAnswerIsAskedLessOften(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := New(Config{OriginConcurrency: 1, MaxOriginConcurrency: 1, MaxQueued: 2, Now: clock.Now})
	req := Request{Origin: "http://hang", Key: "k"}
	stuck := mustAcquire(t, s, req) // never answers
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := acquireAsync(s, Request{Origin: "http://hang", Key: "k"}) // its share: 2/(1+1) = 1
	waitFor(t, "one waiting", func() bool { return s.Origin(req.Origin).Waiting == 1 })
	backIn := func() time.Duration {
		_, err := s.Acquire(ctx, req)
		r, ok := AsRefused(err)
		if !ok || r.Reason != ReasonQueueFull {
			t.Fatalf("err = %v, want refused: queue full", err)
		}
		return r.Until.Sub(clock.Now())
	}
	for _, c := range []struct {
		after, want time.Duration
	}{{0, time.Second}, {4 * time.Second, 4 * time.Second}, {60 * time.Second, 30 * time.Second}} {
		clock.Add(c.after)
		if got := backIn(); got != c.want {
			t.Errorf("%s after it became busy without an answer: back in %s, want %s", clock.Now().Sub(time.Unix(1_700_000_000, 0)), got, c.want)
		}
	}
	// An answer: the next refusal comes back in a second again.
	stuck.Done(Answered)
	r := <-waiting
	if r.err != nil {
		t.Fatal(r.err)
	}
	waiting = acquireAsync(s, req)
	waitFor(t, "one waiting again", func() bool { return s.Origin(req.Origin).Waiting == 1 })
	if got := backIn(); got != time.Second {
		t.Errorf("after an answer: back in %s, want 1s", got)
	}
	r.g.Done(Answered)
	if r := <-waiting; r.err == nil {
		r.g.Done(Answered)
	}
}

// TestAcquire_ARunOfTimeoutsCountsAcrossTheBreakersCycles: an origin that
// times out, idles while its breaker is open, and is busy again with its
// probe has still gone without an answer since its first timeout: what
// it cannot hold waits long, not a second.
func TestAcquire_ARunOfTimeoutsCountsAcrossTheBreakersCycles(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := New(Config{OriginConcurrency: 1, MaxOriginConcurrency: 1, MaxQueued: 2, BreakerThreshold: 1,
		BreakerOpen: time.Second, Now: clock.Now})
	req := Request{Origin: "http://hang", Key: "k"}
	mustAcquire(t, s, req).Done(Unreachable) // opens the breaker
	clock.Add(40 * time.Second)              // open, then idle
	probe := mustAcquire(t, s, req)
	defer probe.Release()
	w := acquireAsync(s, req)
	waitFor(t, "one waiting behind the probe", func() bool { return s.Origin(req.Origin).Waiting == 1 })
	_, err := s.Acquire(context.Background(), req)
	r, ok := AsRefused(err)
	if !ok || r.Reason != ReasonQueueFull {
		t.Fatalf("err = %v, want refused: queue full", err)
	}
	if back := r.Until.Sub(clock.Now()); back != 30*time.Second {
		t.Errorf("back in %s, want 30s: 40 s without an answer", back)
	}
	s.Close()
	<-w
}

// lender is a Tokens whose buckets hold what lend gave them.
type lender struct {
	mu       sync.Mutex
	have     map[string]int
	asked    map[string]int
	returned map[string]int
	ready    []func()
}

func newLender() *lender {
	return &lender{have: map[string]int{}, asked: map[string]int{}, returned: map[string]int{}}
}

func (l *lender) Take(bucket string, perMinute, waiting int, now time.Time, ready func()) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked[bucket]++
	if l.have[bucket] > 0 {
		l.have[bucket]--
		return true, time.Time{}
	}
	l.ready = append(l.ready, ready)
	return false, time.Time{}
}

func (l *lender) Return(bucket string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.have[bucket]++
	l.returned[bucket]++
}

// lend puts n tokens in bucket and wakes whoever waits.
func (l *lender) lend(bucket string, n int) {
	l.mu.Lock()
	l.have[bucket] += n
	ready := l.ready
	l.ready = nil
	l.mu.Unlock()
	for _, f := range ready {
		f()
	}
}

func (l *lender) count(m map[string]int, bucket string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return m[bucket]
}

func TestTokens_RateLimitedRequestWaitsForALentToken(t *testing.T) {
	l := newLender()
	s := New(Config{Tokens: l})
	defer s.Close()
	ch := acquireAsync(s, Request{Origin: "https://a:443", Key: "limited", Limits: Limits{PerMinute: 6000}})
	waitFor(t, "the request to ask for a token", func() bool { return l.count(l.asked, KeyBucket("limited")) > 0 })
	select {
	case r := <-ch:
		t.Fatalf("started without a lent token: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	l.lend(KeyBucket("limited"), 1)
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.g.Done(Answered)
	// A key without a rate never asks.
	g, err := s.Acquire(context.Background(), Request{Origin: "https://a:443", Key: "free"})
	if err != nil {
		t.Fatal(err)
	}
	g.Done(Answered)
	if n := l.count(l.asked, KeyBucket("free")); n != 0 {
		t.Fatalf("a key without a rate asked for %d tokens", n)
	}
}

// TestTokens_AKeysTokenIsGivenBackWhenItsOriginHasNone: a request held
// to its key's rate and its origin's needs a token of both; the key's,
// taken first, is given back while the origin's is missing, so that
// waiting for the origin spends none of the key's.
func TestTokens_AKeysTokenIsGivenBackWhenItsOriginHasNone(t *testing.T) {
	l := newLender()
	s := New(Config{Tokens: l})
	defer s.Close()
	key, origin := KeyBucket("limited"), OriginBucket("https://a:443")
	l.lend(key, 1)
	ch := acquireAsync(s, Request{Origin: "https://a:443", Key: "limited", Limits: Limits{PerMinute: 6000, OriginPerMinute: 6000}})
	waitFor(t, "the request to ask for its origin's token", func() bool { return l.count(l.asked, origin) > 0 })
	select {
	case r := <-ch:
		t.Fatalf("started without its origin's token: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	if n, have := l.count(l.returned, key), l.count(l.have, key); n == 0 || have != 1 {
		t.Fatalf("the key's token: returned %d times, %d left in its bucket; want it given back", n, have)
	}
	l.lend(origin, 1)
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.g.Done(Answered)
	if k, o := l.count(l.have, key), l.count(l.have, origin); k != 0 || o != 0 {
		t.Errorf("after the request: %d of the key's tokens and %d of the origin's left, want both spent", k, o)
	}
}

// TestRate_KeysOfAnOriginShareItsGrantedRate: the keys that carry their
// origin's granted rate start that many requests together, not each;
// a key of the origin that does not carry it is not held to it.
func TestRate_KeysOfAnOriginShareItsGrantedRate(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	s := New(Config{Now: clock.Now})
	defer s.Close()
	granted := func(key string) Request {
		return Request{Origin: "https://a:443", Key: key, Limits: Limits{OriginPerMinute: 60}}
	}
	// The origin's bucket holds two: a and b start, c waits.
	a, b := mustAcquire(t, s, granted("a")), mustAcquire(t, s, granted("b"))
	waiting := acquireAsync(s, granted("c"))
	waitFor(t, "the third key to wait", func() bool { return s.Origin("https://a:443").Waiting == 1 })
	// A key that does not carry the grant starts at once.
	mustAcquire(t, s, Request{Origin: "https://a:443", Key: "alone"}).Done(Answered)
	a.Done(Answered)
	select {
	case r := <-waiting:
		t.Fatalf("a third request started within the same second at 60 a minute: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	clock.Add(time.Second)
	b.Done(Answered) // looks at the origin again, a second later
	if r := <-waiting; r.err != nil {
		t.Fatal(r.err)
	} else {
		r.g.Done(Answered)
	}
}
