// Package workflows owns the failure path: a Temporal workflow per failed
// delivery that retries it with backoff, dead-letters it, and redrives it
// on request, with its activities and search attributes.
package workflows

import (
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/heraldhq/herald/internal/config"
)

// Names shared by the worker, the starters and operators.
const (
	// TaskQueue is the default task queue of Herald's workers.
	TaskQueue = config.DefaultTaskQueue
	// DeliveryWorkflowName is the registered name of Delivery.
	DeliveryWorkflowName = "Delivery"
	// RedriveSignal makes a dead-lettered delivery start a fresh series of
	// attempts.
	RedriveSignal = "redrive"
	// WakeSignal ends a retrying delivery's wait before its next attempt:
	// its sink answers again (see Waker).
	WakeSignal = "wake"
	// RedriveUpdate and ResendUpdate start a fresh series of attempts of a
	// dead-lettered delivery (the Temporal UI's "Send an Update"; the
	// validator refuses them for a delivery still being retried), and
	// RetryNowUpdate ends the wait before the next attempt.
	RedriveUpdate  = "redrive"
	ResendUpdate   = "resend"
	RetryNowUpdate = "retry-now"
	// StatusQuery answers a delivery's DeliveryStatus.
	StatusQuery = "status"
)

// Search attributes kept current on every delivery workflow, so operators
// can find deliveries in the Temporal UI, e.g.
// HeraldDeliveryState="dead" AND HeraldSubscriptionId="sub_...".
var (
	AttrSubscriptionID = temporal.NewSearchAttributeKeyKeyword("HeraldSubscriptionId")
	AttrSinkHost       = temporal.NewSearchAttributeKeyKeyword("HeraldSinkHost")
	AttrEventType      = temporal.NewSearchAttributeKeyKeyword("HeraldEventType")
	AttrDeliveryState  = temporal.NewSearchAttributeKeyKeyword("HeraldDeliveryState")
	AttrAttempts       = temporal.NewSearchAttributeKeyInt64("HeraldAttempts")
	AttrLastStatus     = temporal.NewSearchAttributeKeyInt64("HeraldLastStatus")
)

// SearchAttributes is every custom search attribute Herald uses, with its
// type, for registration in the namespace.
var SearchAttributes = map[string]enumspb.IndexedValueType{
	AttrSubscriptionID.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrSinkHost.GetName():       enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrEventType.GetName():      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrDeliveryState.GetName():  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	AttrAttempts.GetName():       enumspb.INDEXED_VALUE_TYPE_INT,
	AttrLastStatus.GetName():     enumspb.INDEXED_VALUE_TYPE_INT,
}

// Values of AttrDeliveryState.
const (
	StateRetrying  = "retrying"
	StateDelivered = "delivered"
	StateDead      = "dead"
	StateRedriving = "redriving"
	// StateHeld: the subscription is suspended or disabled; the delivery
	// is held in the store and this workflow has ended.
	StateHeld = "held"
)

// WorkflowID is the ID of a delivery's workflow. One delivery has at most
// one workflow running.
func WorkflowID(subscriptionID, deliveryID string) string {
	return fmt.Sprintf("delivery/%s/%s", subscriptionID, deliveryID)
}
