package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// DefaultSuspendAfter is how long a subscription's sink may fail
// continuously before it is suspended, unless the subscription or the
// node (--suspend-after) says otherwise.
const DefaultSuspendAfter = 72 * time.Hour

// healthRecheck is how often at most a node reads a subscription's stored
// failure run while attempt outcomes agree with what it knows.
const healthRecheck = time.Second

// Health tracks, from the outcomes of attempts, since when each
// subscription's sink has failed continuously, and suspends a subscription
// whose sink has failed for its SuspendAfter.
//
// The run is kept on the subscription (FailingSince): set by the first
// failed attempt after a success, cleared by a success, on any node. It
// is checked where attempt outcomes are recorded (the dispatcher's first
// attempts and the workflows' retries), not by a periodic sweep: a sink
// that fails is attempted again by its retries, so the outcome that
// crosses the threshold comes soon after it, and no node has to examine
// every subscription. A node writes the subscription only when an outcome
// disagrees with what it knows of the run (its own last second's, or the
// catalog's), and decides a suspension on the stored run, so
// nodes that disagree (one sees successes, another failures) never
// suspend a sink that answers.
//
// A Health is safe for concurrent use; its zero value tracks but never
// tells (Suspended nil).
type Health struct {
	Store SubscriptionUpdater
	// SuspendAfter is the node's default (zero: DefaultSuspendAfter); a
	// subscription's own SuspendAfter wins.
	SuspendAfter time.Duration
	// Suspended, if set, is called after this node suspended sub (to
	// publish the operational event and reload the catalog).
	Suspended func(ctx context.Context, sub *store.Subscription)

	mu    sync.Mutex
	known map[string]run
}

// run is what a node knows of a subscription's failure run.
type run struct {
	since time.Time // the stored FailingSince; zero: succeeding
	read  time.Time // when it was last read or written
}

// errUnchanged ends a SubscriptionUpdate that has nothing to store.
var errUnchanged = errors.New("unchanged")

// SuspendAfter is how long sub's sink may fail before it is suspended.
func (h *Health) suspendAfter(sub *store.Subscription) time.Duration {
	switch {
	case sub.SuspendAfter > 0:
		return sub.SuspendAfter
	case h.SuspendAfter > 0:
		return h.SuspendAfter
	}
	return DefaultSuspendAfter
}

// Observe records that an attempt to sub's sink made at at succeeded (ok)
// or failed (what says how: a status or an error). It reports whether
// this suspended the subscription. sub is the caller's copy (the
// catalog's, or a fresh read); errors are the store's.
func (h *Health) Observe(ctx context.Context, sub *store.Subscription, ok bool, what string, at time.Time) (bool, error) {
	if h == nil || sub == nil {
		return false, nil
	}
	after := h.suspendAfter(sub)
	h.mu.Lock()
	r, seen := h.known[sub.ID]
	h.mu.Unlock()
	// What this node wrote or read in the last second, else the caller's
	// copy (the catalog's is at most a reload old).
	since := sub.FailingSince
	if seen && at.Sub(r.read) < healthRecheck {
		since = r.since
	}
	switch {
	case ok && since.IsZero():
		return false, nil // succeeding, as known
	case !ok && !since.IsZero() && (at.Sub(since) < after || sub.State != store.SubscriptionActive):
		return false, nil // failing, as known, not for long enough
	}
	suspended := false
	stored, err := h.Store.SubscriptionUpdate(ctx, sub.ID, func(s *store.Subscription) error {
		switch {
		case ok && s.FailingSince.IsZero():
			return errUnchanged
		case ok:
			s.FailingSince = time.Time{}
		case s.FailingSince.IsZero():
			s.FailingSince = at
		case s.State == store.SubscriptionActive && at.Sub(s.FailingSince) >= h.suspendAfter(s):
			s.State = store.SubscriptionSuspended
			s.StateReason = fmt.Sprintf("the sink failed every attempt since %s (suspend after %s); last: %s",
				s.FailingSince.UTC().Format(time.RFC3339), h.suspendAfter(s), what)
			suspended = true
		default:
			r.since = s.FailingSince
			return errUnchanged
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.forget(sub.ID)
		return false, nil
	case errors.Is(err, errUnchanged):
		if ok {
			r.since = time.Time{}
		}
	case err != nil:
		return false, fmt.Errorf("record the sink's health: %w", err)
	default:
		r.since = stored.FailingSince
	}
	r.read = at
	h.mu.Lock()
	if h.known == nil {
		h.known = map[string]run{}
	}
	h.known[sub.ID] = r
	h.mu.Unlock()
	if suspended && h.Suspended != nil {
		h.Suspended(ctx, stored)
	}
	return suspended, nil
}

// forget drops what is known of a subscription (it was deleted).
func (h *Health) forget(id string) {
	h.mu.Lock()
	delete(h.known, id)
	h.mu.Unlock()
}

// Describe says in a few words how attempt rec ended, for a suspension's
// reason.
func Describe(rec *store.Attempt) string {
	switch {
	case rec.StatusCode != 0 && rec.Error != "":
		return fmt.Sprintf("status %d: %s", rec.StatusCode, cutReason(rec.Error))
	case rec.StatusCode != 0:
		return fmt.Sprintf("status %d", rec.StatusCode)
	case rec.Error != "":
		return cutReason(rec.Error)
	}
	return "no answer"
}

// cutReason shortens an attempt's error for a state reason.
func cutReason(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
