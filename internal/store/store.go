// Package store defines Herald's storage contract: the Store interface that
// every database driver implements, and the records it keeps.
//
// Drivers live in subpackages (sqlite, postgres) and all pass the shared
// behaviour suite in storetest. Method names are noun then verb
// (DeliveryClaim, EventInsertBatch); lookups that find nothing return
// ErrNotFound.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/heraldhq/herald/internal/filter"
	"github.com/heraldhq/herald/internal/policy"
)

// ErrNotFound is returned when the requested record does not exist.
var ErrNotFound = errors.New("store: not found")

// EraseBatch is what one EventEraseSubject call did.
type EraseBatch struct {
	// Erased counts the events whose data it removed.
	Erased int
	// InProgress counts the events it left because some of their
	// deliveries may still be sent.
	InProgress int
	// Cursor is where the next call goes on from.
	Cursor int64
	// Done reports that no event after Cursor is left to examine.
	Done bool
}

// ErrInProgress is returned by EventErase for an event some of whose
// deliveries may still be sent.
var ErrInProgress = errors.New("store: the event's deliveries are in progress")

// SubscriptionState is whether a subscription's deliveries are sent.
type SubscriptionState string

const (
	// SubscriptionPendingValidation: the sink has not consented to
	// deliveries yet (the webhook validation handshake). Deliveries wait.
	SubscriptionPendingValidation SubscriptionState = "pending_validation"
	SubscriptionActive            SubscriptionState = "active"
	// SubscriptionDisabled: nothing is sent (after 410 Gone, or by an
	// operator); new matching events are stored held, and enabling the
	// subscription releases them.
	SubscriptionDisabled SubscriptionState = "disabled"
	// SubscriptionSuspended: its sink failed continuously for its
	// SuspendAfter; held like a disabled one until enabled.
	SubscriptionSuspended SubscriptionState = "suspended"
)

// DeliveryState is where a delivery is in its life. See package dispatch for
// the state machine.
type DeliveryState string

const (
	DeliveryPending   DeliveryState = "pending"
	DeliveryInFlight  DeliveryState = "in_flight"
	DeliveryDelivered DeliveryState = "delivered"
	DeliveryRetrying  DeliveryState = "retrying"
	DeliveryDead      DeliveryState = "dead"
	// DeliveryHeld: kept, not attempted, while its subscription is
	// suspended or disabled; pending again when it is enabled.
	DeliveryHeld DeliveryState = "held"
)

// DefaultTenant is the tenant of subscriptions created without one.
const DefaultTenant = "default"

// Subscription is who receives which events, where and how.
type Subscription struct {
	ID string
	// Tenant owns the subscription (DefaultTenant unless set at create);
	// it never changes.
	Tenant string
	// DisplayName, Description and Labels are for people and for
	// filtering lists.
	DisplayName string
	Description string
	Labels      map[string]string
	Source      string              // exact source to match, or empty
	Types       []string            // types to match, or empty for any
	Config      map[string]string   // free-form, stored as given
	Filters     []filter.Expression // all must be true
	Sink        string              // URL deliveries are POSTed to
	Protocol    string              // "HTTP"
	Headers     map[string]string   // static headers on every request
	Method      string              // "POST"
	State       SubscriptionState
	StateReason string
	// Secrets are the Standard Webhooks signing keys ("whsec_..." for v1,
	// "whsk_..." for v1a), newest first. Every unexpired key signs each
	// request, so receivers can rotate.
	Secrets []Secret
	// BearerToken, if set, is sent as "Authorization: Bearer <token>".
	BearerToken string
	RetryPolicy policy.Retry
	ContentMode policy.ContentMode
	// MaxBatchSize is the most events in one request in batched mode.
	MaxBatchSize int
	// RateLimit is the requests per minute the subscription asks for (0:
	// none); AllowedRate is what the sink granted in the handshake (0:
	// none). Herald keeps to the lower of the two.
	RateLimit   int
	AllowedRate int
	// MaxConcurrency is the most requests in flight to the sink (0: none).
	MaxConcurrency int
	// SkipValidation skips the webhook validation handshake.
	SkipValidation bool
	// SubscriptionPauseOnly: a Retry-After from the sink pauses only this
	// subscription, and its origin's pauses do not hold it.
	SubscriptionPauseOnly bool
	// Validation is the handshake under way, if any.
	Validation *Validation
	// PausedUntil holds back every delivery to the sink until then (a 429
	// or 503 with Retry-After). Zero means not paused.
	PausedUntil time.Time
	// SuspendAfter is how long the sink may fail continuously before the
	// subscription is suspended; zero: the node's default (--suspend-after).
	SuspendAfter time.Duration
	// FailingSince is when the sink's current run of failed attempts
	// began (the first failure after a success); zero while it succeeds.
	FailingSince time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Secret is one signing key of a subscription.
type Secret struct {
	Key string `json:"key"`
	// ExpiresAt is when a rotated-out key stops signing; zero: never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Validation is a validation handshake waiting for an asynchronous grant at
// Herald's callback URL.
type Validation struct {
	// TokenHash is the SHA-256 of the callback URL's secret token, hex.
	TokenHash string    `json:"token_hash"`
	ExpiresAt time.Time `json:"expires_at"`
	// RequestedRate is the rate asked for (WebHook-Request-Rate).
	RequestedRate int `json:"requested_rate,omitempty"`
}

// SigningKeys returns the keys that sign requests at now: the unexpired
// ones, newest first.
func (s *Subscription) SigningKeys(now time.Time) []string {
	keys := make([]string, 0, len(s.Secrets))
	for _, sec := range s.Secrets {
		if sec.ExpiresAt.IsZero() || now.Before(sec.ExpiresAt) {
			keys = append(keys, sec.Key)
		}
	}
	return keys
}

// EffectiveRate is the requests per minute Herald keeps to for the sink:
// the lower of RateLimit and AllowedRate, ignoring zeros; 0 means no limit.
func (s *Subscription) EffectiveRate() int {
	switch {
	case s.RateLimit == 0:
		return s.AllowedRate
	case s.AllowedRate == 0:
		return s.RateLimit
	}
	return min(s.RateLimit, s.AllowedRate)
}

// SubscriptionChanges are the subscription writes since a version.
type SubscriptionChanges struct {
	// Changed are the subscriptions inserted or updated, in write order.
	Changed []*Subscription
	// Deleted are the IDs of the subscriptions deleted.
	Deleted []string
	// Version is the version these changes bring the caller to.
	Version int64
}

// Event is a stored CloudEvent. Tenant, Source and ID identify it: two
// tenants' events never deduplicate each other.
type Event struct {
	// Tenant is the tenant of the key that published the event; empty
	// for a key bound to no tenant.
	Tenant string
	Source string
	ID     string
	Type   string
	// Subject is the event's subject attribute ('' for none), kept so
	// that EventEraseSubject finds the events about one subject.
	Subject string
	// Payload is the event in the CloudEvents protobuf format
	// (io.cloudevents.v1.CloudEvent, binary encoding).
	Payload   []byte
	CreatedAt time.Time
}

// Delivery is one event on its way to one subscription.
type Delivery struct {
	ID             string
	SubscriptionID string
	EventSource    string
	EventID        string
	EventType      string
	State          DeliveryState
	Attempts       int // attempts made so far
	LastStatus     int // HTTP status of the last attempt, 0 if none
	LastError      string
	// NextAt is when a pending delivery may be claimed.
	NextAt time.Time
	// LeaseUntil is when an in-flight delivery's claim expires and it may
	// be claimed again.
	LeaseUntil time.Time
	// Holder names the node that holds an in-flight delivery's claim (its
	// node ID); empty for a delivery not in flight, or claimed before
	// holders were recorded.
	Holder    string
	CreatedAt time.Time
	UpdatedAt time.Time
	// EventPayload is the stored event's Payload. Only DeliveryClaim and
	// DeliveryGet fill it.
	EventPayload []byte
}

// Attempt is the record of one HTTP request of a delivery.
type Attempt struct {
	DeliveryID   string
	Number       int // 1 for the first attempt
	StartedAt    time.Time
	StatusCode   int // 0 when there was no response
	Latency      time.Duration
	Error        string
	ResponseBody []byte // at most policy.MaxResponseBody bytes
}

// EventInsertParams is one event and the deliveries it creates.
type EventInsertParams struct {
	Event Event
	// Deliveries to insert with the event. The driver fills their event
	// fields from Event; ID, SubscriptionID, State and NextAt must be set.
	Deliveries []Delivery
}

// EventInsertResult is the outcome of inserting one event.
type EventInsertResult struct {
	// Duplicate is true when an event with the same source and id was
	// already stored: nothing was inserted for it.
	Duplicate bool
	// DeliveryIDs are the event's deliveries: the new ones, or for a
	// duplicate the ones created when it was first stored.
	DeliveryIDs []string
}

// DeliveryClaimParams says which deliveries to claim.
type DeliveryClaimParams struct {
	// Limit is the most deliveries to claim.
	Limit int
	// Now is the claim time: pending deliveries with NextAt <= Now and
	// in-flight deliveries with LeaseUntil <= Now are claimable.
	Now time.Time
	// LeaseUntil is stored on each claimed delivery.
	LeaseUntil time.Time
	// Holder is stored on each claimed delivery: the claiming node's ID.
	Holder string
}

// DeliveryRenewParams says whose leases DeliveryRenew extends.
type DeliveryRenewParams struct {
	// Holder is the node that renews: only its claims are renewed.
	Holder string
	// IDs are the deliveries it holds.
	IDs []string
	// Until is the new end of their leases.
	Until time.Time
}

// DeliveryReleaseParams says whose claims DeliveryRelease puts back.
type DeliveryReleaseParams struct {
	// Holder is the node whose claims are put back (required).
	Holder string
	// NextAt is when the deliveries put back may be claimed.
	NextAt time.Time
}

// DeliveryUpdate changes one delivery's state and may record an attempt.
type DeliveryUpdate struct {
	ID         string
	State      DeliveryState
	Attempts   int
	LastStatus int
	LastError  string
	NextAt     time.Time // stored as given (used with DeliveryPending)
	// ExpectState, if set, makes the update apply only while the delivery
	// is in that state, and ExpectHolder, if set, only while its Holder is
	// that (the claim the update's node made still stands). The Attempt is
	// recorded either way.
	ExpectState  DeliveryState
	ExpectHolder string
	// Attempt, if not nil, is recorded with the update. Recording an
	// attempt number that exists replaces it.
	Attempt *Attempt
}

// RecordsFirstAttempt reports whether u records its delivery's first
// attempt (number 1), which both drivers keep in the delivery's own row.
func (u *DeliveryUpdate) RecordsFirstAttempt() bool {
	return u.Attempt != nil && u.Attempt.Number == 1
}

// DeliveryListParams filters and pages DeliveryList. Zero fields do not filter.
type DeliveryListParams struct {
	SubscriptionID string
	// SubscriptionIDs, if not nil, keeps only deliveries of these
	// subscriptions (a tenant's); an empty, non-nil list keeps none.
	SubscriptionIDs []string
	State           DeliveryState
	CreatedFrom     time.Time // inclusive
	CreatedTo       time.Time // exclusive
	// EventTypes, if not empty, keeps deliveries of events of these
	// types (exact).
	EventTypes []string
	// EventSource and EventID, each if set, keep deliveries of events of
	// that source and that id.
	EventSource string
	EventID     string
	// LastStatus keeps deliveries by the outcome of their latest attempt.
	LastStatus StatusClass
	// Limit is the most deliveries to return (required, > 0).
	Limit int
	// After is the last ID of the previous page: deliveries are listed
	// newest first, so the page holds IDs less than After.
	After string
}

// StatusClass is a class of a delivery's latest attempt outcome, for
// DeliveryList.
type StatusClass int

// The classes. An HTTP class holds the statuses of its hundred (Status4xx:
// 400-499); NoResponse the deliveries attempted that got no HTTP response
// (a timeout, a refused connection, a TLS failure, a refused address).
const (
	AnyStatus StatusClass = iota
	Status2xx
	Status3xx
	Status4xx
	Status5xx
	NoResponse
)

// StatusRange returns the HTTP statuses of c as [lo, hi), and ok false
// for AnyStatus and NoResponse, which are not ranges.
func (c StatusClass) StatusRange() (lo, hi int, ok bool) {
	if c < Status2xx || c > Status5xx {
		return 0, 0, false
	}
	lo = 100 * (int(c-Status2xx) + 2)
	return lo, lo + 100, true
}

// DeliveryUnholdParams says whose held deliveries DeliveryUnhold makes
// pending.
type DeliveryUnholdParams struct {
	SubscriptionID string
	// NextAt is the NextAt of the first (oldest) delivery released.
	NextAt time.Time
	// Limit is the most deliveries released (> 0).
	Limit int
}

// DeliveryRecentParams selects DeliveryRecent's deliveries.
type DeliveryRecentParams struct {
	SubscriptionID string
	// FromID is the lowest delivery ID returned (IDs sort by creation
	// time: id.Lowest makes one for a time).
	FromID string
	Limit  int
}

// DeliveryOutcome is a delivery's state and first attempt.
type DeliveryOutcome struct {
	ID         string
	State      DeliveryState
	Attempts   int
	LastStatus int
	LastError  string
	// FirstStatus and FirstLatency are its first attempt's (0 before it).
	FirstStatus  int
	FirstLatency time.Duration
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// EventListParams selects and pages EventList.
type EventListParams struct {
	SubscriptionID string // required
	// After is the cursor: the delivery ID of the last row of the previous
	// page ("" from the start).
	After string
	// CreatedFrom (inclusive) and CreatedTo (exclusive) bound when the
	// events were stored; zero does not bound.
	CreatedFrom, CreatedTo time.Time
	// Types, if any, keeps only events of these types.
	Types []string
	// Limit is the most rows returned (required, > 0).
	Limit int
}

// EventDelivery is an event and the delivery it made for a subscription.
type EventDelivery struct {
	Event    Event // with its Payload
	Delivery Delivery
}

// SubscriptionListParams filters and pages SubscriptionList.
type SubscriptionListParams struct {
	// Tenant, if set, keeps only that tenant's subscriptions.
	Tenant string
	// Labels, if any, keeps only subscriptions with every one of them.
	Labels map[string]string
	// Limit is the most subscriptions to return; 0 returns all.
	Limit int
	// After is the last ID of the previous page (oldest first).
	After string
}

// Store is the contract every database driver implements. All methods are
// safe for concurrent use.
type Store interface {
	// SubscriptionInsert stores a new subscription.
	SubscriptionInsert(ctx context.Context, s *Subscription) error
	// SubscriptionGet returns a subscription or ErrNotFound.
	SubscriptionGet(ctx context.Context, id string) (*Subscription, error)
	// SubscriptionList returns subscriptions in ID (creation) order.
	SubscriptionList(ctx context.Context, p SubscriptionListParams) ([]*Subscription, error)
	// SubscriptionUpdate changes a stored subscription atomically: it reads
	// the current one, applies change to it and stores the result, setting
	// UpdatedAt, with no other update in between, so concurrent changes of
	// different fields are never lost. It returns the stored subscription,
	// ErrNotFound if it does not exist, or change's error (nothing is
	// stored then).
	SubscriptionUpdate(ctx context.Context, id string, change func(*Subscription) error) (*Subscription, error)
	// SubscriptionDelete deletes a subscription; ErrNotFound if it does not exist.
	SubscriptionDelete(ctx context.Context, id string) error
	// SubscriptionsVersion returns a number that grows whenever any
	// subscription is inserted, updated or deleted, so caches can tell
	// when to reload.
	SubscriptionsVersion(ctx context.Context) (int64, error)
	// SubscriptionChanges returns the subscriptions inserted or updated,
	// and the IDs of those deleted, since version after (a value of
	// SubscriptionsVersion), with the version they bring the caller to,
	// read in one snapshot: a cache removes the deleted, then applies the
	// changed (an ID deleted and inserted again is in both).
	SubscriptionChanges(ctx context.Context, after int64) (SubscriptionChanges, error)

	// EventInsertBatch inserts events and their deliveries in one
	// transaction that is durable when it returns nil. Results are in
	// params order. An event whose source and id are stored already is a
	// duplicate and inserts nothing.
	EventInsertBatch(ctx context.Context, params []EventInsertParams) ([]EventInsertResult, error)

	// DeliveryClaim marks up to Limit claimable deliveries in flight with
	// the given lease and holder and returns them with their
	// EventPayload, oldest NextAt first.
	DeliveryClaim(ctx context.Context, p DeliveryClaimParams) ([]*Delivery, error)
	// DeliveryRenew extends to p.Until, in one statement, the lease of
	// each delivery in p.IDs that is still in flight and held by
	// p.Holder, and returns the IDs it renewed. The others are no longer
	// p.Holder's to send: recorded, put back, or claimed by another node
	// since (its lease ran out).
	DeliveryRenew(ctx context.Context, p DeliveryRenewParams) ([]string, error)
	// DeliveryRelease puts every in-flight delivery held by p.Holder back
	// to pending, claimable from p.NextAt, without spending an attempt,
	// and returns how many it put back. A node calls it as it starts,
	// before it claims anything: it holds none of them in memory, so none
	// is being sent.
	DeliveryRelease(ctx context.Context, p DeliveryReleaseParams) (int, error)
	// DeliveryUpdateBatch applies updates in one transaction.
	DeliveryUpdateBatch(ctx context.Context, updates []DeliveryUpdate) error
	// DeliveryGet returns a delivery with its EventPayload, or ErrNotFound.
	DeliveryGet(ctx context.Context, id string) (*Delivery, error)
	// DeliveryList returns deliveries, newest first.
	DeliveryList(ctx context.Context, p DeliveryListParams) ([]*Delivery, error)
	// AttemptList returns a delivery's attempts, oldest first.
	AttemptList(ctx context.Context, deliveryID string) ([]*Attempt, error)
	// DeliveryUnhold makes up to p.Limit of a subscription's held
	// deliveries pending, in the order their events were stored, with
	// NextAt from p.NextAt on, one microsecond apart in that order, so
	// that claims take them in publish order. It returns how many it
	// changed; fewer than p.Limit means none is left held.
	DeliveryUnhold(ctx context.Context, p DeliveryUnholdParams) (int, error)
	// DeliveryRecent returns a subscription's deliveries with IDs from
	// p.FromID on, newest first, at most p.Limit, with what their first
	// attempt was: what endpoint health is computed from.
	DeliveryRecent(ctx context.Context, p DeliveryRecentParams) ([]*DeliveryOutcome, error)
	// EventGet returns a tenant's event (with its Payload) and its
	// deliveries, in the order they were made; ErrNotFound if there is no
	// such event.
	EventGet(ctx context.Context, tenant, source, id string) (*Event, []*Delivery, error)
	// EventList returns the events a subscription got a delivery of, with
	// that delivery, in delivery ID order (the order they were published
	// in, to the millisecond), after the cursor p.After.
	EventList(ctx context.Context, p EventListParams) ([]*EventDelivery, error)

	// Prune deletes, oldest first, deliveries that ended (delivered or
	// dead) or were held before their cutoffs, with their attempts, and events stored
	// before EventsBefore that no delivery is left of. It examines at most
	// Limit deliveries (in ID order) and Limit events (in store order),
	// from the cursors in p, and a pass ends at the first row too recent
	// to go: rows stored out of time order by a little wait for the next
	// pass. It returns where to go on (see PruneResult).
	Prune(ctx context.Context, p PruneParams) (PruneResult, error)
	// EventErase removes the data of a tenant's event (source and id): its
	// payload, and every attempt of its deliveries with the bodies they
	// kept. The event's record stays, so it still deduplicates. It
	// returns ErrNotFound for no such event, and ErrInProgress, changing
	// nothing, while any of its deliveries may still be sent.
	EventErase(ctx context.Context, tenant, source, id string) error
	// EventEraseSubject erases, as EventErase does, a tenant's events
	// whose subject is subject: at most limit of them, in store order,
	// after the event at cursor (0 for the first). Events whose data is
	// gone already are passed over; those with a delivery that may still
	// be sent are counted in InProgress and left as they are.
	EventEraseSubject(ctx context.Context, tenant, subject string, cursor int64, limit int) (EraseBatch, error)
	// LeaseAcquire takes or renews the named lease for holder until until,
	// and reports whether holder has it: it is free, expired, or holder's
	// already. One node at a time does work that needs a lease.
	LeaseAcquire(ctx context.Context, name, holder string, now, until time.Time) (bool, error)

	// TokenTake takes up to p.Want tokens from the token bucket p.Key,
	// shared by every node: the bucket first gains p.Rate tokens a second
	// for the time since it was last taken from (never more than p.Burst;
	// a new bucket starts full), then gives what it has whole, up to Want.
	// One statement, atomic across nodes. A node's clock behind the last
	// taker's adds nothing until it catches up.
	TokenTake(ctx context.Context, p TokenTakeParams) (TokenGrant, error)
	// SinkPauseSet holds back every delivery to a sink origin until
	// p.Until, for every node, unless it is paused longer already.
	SinkPauseSet(ctx context.Context, p SinkPause) error
	// SinkPauseList returns the origins paused after now, in origin order.
	SinkPauseList(ctx context.Context, now time.Time) ([]SinkPause, error)
	// NodeBeat records that node p.ID is alive until p.Until and returns
	// how many nodes are alive at p.Now, itself included. Nodes whose
	// beat ended long ago are forgotten.
	NodeBeat(ctx context.Context, p NodeBeatParams) (int, error)
	// LimitsForget deletes the token buckets last taken from before
	// before, and the sink pauses that ended before it, and returns how
	// many rows it deleted. Choose before so that a bucket idle since
	// then has refilled to its burst: its next TokenTake then gives what
	// a new bucket gives.
	LimitsForget(ctx context.Context, before time.Time) (int, error)

	// APIKeyInsert stores a new API key; a key whose ID or Hash is stored
	// already is an error.
	APIKeyInsert(ctx context.Context, k *APIKey) error
	// APIKeyList returns every API key in ID (creation) order.
	APIKeyList(ctx context.Context) ([]*APIKey, error)
	// APIKeyDelete deletes an API key; ErrNotFound if it does not exist.
	APIKeyDelete(ctx context.Context, id string) error
	// APIKeysVersion returns a number that grows whenever a key is
	// inserted or deleted, so caches can tell when to reload.
	APIKeysVersion(ctx context.Context) (int64, error)

	// Close releases the store's resources.
	Close() error
}

// PruneParams says what Prune deletes, and where it goes on from.
type PruneParams struct {
	// DeliveredBefore and DeadBefore: a delivered (dead) delivery whose
	// last change was before this goes. Zero keeps them all.
	DeliveredBefore, DeadBefore time.Time
	// HeldBefore: a held delivery (its subscription suspended or
	// disabled) held since before this goes. Zero keeps them all.
	HeldBefore time.Time
	// EventsBefore: an event stored before this with no delivery left
	// goes (its dedupe record with it). Zero keeps them all.
	EventsBefore time.Time
	// AfterDelivery and AfterEvent are the cursors of a pass: the last
	// delivery ID and event examined by the previous call ("" and 0 to
	// start).
	AfterDelivery string
	AfterEvent    int64
	// Limit is the most deliveries, and the most events, examined (> 0).
	Limit int
}

// Goes reports whether a delivery in state, last changed at updated, is
// old enough for Prune to delete.
func (p PruneParams) Goes(state DeliveryState, updated time.Time) bool {
	switch state {
	case DeliveryDelivered:
		return !p.DeliveredBefore.IsZero() && updated.Before(p.DeliveredBefore)
	case DeliveryDead:
		return !p.DeadBefore.IsZero() && updated.Before(p.DeadBefore)
	case DeliveryHeld:
		return !p.HeldBefore.IsZero() && updated.Before(p.HeldBefore)
	}
	return false
}

// OldestCutoff is the latest of p's delivery cutoffs: a delivery created
// at or after it cannot be old enough for Prune to delete.
func (p PruneParams) OldestCutoff() time.Time {
	var t time.Time
	for _, c := range []time.Time{p.DeliveredBefore, p.DeadBefore, p.HeldBefore} {
		if c.After(t) {
			t = c
		}
	}
	return t
}

// PruneResult is what Prune deleted, and the cursors of the next call.
type PruneResult struct {
	Deliveries, Attempts, Events int
	AfterDelivery                string
	AfterEvent                   int64
	// Done is set when both passes reached rows too recent to go: start
	// from the beginning next time.
	Done bool
}

// APIKey is a key that authenticates calls to Herald's API. Only its
// SHA-256 is stored: the secret is shown once, at creation.
type APIKey struct {
	ID string
	// Hash is the hex SHA-256 of the secret.
	Hash        string
	DisplayName string
	Scopes      []policy.Scope
	// Tenant binds the key to one tenant; empty: bound to none.
	Tenant string
	// ExpiresAt is when the key stops working; zero: never.
	ExpiresAt time.Time
	// Hint is the secret's first characters, to tell keys apart.
	Hint string
	// PublishRate (events per second) and PublishBurst bound what the
	// key publishes on each node; zero: the node's default.
	PublishRate  float64
	PublishBurst int
	// CertificateSubject, if set, is the subject common name of client
	// certificates that authenticate as this key.
	CertificateSubject string
	CreatedAt          time.Time
}

// TokenTakeParams asks TokenTake for tokens.
type TokenTakeParams struct {
	Key   string    // the bucket, e.g. "sub:" and a subscription ID
	Rate  float64   // tokens gained per second (> 0)
	Burst float64   // the most tokens the bucket holds (>= 1)
	Want  int       // the most tokens to take (>= 1)
	Now   time.Time // the taker's clock
}

// TokenGrant is what TokenTake gave.
type TokenGrant struct {
	Taken int     // tokens taken, 0 to Want
	Left  float64 // tokens left in the bucket after the take
}

// SinkPause is a sink origin (scheme://host:port) paused until Until.
type SinkPause struct {
	Origin string
	Until  time.Time
}

// NodeBeatParams is one node's heartbeat.
type NodeBeatParams struct {
	ID    string    // the node's identity
	Now   time.Time // the node's clock
	Until time.Time // when the node counts as gone without another beat
}
