package workflows

import (
	"fmt"
	"math/rand/v2"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/heraldhq/herald/internal/policy"
)

// DeliveryInput starts a delivery's workflow: the delivery, its
// subscription's retry policy, and the attempts already made.
type DeliveryInput struct {
	DeliveryID     string
	SubscriptionID string
	EventType      string
	SinkHost       string
	// SeriesStart is when the current series of attempts began (publish
	// time, or the redrive): no attempt starts after SeriesStart plus the
	// policy's MaximumAge.
	SeriesStart time.Time
	// Attempts is how many attempts were made before this workflow, in this
	// series (1 when the dispatcher's first attempt failed).
	Attempts int
	// TotalAttempts is how many attempts were made in all.
	TotalAttempts int
	// LastOutcome, LastStatus, LastError and RetryAfter describe the last
	// attempt.
	LastOutcome policy.Outcome
	LastStatus  int
	LastError   string
	RetryAfter  time.Duration
	// Policy is the subscription's retry policy.
	Policy policy.Retry
	// Redrive starts the workflow with a fresh series of attempts (a
	// redrive of a delivery that was dead-lettered without a workflow).
	Redrive bool
}

// DeliveryResult is how a delivery's workflow ended.
type DeliveryResult struct {
	Attempts int
}

// acts names the activities for ExecuteActivity; it is never dereferenced.
var acts *Activities

// activityOptions apply to every activity. An activity error means Herald's
// own store or bookkeeping failed (an HTTP failure is a result, not an
// error), so it is retried until it works.
var activityOptions = workflow.ActivityOptions{
	StartToCloseTimeout: policy.RequestTimeout + 15*time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    time.Minute,
	},
}

// withSummary returns o with the summary the Temporal UI shows for an
// activity.
func withSummary(o workflow.ActivityOptions, summary string) workflow.ActivityOptions {
	o.Summary = summary
	return o
}

// Delivery retries one delivery until it is delivered or dead-lettered. A
// dead-lettered delivery's workflow stays open, parked on RedriveSignal;
// each redrive starts a fresh series of attempts with the same webhook-id.
//
// The workflow only orchestrates: every attempt and every store write is an
// activity (see Activities).
func Delivery(ctx workflow.Context, in DeliveryInput) (DeliveryResult, error) {
	ctx = workflow.WithActivityOptions(ctx, activityOptions)
	w := &deliveryRun{
		in:        in,
		pol:       in.Policy.WithDefaults(),
		series:    in.Attempts,
		total:     max(in.TotalAttempts, in.Attempts),
		outcome:   in.LastOutcome,
		status:    in.LastStatus,
		lastError: in.LastError,
		after:     in.RetryAfter,
		start:     in.SeriesStart,
	}
	// Version 1 skips search attribute updates that change nothing (each
	// costs a visibility write); histories from before keep replaying.
	w.fewerUpserts = workflow.GetVersion(ctx, "fewer-upserts", workflow.DefaultVersion, 1) >= 1
	// Version 1 leaves the delivery that got 410 Gone to the next attempt,
	// which finds its subscription disabled and holds it, instead of
	// dead-lettering it.
	w.holdOnGone = workflow.GetVersion(ctx, "hold-on-gone", workflow.DefaultVersion, 1) >= 1
	// Version 1 ends a backoff early on WakeSignal (the sink answers
	// again); histories from before keep sleeping their full waits.
	if workflow.GetVersion(ctx, "wake-on-recovery", workflow.DefaultVersion, 1) >= 1 {
		w.wakes = workflow.GetSignalChannel(ctx, WakeSignal)
	}
	w.shown = StateRetrying // set by Starter.Start
	if in.Redrive {
		w.shown = StateRedriving // set by Starter.Redrive
	}
	redrives := workflow.GetSignalChannel(ctx, RedriveSignal)
	w.nudges = workflow.NewBufferedChannel(ctx, 1)
	w.redriven = workflow.NewBufferedChannel(ctx, 1)
	if err := w.handleUpdates(ctx); err != nil {
		return DeliveryResult{}, err
	}
	if in.Redrive {
		// A signal-with-start delivers its signal too: it is this redrive.
		redrives.ReceiveAsync(nil)
		if err := w.redrive(ctx); err != nil {
			return DeliveryResult{}, err
		}
	}
	redriven := 0
	for {
		delivered, reason, err := w.retry(ctx)
		if err != nil {
			return DeliveryResult{}, err
		}
		if w.held {
			// Held in the store until the subscription is enabled, which
			// makes it pending for a new first attempt (and a new workflow
			// if that fails): nothing waits in Temporal meanwhile.
			w.dropWakes()
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("held after %d attempts: the subscription is suspended or disabled; "+
				"`herald subscriptions enable %s` sends it again", w.total, w.in.SubscriptionID))
			return DeliveryResult{Attempts: w.total}, w.upsert(ctx, StateHeld)
		}
		if delivered {
			w.dropWakes()
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("delivered after %d attempts", w.total))
			return DeliveryResult{Attempts: w.total}, w.upsert(ctx, StateDelivered)
		}
		if err := w.deadLetter(ctx, reason); err != nil {
			return DeliveryResult{}, err
		}
		w.dead = true
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("dead: %s. Redrive it with the %q Update here, or `herald deliveries redrive %s`.",
			reason, RedriveUpdate, w.in.DeliveryID))
		workflow.NewSelector(ctx).
			AddReceive(redrives, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) }).
			AddReceive(w.redriven, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) }).
			Select(ctx)
		w.dead = false
		if redriven++; redriven >= redrivesPerRun {
			// Many redrives: carry on in a fresh run so the history stays
			// small. The new run starts with the redrive.
			next := w.in
			next.Redrive, next.TotalAttempts, next.LastStatus = true, w.total, w.status
			return DeliveryResult{}, workflow.NewContinueAsNewError(ctx, DeliveryWorkflowName, next)
		}
		if err := w.redrive(ctx); err != nil {
			return DeliveryResult{}, err
		}
	}
}

// redrivesPerRun is how many redrives one run takes before the delivery
// continues as a new run, which keeps each history well below the 4,096
// events Temporal suggests (a series of 8 attempts adds about 80).
var redrivesPerRun = 20

// deliveryRun is the state of one Delivery workflow.
type deliveryRun struct {
	in        DeliveryInput
	pol       policy.Retry
	series    int // attempts in the current series
	total     int // attempts in all
	outcome   policy.Outcome
	status    int
	lastError string
	after     time.Duration // the last Retry-After
	start     time.Time     // start of the current series
	// shown is the HeraldDeliveryState last set; with fewerUpserts,
	// updates that would not change what operators see are skipped.
	shown        string
	fewerUpserts bool
	// holdOnGone: after a 410 Gone the next attempt holds the delivery;
	// held is set when an attempt found the subscription suspended or
	// disabled and held the delivery.
	holdOnGone bool
	held       bool
	// wakes, if set, ends a backoff early (WakeSignal).
	wakes workflow.ReceiveChannel
	// nudges ends a backoff early too: the retry-now Update.
	nudges workflow.Channel
	// redriven takes the redrive and resend Updates.
	redriven workflow.Channel
	// dead is set while the delivery is dead-lettered; waitingUntil while
	// it waits for its next attempt.
	dead         bool
	waitingUntil time.Time
}

// dropWakes takes the wake-ups that are waiting: they are for a wait that
// is over.
func (w *deliveryRun) dropWakes() {
	for w.wakes != nil && w.wakes.ReceiveAsync(nil) {
	}
}

// backoff waits d before the next attempt, or until a WakeSignal says
// the sink answers again. Wake-ups that came before the wait began are
// dropped: they were for an earlier failure.
func (w *deliveryRun) backoff(ctx workflow.Context, d time.Duration) error {
	w.waitingUntil = workflow.Now(ctx).Add(d)
	defer func() { w.waitingUntil = time.Time{} }()
	workflow.SetCurrentDetails(ctx, w.details())
	summary := fmt.Sprintf("backoff before attempt %d", w.total+1)
	if w.wakes == nil {
		return workflow.NewTimerWithOptions(ctx, d, workflow.TimerOptions{Summary: summary}).Get(ctx, nil)
	}
	w.dropWakes()
	timerCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	timer := workflow.NewTimerWithOptions(timerCtx, d, workflow.TimerOptions{Summary: summary})
	var err error
	workflow.NewSelector(ctx).
		AddFuture(timer, func(f workflow.Future) { err = f.Get(ctx, nil) }).
		AddReceive(w.wakes, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) }).
		AddReceive(w.nudges, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) }).
		Select(ctx)
	return err
}

// details is what the Temporal UI shows of the delivery now.
func (w *deliveryRun) details() string {
	s := fmt.Sprintf("attempt %d of %d", w.series, w.pol.MaximumAttempts)
	if w.status != 0 || w.lastError != "" {
		s += fmt.Sprintf(", last %d %q", w.status, cut(w.lastError, 120))
	}
	if !w.waitingUntil.IsZero() {
		s += ", next attempt " + w.waitingUntil.UTC().Format("15:04:05 MST") +
			fmt.Sprintf(" (the %q Update sends it now)", RetryNowUpdate)
	}
	return s
}

// cut shortens s to at most n bytes.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// handleUpdates registers the Updates operators send from the Temporal UI
// ("Send an Update") or the API, each with a validator that refuses what
// does not fit the delivery's state, and the status query.
func (w *deliveryRun) handleUpdates(ctx workflow.Context) error {
	for _, name := range []string{RedriveUpdate, ResendUpdate} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, name,
			func(ctx workflow.Context) (string, error) {
				w.redriven.SendAsync(nil)
				return "a fresh series of attempts starts now", nil
			},
			workflow.UpdateHandlerOptions{Validator: func(workflow.Context) error {
				if !w.dead {
					return fmt.Errorf("delivery %s is not dead-lettered: it is being retried", w.in.DeliveryID)
				}
				return nil
			}})
		if err != nil {
			return err
		}
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, RetryNowUpdate,
		func(ctx workflow.Context) (string, error) {
			w.nudges.SendAsync(nil)
			return "the next attempt starts now", nil
		},
		workflow.UpdateHandlerOptions{Validator: func(workflow.Context) error {
			if w.waitingUntil.IsZero() {
				return fmt.Errorf("delivery %s is not waiting for its next attempt", w.in.DeliveryID)
			}
			return nil
		}})
	if err != nil {
		return err
	}
	return workflow.SetQueryHandler(ctx, StatusQuery, func() (DeliveryStatus, error) {
		return DeliveryStatus{Attempts: w.total, LastStatus: w.status, LastError: w.lastError, NextAttempt: w.waitingUntil, Dead: w.dead}, nil
	})
}

// DeliveryStatus is what StatusQuery answers.
type DeliveryStatus struct {
	Attempts    int
	LastStatus  int
	LastError   string
	NextAttempt time.Time // zero unless waiting for its next attempt
	Dead        bool
}

// retry makes attempts until the delivery is delivered (true) or must be
// dead-lettered (false, with the reason).
func (w *deliveryRun) retry(ctx workflow.Context) (bool, string, error) {
	if !w.fewerUpserts || w.shown != StateRetrying {
		if err := w.upsert(ctx, StateRetrying); err != nil {
			return false, "", err
		}
	}
	for {
		switch w.outcome {
		case policy.Delivered:
			return true, "", nil
		case policy.Gone:
			reason := "sink answered 410 Gone"
			err := workflow.ExecuteActivity(ctx, acts.DisableSubscription,
				DisableInput{SubscriptionID: w.in.SubscriptionID, Reason: reason}).Get(ctx, nil)
			if err != nil || !w.holdOnGone {
				return false, reason, err
			}
			// The next attempt finds the subscription disabled and holds
			// the delivery (or sends it, if it was enabled meanwhile).
		case policy.Permanent:
			return false, w.failure("permanent failure"), nil
		case policy.Retryable:
			if w.series >= w.pol.MaximumAttempts {
				return false, w.failure(fmt.Sprintf("%d attempts failed", w.series)), nil
			}
			wait, ok := w.nextWait(ctx)
			if !ok {
				return false, w.failure("maximum age reached"), nil
			}
			if err := w.backoff(ctx, wait); err != nil {
				return false, "", err
			}
		}
		// An empty outcome (a fresh series) attempts at once.
		var res AttemptResult
		actx := workflow.WithActivityOptions(ctx, withSummary(activityOptions, fmt.Sprintf("attempt %d: POST to %s", w.total+1, w.in.SinkHost)))
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("attempt %d of %d under way", w.series+1, w.pol.MaximumAttempts))
		err := workflow.ExecuteActivity(actx, acts.Attempt, AttemptInput{
			DeliveryID:     w.in.DeliveryID,
			SubscriptionID: w.in.SubscriptionID,
			Number:         w.total + 1,
		}).Get(ctx, &res)
		if err != nil {
			return false, "", err
		}
		if !res.PausedUntil.IsZero() {
			// The sink is paused by a Retry-After: wait it out without
			// spending an attempt, within the maximum age.
			d := res.PausedUntil.Sub(workflow.Now(ctx))
			if remaining := w.remaining(ctx); d > remaining {
				return false, w.failure("maximum age reached while the sink was paused"), nil
			}
			if err := workflow.Sleep(ctx, d); err != nil {
				return false, "", err
			}
			w.outcome = ""
			continue
		}
		if res.Outcome == policy.Delivered && res.AlreadyDelivered {
			return true, "", nil
		}
		if res.Held {
			w.held = true
			return false, "", nil
		}
		w.series++
		w.total++
		w.outcome, w.status, w.lastError, w.after = res.Outcome, res.StatusCode, res.Error, res.RetryAfter
		if w.fewerUpserts && res.Outcome == policy.Delivered {
			continue // the delivered state is set next, with these counts
		}
		if err := w.upsert(ctx, StateRetrying); err != nil {
			return false, "", err
		}
	}
}

// nextWait is the backoff before the next attempt: a full-jitter draw below
// the policy's cap, raised to the last Retry-After, capped at the remaining
// age. It is false when no time is left.
func (w *deliveryRun) nextWait(ctx workflow.Context) (time.Duration, bool) {
	var frac float64
	// Randomness goes through a side effect so replays see the same draw.
	_ = workflow.SideEffect(ctx, func(workflow.Context) any { return rand.Float64() }).Get(&frac)
	wait := time.Duration(frac * float64(w.pol.Cap(w.series)))
	if w.after > wait {
		wait = w.after
	}
	remaining := w.remaining(ctx)
	if remaining <= 0 {
		return 0, false
	}
	return min(wait, remaining), true
}

func (w *deliveryRun) remaining(ctx workflow.Context) time.Duration {
	return w.start.Add(w.pol.MaximumAge).Sub(workflow.Now(ctx))
}

func (w *deliveryRun) failure(what string) string {
	switch {
	case w.status != 0 && w.lastError != "":
		return fmt.Sprintf("%s: last status %d: %s", what, w.status, w.lastError)
	case w.status != 0:
		return fmt.Sprintf("%s: last status %d", what, w.status)
	case w.lastError != "":
		return fmt.Sprintf("%s: %s", what, w.lastError)
	}
	return what
}

func (w *deliveryRun) deadLetter(ctx workflow.Context, reason string) error {
	err := workflow.ExecuteActivity(ctx, acts.MarkDead, MarkDeadInput{
		DeliveryID: w.in.DeliveryID,
		Attempts:   w.total,
		LastStatus: w.status,
		Reason:     reason,
	}).Get(ctx, nil)
	if err != nil {
		return err
	}
	return w.upsert(ctx, StateDead)
}

// redrive starts a fresh series: attempts and age count from now.
func (w *deliveryRun) redrive(ctx workflow.Context) error {
	if err := w.upsert(ctx, StateRedriving); err != nil {
		return err
	}
	if err := workflow.ExecuteActivity(ctx, acts.MarkRetrying, w.in.DeliveryID).Get(ctx, nil); err != nil {
		return err
	}
	w.series, w.outcome, w.after = 0, "", 0
	w.start = workflow.Now(ctx)
	return nil
}

func (w *deliveryRun) upsert(ctx workflow.Context, state string) error {
	w.shown = state
	return workflow.UpsertTypedSearchAttributes(ctx,
		AttrDeliveryState.ValueSet(state),
		AttrAttempts.ValueSet(int64(w.total)),
		AttrLastStatus.ValueSet(int64(w.status)),
	)
}
