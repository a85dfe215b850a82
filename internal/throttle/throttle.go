// Package throttle keeps each sink to its rate limit and concurrency limit
// within one Herald node.
//
// Callers ask with TryAcquire and reschedule a delivery they may not send
// yet (the dispatcher sets its NextAt, a workflow sleeps), so a slow sink
// never holds a goroutine that another sink could use. First attempts and
// retries share one Throttle per node, so both count against the limits.
package throttle

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits are one sink's limits; zero fields mean no limit.
type Limits struct {
	PerMinute   int // requests started per minute
	Concurrency int // requests in flight at once
}

// Throttle tracks every sink's limits. The zero value is not usable; use
// New. Safe for concurrent use.
type Throttle struct {
	mu    sync.Mutex
	sinks map[string]*sink
}

type sink struct {
	limits   Limits
	limiter  *rate.Limiter // nil: no rate limit
	inFlight int
}

// New returns an empty Throttle.
func New() *Throttle {
	return &Throttle{sinks: map[string]*sink{}}
}

func (t *Throttle) get(key string, l Limits) *sink {
	s, ok := t.sinks[key]
	if !ok || s.limits != l {
		ns := &sink{limits: l}
		if ok {
			ns.inFlight = s.inFlight
		}
		if l.PerMinute > 0 {
			// A burst of one request keeps requests evenly spaced.
			ns.limiter = rate.NewLimiter(rate.Limit(float64(l.PerMinute)/60), 1)
		}
		t.sinks[key] = ns
		s = ns
	}
	return s
}

// TryAcquire takes a slot for one request to the sink named key, if the
// limits allow one now. Otherwise it returns false and how long to wait
// before asking again. Call release when the request ends.
func (t *Throttle) TryAcquire(key string, l Limits, now time.Time) (release func(), wait time.Duration, ok bool) {
	if l == (Limits{}) {
		return func() {}, 0, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.get(key, l)
	if l.Concurrency > 0 && s.inFlight >= l.Concurrency {
		return nil, 10 * time.Millisecond, false
	}
	if s.limiter != nil {
		r := s.limiter.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return nil, d, false
		}
	}
	s.inFlight++
	return t.releaser(key, s), 0, true
}

func (t *Throttle) releaser(key string, s *sink) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			cur := t.sinks[key]
			if cur == nil {
				cur = s
			}
			cur.inFlight--
		})
	}
}
