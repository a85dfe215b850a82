package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/handshake"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/opsevents"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
)

// Store is what the activities read and write.
type Store interface {
	DeliveryGet(ctx context.Context, id string) (*store.Delivery, error)
	DeliveryUpdateBatch(ctx context.Context, updates []store.DeliveryUpdate) error
	SubscriptionGet(ctx context.Context, id string) (*store.Subscription, error)
	SubscriptionUpdate(ctx context.Context, id string, change func(*store.Subscription) error) (*store.Subscription, error)
	DeliveryList(ctx context.Context, p store.DeliveryListParams) ([]*store.Delivery, error)
}

// Activities are the side effects of the Delivery workflow. Each is
// idempotent: Temporal may run one more than once.
type Activities struct {
	Store     Store
	Attempter *attempt.Attempter
	Handshake *handshake.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SubscriptionChanged, if set, is called after an activity changed a
	// subscription (a pause or a disable), e.g. to reload the catalog.
	SubscriptionChanged func(ctx context.Context)
	// Resender sends finished deliveries again, for replays; nil: none.
	Resender Resender
	// Ops publishes Herald's operational events (a dead letter, a disabled
	// subscription, a failed validation); nil publishes none.
	Ops *opsevents.Emitter
	// Health, if set, is told every attempt's outcome, and suspends a
	// subscription whose sink fails for long enough (its Suspended tells
	// about it).
	Health *lifecycle.Health
}

func (a *Activities) changed(ctx context.Context) {
	if a.SubscriptionChanged != nil {
		a.SubscriptionChanged(ctx)
	}
}

func (a *Activities) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// AttemptInput names the delivery to attempt and the attempt's number.
type AttemptInput struct {
	DeliveryID     string
	SubscriptionID string
	Number         int
}

// AttemptResult is what one attempt did.
type AttemptResult struct {
	Outcome    policy.Outcome
	StatusCode int
	Error      string
	RetryAfter time.Duration
	// PausedUntil is set, and nothing was sent, when the sink is paused by
	// an earlier Retry-After.
	PausedUntil time.Time
	// AlreadyDelivered is true when the delivery was found delivered and
	// nothing was sent.
	AlreadyDelivered bool
	// Held is true when the subscription was found suspended or disabled:
	// nothing was sent and the delivery is held in the store.
	Held bool
}

// Attempt sends the delivery once, unless it is delivered already or its
// sink is paused, and records the attempt. A 429 or 503 with Retry-After
// pauses every delivery to the sink.
func (a *Activities) Attempt(ctx context.Context, in AttemptInput) (AttemptResult, error) {
	d, err := a.Store.DeliveryGet(ctx, in.DeliveryID)
	if err != nil {
		return AttemptResult{}, fmt.Errorf("load delivery: %w", err)
	}
	if d.State == store.DeliveryDelivered {
		return AttemptResult{Outcome: policy.Delivered, AlreadyDelivered: true}, nil
	}
	sub, err := a.Store.SubscriptionGet(ctx, in.SubscriptionID)
	if errors.Is(err, store.ErrNotFound) {
		sub, err = nil, nil
	}
	if err != nil {
		return AttemptResult{}, fmt.Errorf("load subscription: %w", err)
	}
	now := a.now()
	switch gate := lifecycle.Gate(sub, time.Time{}, now); gate.Verdict {
	case lifecycle.Drop:
		return AttemptResult{Outcome: policy.Permanent, Error: gate.Reason}, nil
	case lifecycle.Withhold:
		if err := a.Store.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{lifecycle.Parked(d)}); err != nil {
			return AttemptResult{}, fmt.Errorf("hold delivery: %w", err)
		}
		return AttemptResult{Held: true}, nil
	case lifecycle.Wait:
		// Wait without spending an attempt; the maximum age still applies.
		return AttemptResult{PausedUntil: gate.Until}, nil
	}
	en, err := catalog.NewEntry(sub)
	if err != nil {
		return AttemptResult{}, temporal.NewNonRetryableApplicationError("bad signing key", "BadSecret", err)
	}
	// A Retry-After from the sink's origin, to any node, holds this too.
	if until := a.Attempter.PausedUntil(en); until.After(now) {
		return AttemptResult{PausedUntil: until}, nil
	}
	// Wait for this request's turn among the sink's, but not so long that
	// the activity would time out while sending.
	startBy := time.Time{}
	if deadline, ok := ctx.Deadline(); ok {
		startBy = deadline.Add(-policy.RequestTimeout - attemptMargin)
	}
	results, err := a.Attempter.Do(ctx, []*store.Delivery{d}, nil, en, in.Number, startBy)
	if err != nil {
		if ctx.Err() != nil {
			return AttemptResult{}, err
		}
		// Not sent: the sink's origin is cut off by its circuit breaker,
		// has too many requests waiting, or this node is stopping. Wait
		// without spending an attempt.
		until := now.Add(time.Second)
		if r, ok := scheduler.AsRefused(err); ok && r.Until.After(until) {
			until = r.Until
		}
		return AttemptResult{PausedUntil: until}, nil
	}
	res := results[0]
	err = a.Store.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{
		lifecycle.Attempted(d.ID, &res.Record, res.Outcome == policy.Delivered)})
	if err != nil {
		return AttemptResult{}, fmt.Errorf("record attempt: %w", err)
	}
	if res.PauseSink {
		if err := lifecycle.Pause(ctx, a.Store, sub.ID, res.Record.StartedAt.Add(res.RetryAfter)); err != nil {
			return AttemptResult{}, err
		}
		a.changed(ctx)
	}
	if _, err := a.Health.Observe(ctx, sub, res.Outcome == policy.Delivered, lifecycle.Describe(&res.Record), a.now()); err != nil {
		// Not an error of the activity: the attempt is sent and recorded,
		// and the next outcome is observed again.
		activity.GetLogger(ctx).Warn("record sink health", "subscription", sub.ID, "err", err)
	}
	return AttemptResult{
		Outcome:    res.Outcome,
		StatusCode: res.Record.StatusCode,
		Error:      res.Record.Error,
		RetryAfter: res.RetryAfter,
	}, nil
}

// attemptMargin is the time an Attempt activity keeps, after its
// request's timeout, to record the result before the activity times out.
const attemptMargin = 5 * time.Second

// MarkDeadInput dead-letters a delivery.
type MarkDeadInput struct {
	DeliveryID string
	Attempts   int
	LastStatus int
	Reason     string
}

// MarkDead records that a delivery is dead-lettered, and why, and says so
// in an operational event.
func (a *Activities) MarkDead(ctx context.Context, in MarkDeadInput) error {
	metrics.DeadLetters.Inc()
	if err := a.Store.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{
		lifecycle.DeadLettered(in.DeliveryID, in.Attempts, in.LastStatus, in.Reason)}); err != nil {
		return err
	}
	if a.Ops == nil {
		return nil
	}
	d, err := a.Store.DeliveryGet(ctx, in.DeliveryID)
	if err != nil {
		return fmt.Errorf("load delivery: %w", err)
	}
	sub, err := a.Store.SubscriptionGet(ctx, d.SubscriptionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted meanwhile: nobody to tell about
	}
	if err != nil {
		return fmt.Errorf("load subscription: %w", err)
	}
	return a.Ops.DeliveryDead(ctx, sub, d, in.Reason)
}

// MarkRetrying records that a delivery is being retried again (a redrive).
func (a *Activities) MarkRetrying(ctx context.Context, deliveryID string) error {
	d, err := a.Store.DeliveryGet(ctx, deliveryID)
	if err != nil {
		return fmt.Errorf("load delivery: %w", err)
	}
	return a.Store.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{lifecycle.Resumed(d)})
}

// DisableInput disables a subscription.
type DisableInput struct {
	SubscriptionID string
	Reason         string
}

// DisableSubscription stops all deliveries to a subscription until it is
// re-enabled (after its sink answered 410 Gone).
func (a *Activities) DisableSubscription(ctx context.Context, in DisableInput) error {
	var disabled bool
	sub, err := a.changeSubscription(ctx, in.SubscriptionID, func(sub *store.Subscription) {
		if sub.State != store.SubscriptionDisabled {
			sub.State, sub.StateReason, disabled = store.SubscriptionDisabled, in.Reason, true
		}
	})
	if err != nil || sub == nil || !disabled {
		return err
	}
	return a.Ops.SubscriptionChanged(ctx, sub, opsevents.SubscriptionDisabled, in.Reason, sub.UpdatedAt)
}
