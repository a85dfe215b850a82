// Package redrive sends deliveries again: a dead letter, every dead letter
// of a subscription at a bounded rate, or any finished delivery (resend),
// each through its workflow with a fresh series of attempts and the same
// webhook-id.
package redrive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// Errors Redrive returns (wrapped). A delivery that is not dead fails
// with lifecycle.ErrIllegal.
var (
	// ErrInactive: the delivery's subscription is not active; enable it
	// first.
	ErrInactive = lifecycle.ErrInactive
	// ErrUnavailable: the workflow could not be signalled or started;
	// retry.
	ErrUnavailable = errors.New("redrive: workflows unavailable")
)

// Store is what a redrive reads and writes.
type Store interface {
	SubscriptionGet(ctx context.Context, id string) (*store.Subscription, error)
	DeliveryList(ctx context.Context, p store.DeliveryListParams) ([]*store.Delivery, error)
	DeliveryUpdateBatch(ctx context.Context, updates []store.DeliveryUpdate) error
}

// Workflows restarts a dead-lettered delivery on its workflow.
type Workflows interface {
	Redrive(ctx context.Context, in workflows.DeliveryInput) error
}

// Redriver redrives dead letters.
type Redriver struct {
	Store     Store
	Workflows Workflows
}

// One hands dead delivery d back to its workflow (starting one if it has
// none) and records it as retrying.
func (r *Redriver) One(ctx context.Context, d *store.Delivery) error {
	update, err := lifecycle.Redriven(d)
	if err != nil {
		return err
	}
	return r.send(ctx, d, update, "redriving")
}

// Resend sends delivered or dead delivery d again, through its workflow,
// and records it as retrying.
func (r *Redriver) Resend(ctx context.Context, d *store.Delivery) error {
	update, err := lifecycle.Resent(d)
	if err != nil {
		return err
	}
	return r.send(ctx, d, update, "resending")
}

// send hands d to its workflow for a fresh series and records update.
func (r *Redriver) send(ctx context.Context, d *store.Delivery, update store.DeliveryUpdate, doing string) error {
	sub, err := r.Store.SubscriptionGet(ctx, d.SubscriptionID)
	if err != nil {
		return fmt.Errorf("subscription %s: %w", d.SubscriptionID, err)
	}
	if sub.State != store.SubscriptionActive {
		return fmt.Errorf("%w: subscription %s is %s (%s); enable it before %s", ErrInactive, sub.ID, sub.State, sub.StateReason, doing)
	}
	err = r.Workflows.Redrive(ctx, workflows.DeliveryInput{
		DeliveryID:     d.ID,
		SubscriptionID: d.SubscriptionID,
		EventType:      d.EventType,
		SinkHost:       delivery.SinkHost(sub.Sink),
		SeriesStart:    time.Now(),
		TotalAttempts:  d.Attempts,
		LastStatus:     d.LastStatus,
		Policy:         sub.RetryPolicy,
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := r.Store.DeliveryUpdateBatch(ctx, []store.DeliveryUpdate{update}); err != nil {
		return fmt.Errorf("delivery %s: %w", d.ID, err)
	}
	return nil
}

// page is how many dead letters are listed at once.
const page = 500

// DeadLetters redrives every dead letter of subscription subID created at
// or after since (zero: all), perSecond a second at most, and returns how
// many it redrove. It stops at the first error, or when ctx ends.
func (r *Redriver) DeadLetters(ctx context.Context, subID string, since time.Time, perSecond int) (int, error) {
	if perSecond <= 0 {
		return 0, errors.New("redrive: the rate must be positive")
	}
	if _, err := r.Store.SubscriptionGet(ctx, subID); err != nil {
		return 0, fmt.Errorf("subscription %s: %w", subID, err)
	}
	p := store.DeliveryListParams{SubscriptionID: subID, State: store.DeliveryDead, CreatedFrom: since, Limit: page}
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	n := 0
	for {
		ds, err := r.Store.DeliveryList(ctx, p)
		if err != nil {
			return n, fmt.Errorf("list dead letters: %w", err)
		}
		for _, d := range ds {
			select {
			case <-ctx.Done():
				return n, ctx.Err()
			case <-tick.C:
			}
			if err := r.One(ctx, d); err != nil {
				return n, err
			}
			n++
		}
		if len(ds) < p.Limit {
			return n, nil
		}
		p.After = ds[len(ds)-1].ID
	}
}
