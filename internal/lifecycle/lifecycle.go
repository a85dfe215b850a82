// Package lifecycle is the delivery state machine: the states a delivery
// passes through, the transitions allowed between them, the store update
// that makes each one, and Gate, the one check of whether a subscription's
// deliveries may be sent now.
//
// Every change of a delivery's state in Herald is built here. The
// transitions (Table; TestDoc_MatchesTheTable checks this list):
//
//	pending   -> in_flight  claim: a dispatcher claims it, or its publisher stores it claimed
//	in_flight -> in_flight  claim: its lease expired and a dispatcher claims it again
//	in_flight -> in_flight  keep: its first attempt failed and its workflow did not start; the lease brings it back
//	in_flight -> pending    reschedule: not attempted now (sink paused or over its limit, awaiting consent, released)
//	in_flight -> pending    defer: its first attempt failed and Temporal is behind; attempted again later
//	in_flight -> delivered  deliver: an attempt got 2xx
//	retrying  -> delivered  deliver: an attempt got 2xx
//	in_flight -> retrying   hand off: its first attempt failed; its workflow owns it now
//	retrying  -> retrying   retry: a workflow attempt failed
//	in_flight -> dead       kill: its subscription is gone or disabled, or it waited too long for consent
//	retrying  -> dead       kill: retries ended (attempts, age, a permanent failure, 410 Gone)
//	dead      -> retrying   redrive: an operator sends it again, with a fresh series of attempts
//	delivered -> retrying   resend: an operator sends a delivered one again, with a fresh series of attempts
//	dead      -> retrying   resend: the same, for a dead one
//	in_flight -> held       hold: its subscription is suspended or disabled; kept, not attempted
//	retrying  -> held       hold: the same, seen by its workflow's next attempt; the workflow ends
//	held      -> pending    release: its subscription is enabled; attempted again, in publish order
//
// A delivery made for a suspended or disabled subscription is stored
// held (Holds), so that nothing published meanwhile is lost; held
// deliveries go after the dead-letter retention like dead ones
// (package retention). Release (Released) is one store call per batch
// of a subscription's held deliveries (store.Store's DeliveryUnhold), the
// oldest event first, so they are claimed in publish order.
//
// Only the first attempt is the dispatcher's (package dispatch); a
// retrying delivery belongs to its workflow (package workflows). The
// dispatcher's updates of an in-flight delivery apply only while the
// claim it made stands (its Holder, the node's ID): a node whose lease ran
// out and whose delivery another node claimed changes nothing, though
// its attempt is recorded.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/store"
)

// State is a delivery's state.
type State = store.DeliveryState

// The states.
const (
	Pending   = store.DeliveryPending
	InFlight  = store.DeliveryInFlight
	Delivered = store.DeliveryDelivered
	Retrying  = store.DeliveryRetrying
	Dead      = store.DeliveryDead
	Held      = store.DeliveryHeld
)

// Transition is one allowed change of state.
type Transition struct {
	Name string
	From State
	To   State
}

// Names of the transitions.
const (
	Claim      = "claim"
	Keep       = "keep"
	Reschedule = "reschedule"
	Defer      = "defer"
	Deliver    = "deliver"
	HandOff    = "hand off"
	Retry      = "retry"
	Kill       = "kill"
	Redrive    = "redrive"
	Resend     = "resend"
	Hold       = "hold"
	Release    = "release"
)

// Table is every allowed transition.
var Table = []Transition{
	{Claim, Pending, InFlight},
	{Claim, InFlight, InFlight},
	{Keep, InFlight, InFlight},
	{Reschedule, InFlight, Pending},
	{Defer, InFlight, Pending},
	{Deliver, InFlight, Delivered},
	{Deliver, Retrying, Delivered},
	{HandOff, InFlight, Retrying},
	{Retry, Retrying, Retrying},
	{Kill, InFlight, Dead},
	{Kill, Retrying, Dead},
	{Redrive, Dead, Retrying},
	{Resend, Delivered, Retrying},
	{Resend, Dead, Retrying},
	{Hold, InFlight, Held},
	{Hold, Retrying, Held},
	{Release, Held, Pending},
}

// ErrIllegal is returned (wrapped) for a transition the table does not
// allow.
var ErrIllegal = errors.New("lifecycle: transition not allowed")

// ErrInactive is returned (wrapped) when a delivery may not be sent again
// because its subscription is not active.
var ErrInactive = errors.New("subscription not active")

// Check returns nil if the table allows name from from, and the state it
// leads to.
func Check(name string, from State) (State, error) {
	for _, t := range Table {
		if t.Name == name && t.From == from {
			return t.To, nil
		}
	}
	return "", fmt.Errorf("%w: %s from %s", ErrIllegal, name, from)
}

// must builds the update of a transition whose from-state the caller
// holds by construction (a delivery this node claimed is in flight); a
// mismatch is a bug in Herald, not an input error.
func must(name string, from State, u store.DeliveryUpdate) store.DeliveryUpdate {
	to, err := Check(name, from)
	if err != nil {
		panic(err)
	}
	u.State = to
	u.ExpectState = from
	return u
}

// claimed builds the update of transition name of delivery d, which this
// node claimed: it applies only while d is in flight and the claim stands
// (d.Holder still holds it).
func claimed(name string, d *store.Delivery, u store.DeliveryUpdate) store.DeliveryUpdate {
	u = must(name, InFlight, u)
	u.ExpectHolder = d.Holder
	return u
}

// withAttempt records attempt rec (number rec.Number) in u.
func withAttempt(u store.DeliveryUpdate, rec *store.Attempt) store.DeliveryUpdate {
	u.Attempts = rec.Number
	u.LastStatus = rec.StatusCode
	u.LastError = rec.Error
	u.Attempt = rec
	return u
}

// Rescheduled puts claimed delivery d back to pending until at without
// spending an attempt; why, if set, replaces its last error (it is what an
// operator sees while it waits).
func Rescheduled(d *store.Delivery, at time.Time, why string) store.DeliveryUpdate {
	u := store.DeliveryUpdate{ID: d.ID, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError, NextAt: at}
	if why != "" {
		u.LastError = why
	}
	return claimed(Reschedule, d, u)
}

// FirstDelivered records claimed delivery d's successful attempt rec.
func FirstDelivered(d *store.Delivery, rec *store.Attempt) store.DeliveryUpdate {
	return claimed(Deliver, d, withAttempt(store.DeliveryUpdate{ID: d.ID}, rec))
}

// Deferred records claimed delivery d's failed attempt rec and puts it back
// to pending until at, for another first attempt: its workflow could not
// be started in time.
func Deferred(d *store.Delivery, rec *store.Attempt, at time.Time) store.DeliveryUpdate {
	u := withAttempt(store.DeliveryUpdate{ID: d.ID}, rec)
	u.NextAt = at
	return claimed(Defer, d, u)
}

// Kept records claimed delivery d's failed attempt rec and leaves it in
// flight: starting its workflow failed, so its lease expires and it is
// attempted and handed off again.
func Kept(d *store.Delivery, rec *store.Attempt) store.DeliveryUpdate {
	return claimed(Keep, d, withAttempt(store.DeliveryUpdate{ID: d.ID}, rec))
}

// HandedOff records claimed delivery d's failed attempt rec: its workflow
// has started and retries it.
func HandedOff(d *store.Delivery, rec *store.Attempt) store.DeliveryUpdate {
	return claimed(HandOff, d, withAttempt(store.DeliveryUpdate{ID: d.ID}, rec))
}

// Killed dead-letters claimed delivery d without an attempt, for reason.
func Killed(d *store.Delivery, reason string) store.DeliveryUpdate {
	return claimed(Kill, d, store.DeliveryUpdate{ID: d.ID, Attempts: d.Attempts, LastError: reason})
}

// Attempted records a workflow's attempt rec of a retrying delivery: it is
// delivered, or still retrying. The workflow owns the delivery, so the
// update applies whatever the stored state (a dispatcher's record of the
// hand-off may come after the workflow's first attempt).
func Attempted(deliveryID string, rec *store.Attempt, delivered bool) store.DeliveryUpdate {
	u := withAttempt(store.DeliveryUpdate{ID: deliveryID}, rec)
	u.State = Retrying
	if delivered {
		u.State = Delivered
	}
	return u
}

// DeadLettered records that a workflow's retries of a delivery ended:
// after attempts attempts, the last with status lastStatus, for reason.
func DeadLettered(deliveryID string, attempts, lastStatus int, reason string) store.DeliveryUpdate {
	return store.DeliveryUpdate{ID: deliveryID, State: Dead, Attempts: attempts, LastStatus: lastStatus, LastError: reason}
}

// Redriven sends dead delivery d again: it is retrying, by its workflow,
// with a fresh series of attempts. A delivery in any other state is
// refused with ErrIllegal. The update applies only while d is still dead.
func Redriven(d *store.Delivery) (store.DeliveryUpdate, error) {
	to, err := Check(Redrive, d.State)
	if err != nil {
		return store.DeliveryUpdate{}, fmt.Errorf("delivery %s is %s; only dead deliveries can be redriven (%w)", d.ID, d.State, err)
	}
	return store.DeliveryUpdate{ID: d.ID, State: to, Attempts: d.Attempts, LastStatus: d.LastStatus,
		LastError: d.LastError, ExpectState: Dead}, nil
}

// Resent sends delivered or dead delivery d again: it is retrying, by its
// workflow, with a fresh series of attempts and the same webhook-id. A
// delivery in any other state (still being sent) is refused with
// ErrIllegal. The update applies only while d is still in its state.
func Resent(d *store.Delivery) (store.DeliveryUpdate, error) {
	to, err := Check(Resend, d.State)
	if err != nil {
		return store.DeliveryUpdate{}, fmt.Errorf("delivery %s is %s; only delivered or dead deliveries can be resent (%w)", d.ID, d.State, err)
	}
	return store.DeliveryUpdate{ID: d.ID, State: to, Attempts: d.Attempts, LastStatus: d.LastStatus,
		LastError: d.LastError, ExpectState: d.State}, nil
}

// Resumed records, from the delivery's workflow, that a redriven delivery
// is retrying (the workflow's side of Redriven, for redrives that reach it
// by signal).
func Resumed(d *store.Delivery) store.DeliveryUpdate {
	return store.DeliveryUpdate{ID: d.ID, State: Retrying, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError}
}

// Holds reports whether deliveries to sub are stored (and kept) held
// rather than attempted: it is suspended or disabled. An operator's
// disable holds like a 410 Gone or a suspension does, so that enabling
// the subscription again delivers what was published meanwhile.
func Holds(sub *store.Subscription) bool {
	return sub.State == store.SubscriptionSuspended || sub.State == store.SubscriptionDisabled
}

// HeldBack holds claimed delivery d, not attempted, while its
// subscription is suspended or disabled.
func HeldBack(d *store.Delivery) store.DeliveryUpdate {
	return claimed(Hold, d, store.DeliveryUpdate{ID: d.ID, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError})
}

// Parked holds retrying delivery d from its workflow, which then ends:
// its subscription is suspended or disabled, and Temporal keeps nothing
// for it while it waits. The workflow owns the delivery, so the update
// applies whatever the stored state (as Attempted does).
func Parked(d *store.Delivery) store.DeliveryUpdate {
	return store.DeliveryUpdate{ID: d.ID, State: Held, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError}
}

// Unholder releases held deliveries (store.Store's DeliveryUnhold).
type Unholder interface {
	DeliveryUnhold(ctx context.Context, p store.DeliveryUnholdParams) (int, error)
}

// releaseBatch is how many held deliveries one store call releases.
const releaseBatch = 1000

// Released makes every held delivery of subscription subID pending again,
// the oldest event first, claimable from now on one millisecond apart (so
// claims take them in publish order), and returns how many. Call it once
// the subscription is active again; deliveries held meanwhile by a node
// that had not seen the change yet are released by the next call (each
// enable, or Released on the catalog's next change).
func Released(ctx context.Context, s Unholder, subID string, now time.Time) (int, error) {
	total := 0
	for {
		n, err := s.DeliveryUnhold(ctx, store.DeliveryUnholdParams{
			SubscriptionID: subID, NextAt: now.Add(time.Duration(total) * time.Millisecond), Limit: releaseBatch})
		total += n
		if err != nil {
			return total, fmt.Errorf("release held deliveries: %w", err)
		}
		if n < releaseBatch {
			return total, nil
		}
	}
}
