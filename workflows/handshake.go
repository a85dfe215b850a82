package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/heraldhq/herald/internal/handshake"
	"github.com/heraldhq/herald/internal/opsevents"
	"github.com/heraldhq/herald/internal/store"
)

// Names of the handshake workflow.
const (
	// HandshakeWorkflowName is the registered name of Handshake.
	HandshakeWorkflowName = "Handshake"
	// GrantSignal carries an asynchronous grant (a GrantInput) from
	// Herald's callback URL to the waiting Handshake workflow.
	GrantSignal = "grant"
	// CallbackTimeout is how long a sink has to grant through the callback
	// URL, and how long the URL's token is valid.
	CallbackTimeout = 24 * time.Hour
)

// HandshakeWorkflowID is the ID of a subscription's handshake workflow.
func HandshakeWorkflowID(subscriptionID string) string {
	return "handshake/" + subscriptionID
}

// HandshakeInput starts a subscription's validation handshake.
type HandshakeInput struct {
	SubscriptionID string
	// Origin is sent as WebHook-Request-Origin.
	Origin string
	// CallbackBase is the URL of Herald's validation callbacks, e.g.
	// https://herald.example.com/v1/validation; the subscription ID and a
	// secret token are appended.
	CallbackBase string
}

// GrantInput is an asynchronous grant: the rate the sink allows (0: none).
type GrantInput struct {
	Rate int
}

// handshakeActivityOptions retry a sink that answers 429/5xx or does not
// answer, for about an hour, then give up (ValidateSubscription retries).
var handshakeActivityOptions = workflow.ActivityOptions{
	StartToCloseTimeout: time.Minute,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        5 * time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        10 * time.Minute,
		MaximumAttempts:        10,
		NonRetryableErrorTypes: []string{"InvalidHandshake"},
	},
}

// Handshake asks a subscription's sink for consent (the CloudEvents webhook
// validation handshake) and activates the subscription when it is given,
// at once in the OPTIONS response or later through the callback URL.
func Handshake(ctx workflow.Context, in HandshakeInput) (string, error) {
	var res ValidateResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, handshakeActivityOptions),
		acts.Validate, in).Get(ctx, &res)
	ctx = workflow.WithActivityOptions(ctx, activityOptions)
	if err != nil {
		return "failed", workflow.ExecuteActivity(ctx, acts.MarkUnvalidated, UnvalidatedInput{
			SubscriptionID: in.SubscriptionID, Reason: "validation handshake failed: " + err.Error(),
		}).Get(ctx, nil)
	}
	switch res.Outcome {
	case handshake.Granted.String():
		return "granted", workflow.ExecuteActivity(ctx, acts.MarkValidated, ValidatedInput{
			SubscriptionID: in.SubscriptionID, AllowedRate: res.AllowedRate,
		}).Get(ctx, nil)
	case handshake.Pending.String():
		var grant GrantInput
		granted := false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(workflow.GetSignalChannel(ctx, GrantSignal), func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, &grant)
			granted = true
		})
		sel.AddFuture(workflow.NewTimer(ctx, CallbackTimeout), func(workflow.Future) {})
		sel.Select(ctx)
		if granted {
			return "granted by callback", workflow.ExecuteActivity(ctx, acts.MarkValidated, ValidatedInput{
				SubscriptionID: in.SubscriptionID, AllowedRate: grant.Rate,
			}).Get(ctx, nil)
		}
		return "no grant", workflow.ExecuteActivity(ctx, acts.MarkUnvalidated, UnvalidatedInput{
			SubscriptionID: in.SubscriptionID, Reason: "the sink did not grant through the callback within " + CallbackTimeout.String(),
		}).Get(ctx, nil)
	default:
		return "refused", workflow.ExecuteActivity(ctx, acts.MarkUnvalidated, UnvalidatedInput{
			SubscriptionID: in.SubscriptionID, Reason: "the sink refused deliveries: " + res.Reason,
		}).Get(ctx, nil)
	}
}

// ValidateResult is the sink's answer to the OPTIONS request.
type ValidateResult struct {
	Outcome     string // handshake.Outcome's String
	AllowedRate int
	StatusCode  int
	Reason      string
}

// Validate sends the OPTIONS request to the subscription's sink. It makes
// a fresh callback token for each request and keeps only its hash, so the
// token never appears in the workflow's history.
func (a *Activities) Validate(ctx context.Context, in HandshakeInput) (ValidateResult, error) {
	sub, err := a.Store.SubscriptionGet(ctx, in.SubscriptionID)
	if errors.Is(err, store.ErrNotFound) {
		return ValidateResult{Outcome: handshake.Refused.String(), Reason: "subscription deleted"}, nil
	}
	if err != nil {
		return ValidateResult{}, fmt.Errorf("load subscription: %w", err)
	}
	token, hash, err := handshake.NewCallbackToken()
	if err != nil {
		return ValidateResult{}, err
	}
	sub, err = a.Store.SubscriptionUpdate(ctx, sub.ID, func(sub *store.Subscription) error {
		sub.Validation = &store.Validation{TokenHash: hash, ExpiresAt: a.now().Add(CallbackTimeout), RequestedRate: sub.RateLimit}
		return nil
	})
	if err != nil {
		return ValidateResult{}, fmt.Errorf("store callback token: %w", err)
	}
	req := handshake.Request{
		Sink:   sub.Sink,
		Origin: in.Origin,
		Rate:   sub.RateLimit,
	}
	if in.CallbackBase != "" {
		req.CallbackURL = in.CallbackBase + "/" + sub.ID + "/" + token
	}
	if sub.BearerToken != "" {
		req.Headers = map[string]string{"Authorization": "Bearer " + sub.BearerToken}
	}
	res, err := a.Handshake.Validate(ctx, req)
	if errors.Is(err, handshake.ErrInvalidRequest) {
		return ValidateResult{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidHandshake", err)
	}
	if err != nil {
		return ValidateResult{}, err
	}
	return ValidateResult{Outcome: res.Outcome.String(), AllowedRate: res.AllowedRate, StatusCode: res.StatusCode, Reason: res.Reason}, nil
}

// ValidatedInput activates a subscription after the sink consented.
type ValidatedInput struct {
	SubscriptionID string
	AllowedRate    int
}

// MarkValidated activates a subscription that was pending validation,
// with the rate the sink allowed, and ends its callback token.
func (a *Activities) MarkValidated(ctx context.Context, in ValidatedInput) error {
	return a.updateSubscription(ctx, in.SubscriptionID, func(sub *store.Subscription) {
		if sub.State == store.SubscriptionPendingValidation {
			sub.State, sub.StateReason = store.SubscriptionActive, ""
		}
		sub.AllowedRate = in.AllowedRate
		sub.Validation = nil
	})
}

// UnvalidatedInput records why a handshake did not get consent.
type UnvalidatedInput struct {
	SubscriptionID string
	Reason         string
}

// MarkUnvalidated records why the sink has not consented; the
// subscription stays pending validation.
func (a *Activities) MarkUnvalidated(ctx context.Context, in UnvalidatedInput) error {
	var changed bool
	sub, err := a.changeSubscription(ctx, in.SubscriptionID, func(sub *store.Subscription) {
		if sub.State == store.SubscriptionPendingValidation && sub.StateReason != in.Reason {
			sub.StateReason, changed = in.Reason, true
		}
	})
	if err != nil || sub == nil || !changed {
		return err
	}
	// Each new reason is told once (a handshake retried for the same
	// reason is not news).
	return a.Ops.SubscriptionChanged(ctx, sub, opsevents.ValidationFailed, in.Reason, sub.UpdatedAt)
}

func (a *Activities) updateSubscription(ctx context.Context, id string, change func(*store.Subscription)) error {
	_, err := a.changeSubscription(ctx, id, change)
	return err
}

// changeSubscription changes a subscription and returns it (nil if it no
// longer exists).
func (a *Activities) changeSubscription(ctx context.Context, id string, change func(*store.Subscription)) (*store.Subscription, error) {
	sub, err := a.Store.SubscriptionUpdate(ctx, id, func(sub *store.Subscription) error {
		change(sub)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("update subscription: %w", err)
	}
	a.changed(ctx)
	return sub, nil
}
