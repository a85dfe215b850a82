package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/store"
)

const (
	// ReplayWorkflowName is the registered name of Replay.
	ReplayWorkflowName = "Replay"
	// ProgressQuery answers a replay's ReplayProgress.
	ProgressQuery = "progress"
	// replayPage is how many deliveries a replay lists at once, and
	// replayPagesPerRun how many pages one run takes before it continues
	// as a new run (each resend adds a few history events).
	replayPage        = 100
	replayPagesPerRun = 5
)

// ReplayWorkflowID is the ID of a replay's workflow.
func ReplayWorkflowID(replayID string) string { return "replay/" + replayID }

// ReplayInput is a replay: every delivery of a subscription created in a
// window, in the given states, sent again at a bounded rate.
type ReplayInput struct {
	ReplayID       string
	SubscriptionID string
	From, To       time.Time
	// States are the delivery states replayed (delivered and dead: those
	// that can be sent again).
	States []store.DeliveryState
	// PerSecond bounds the resends started a second; each then waits its
	// turn in its sink's limits like any request.
	PerSecond int
	// After is where a continued run goes on from (the last delivery ID
	// listed), with the counts so far.
	After           string
	Resent, Skipped int
	ContinuedAsNew  int
}

// ReplayProgress is how far a replay is.
type ReplayProgress struct {
	SubscriptionID  string
	Resent, Skipped int
	// Examined is how many deliveries of the window were looked at.
	Examined int
	Done     bool
}

// Replay sends again every delivery of a window, through each one's own
// delivery workflow (a fresh series with the same webhook-id), paced; it
// survives restarts and shows its progress in the Temporal UI and to the
// progress query.
func Replay(ctx workflow.Context, in ReplayInput) (ReplayProgress, error) {
	ctx = workflow.WithActivityOptions(ctx, activityOptions)
	p := ReplayProgress{SubscriptionID: in.SubscriptionID, Resent: in.Resent, Skipped: in.Skipped, Examined: in.Resent + in.Skipped}
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (ReplayProgress, error) { return p, nil }); err != nil {
		return p, err
	}
	pace := time.Second / time.Duration(max(1, in.PerSecond))
	for range replayPagesPerRun {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("%d resent, %d skipped so far (subscription %s, %s to %s)",
			p.Resent, p.Skipped, in.SubscriptionID, in.From.UTC().Format(time.RFC3339), in.To.UTC().Format(time.RFC3339)))
		var page ReplayPageResult
		err := workflow.ExecuteActivity(ctx, acts.ReplayPage, ReplayPageInput{
			SubscriptionID: in.SubscriptionID, From: in.From, To: in.To, After: in.After, Limit: replayPage,
		}).Get(ctx, &page)
		if err != nil {
			return p, err
		}
		for _, d := range page.Deliveries {
			p.Examined++
			if !slices.Contains(in.States, d.State) {
				p.Skipped++
				continue
			}
			var sent bool
			if err := workflow.ExecuteActivity(ctx, acts.ResendOne, d.ID).Get(ctx, &sent); err != nil {
				return p, err
			}
			if sent {
				p.Resent++
			} else {
				p.Skipped++
			}
			if err := workflow.Sleep(ctx, pace); err != nil {
				return p, err
			}
		}
		if len(page.Deliveries) < replayPage {
			p.Done = true
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("done: %d resent, %d skipped", p.Resent, p.Skipped))
			return p, nil
		}
		in.After = page.Deliveries[len(page.Deliveries)-1].ID
	}
	next := in
	next.Resent, next.Skipped, next.ContinuedAsNew = p.Resent, p.Skipped, in.ContinuedAsNew+1
	return p, workflow.NewContinueAsNewError(ctx, ReplayWorkflowName, next)
}

// ReplayPageInput lists a page of a replay's window.
type ReplayPageInput struct {
	SubscriptionID string
	From, To       time.Time
	After          string
	Limit          int
}

// ReplayPageResult is a page: deliveries and their states.
type ReplayPageResult struct {
	Deliveries []ReplayDelivery
}

// ReplayDelivery is one delivery of a replay's window.
type ReplayDelivery struct {
	ID    string
	State store.DeliveryState
}

// ReplayPage lists a page of a subscription's deliveries created in the
// window, newest first, after a cursor.
func (a *Activities) ReplayPage(ctx context.Context, in ReplayPageInput) (ReplayPageResult, error) {
	ds, err := a.Store.DeliveryList(ctx, store.DeliveryListParams{
		SubscriptionID: in.SubscriptionID, CreatedFrom: in.From, CreatedTo: in.To, After: in.After, Limit: in.Limit,
	})
	if err != nil {
		return ReplayPageResult{}, err
	}
	out := ReplayPageResult{Deliveries: make([]ReplayDelivery, len(ds))}
	for i, d := range ds {
		out.Deliveries[i] = ReplayDelivery{ID: d.ID, State: d.State}
	}
	return out, nil
}

// Resender sends a finished delivery again (redrive.Redriver).
type Resender interface {
	Resend(ctx context.Context, d *store.Delivery) error
}

// ResendOne sends a delivery again, and says whether it did: one that is
// being sent already (or whose subscription is not active) is skipped.
func (a *Activities) ResendOne(ctx context.Context, deliveryID string) (bool, error) {
	d, err := a.Store.DeliveryGet(ctx, deliveryID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil // pruned meanwhile
	}
	if err != nil {
		return false, err
	}
	if a.Resender == nil {
		return false, temporal.NewNonRetryableApplicationError("this worker cannot resend", "NoResender", nil)
	}
	err = a.Resender.Resend(ctx, d)
	if errors.Is(err, lifecycle.ErrIllegal) || errors.Is(err, lifecycle.ErrInactive) {
		return false, nil // being sent already, or its subscription is not active
	}
	return err == nil, err
}
