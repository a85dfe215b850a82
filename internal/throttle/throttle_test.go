package throttle

import (
	"testing"
	"time"
)

func TestTryAcquire_NoLimitsAlwaysAllows(t *testing.T) {
	th := New()
	for range 1000 {
		if _, _, ok := th.TryAcquire("s", Limits{}, time.Now()); !ok {
			t.Fatal("refused without limits")
		}
	}
}

func TestTryAcquire_RateSpacesRequests(t *testing.T) {
	th := New()
	now := time.Unix(1000, 0)
	l := Limits{PerMinute: 60} // one a second
	if _, _, ok := th.TryAcquire("s", l, now); !ok {
		t.Fatal("first request refused")
	}
	_, wait, ok := th.TryAcquire("s", l, now.Add(100*time.Millisecond))
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("second request at +100ms: ok=%v wait=%s, want refused with a wait up to 1s", ok, wait)
	}
	if _, _, ok := th.TryAcquire("s", l, now.Add(time.Second)); !ok {
		t.Error("request a second later refused")
	}
	// Another sink is independent.
	if _, _, ok := th.TryAcquire("other", l, now.Add(100*time.Millisecond)); !ok {
		t.Error("another sink was throttled")
	}
}

func TestTryAcquire_ConcurrencyCapsInFlight(t *testing.T) {
	th := New()
	l := Limits{Concurrency: 2}
	r1, _, ok1 := th.TryAcquire("s", l, time.Now())
	_, _, ok2 := th.TryAcquire("s", l, time.Now())
	_, _, ok3 := th.TryAcquire("s", l, time.Now())
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("ok = %v %v %v, want true true false", ok1, ok2, ok3)
	}
	r1()
	r1() // releasing twice frees one slot only
	if _, _, ok := th.TryAcquire("s", l, time.Now()); !ok {
		t.Error("slot not freed by release")
	}
	if _, _, ok := th.TryAcquire("s", l, time.Now()); ok {
		t.Error("a double release freed two slots")
	}
}
