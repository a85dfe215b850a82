package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
)

// Verdict is what Gate decided for a delivery.
type Verdict int

const (
	// Send: the delivery may be attempted now.
	Send Verdict = iota
	// Wait: hold the delivery until Decision.Until without spending an
	// attempt (its maximum age still applies).
	Wait
	// Drop: never send it; it is dead-lettered with Decision.Reason.
	Drop
	// Withhold: keep it held, not attempted, until its subscription is
	// enabled (it is suspended or disabled).
	Withhold
)

// Reasons Gate gives, as operators see them on deliveries.
const (
	ReasonDeleted         = "subscription deleted"
	ReasonDisabled        = "subscription disabled"
	ReasonSuspended       = "subscription suspended"
	ReasonAwaitingConsent = "waiting for the sink to consent (validation handshake)"
	ReasonNoConsent       = "the sink did not consent to deliveries (validation handshake) within the maximum age"
	ReasonPaused          = "the sink asked to wait (Retry-After)"
)

// Decision is Gate's answer.
type Decision struct {
	Verdict Verdict
	Until   time.Time // with Wait: when to look again
	Reason  string
}

// Gate decides whether a delivery to sub may be sent at now. sub nil means
// the subscription was deleted. pausedUntil is the latest pause known for
// the sink (a Retry-After), which may be newer than sub.PausedUntil. Rate
// and concurrency limits are not Gate's: the sender keeps to them.
func Gate(sub *store.Subscription, pausedUntil, now time.Time) Decision {
	switch {
	case sub == nil:
		return Decision{Verdict: Drop, Reason: ReasonDeleted}
	case sub.State == store.SubscriptionDisabled:
		return Decision{Verdict: Withhold, Reason: ReasonDisabled + ": " + sub.StateReason}
	case sub.State == store.SubscriptionSuspended:
		return Decision{Verdict: Withhold, Reason: ReasonSuspended + ": " + sub.StateReason}
	case sub.State == store.SubscriptionPendingValidation:
		return Decision{Verdict: Wait, Until: now.Add(policy.ValidationRecheck), Reason: ReasonAwaitingConsent}
	}
	if sub.PausedUntil.After(pausedUntil) {
		pausedUntil = sub.PausedUntil
	}
	if pausedUntil.After(now) {
		return Decision{Verdict: Wait, Until: pausedUntil, Reason: ReasonPaused}
	}
	return Decision{Verdict: Send}
}

// SubscriptionUpdater changes a stored subscription (store.Store's
// SubscriptionUpdate).
type SubscriptionUpdater interface {
	SubscriptionUpdate(ctx context.Context, id string, change func(*store.Subscription) error) (*store.Subscription, error)
}

// Pause holds back every delivery to a subscription's sink until until
// (Gate then says Wait), unless it is paused longer already. A deleted
// subscription needs no pause.
func Pause(ctx context.Context, s SubscriptionUpdater, subID string, until time.Time) error {
	_, err := s.SubscriptionUpdate(ctx, subID, func(sub *store.Subscription) error {
		if until.After(sub.PausedUntil) {
			sub.PausedUntil = until
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("pause subscription: %w", err)
	}
	return nil
}
