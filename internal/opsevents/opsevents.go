// Package opsevents makes Herald's own CloudEvents about its subscriptions
// and deliveries (a delivery dead-lettered, a subscription suspended,
// disabled or enabled, a validation handshake failed) and publishes them
// through the normal path, signed and retried like any event, to the
// subscriptions that name their types.
package opsevents

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/store"
)

// The event types. A subscription receives them only by naming them in
// its types (a subscription with no types does not); publishers may not
// use the io.herald. prefix.
const (
	DeliveryDead           = "io.herald.delivery.dead"
	SubscriptionDisabled   = "io.herald.subscription.disabled"
	SubscriptionEnabled    = "io.herald.subscription.enabled"
	ValidationFailed       = "io.herald.subscription.validation.failed"
	SubscriptionSuspended  = "io.herald.subscription.suspended"
	typePrefix             = "io.herald."
	jsonContentType        = "application/json"
	sourcePrefix           = "herald://"
	deliveryDeadIDPrefix   = "dead/"
	subscriptionIDPrefix   = "subscription/"
	validationFailedPrefix = "validation-failed/"
)

// Publisher publishes operational events (publish.Publisher.PublishOps):
// for tenant, to subscriptions other than exclude that name the type.
type Publisher interface {
	PublishOps(ctx context.Context, tenant, exclude string, events []*cloudeventsv1.CloudEvent) error
}

// Emitter publishes operational events. A nil Emitter publishes nothing.
type Emitter struct {
	Publisher Publisher
	// Origin is Herald's DNS name: the events' source is herald://Origin.
	Origin string
}

// DeliveryDeadData is the data of a DeliveryDead event.
type DeliveryDeadData struct {
	DeliveryID     string `json:"delivery_id"`
	SubscriptionID string `json:"subscription_id"`
	EventSource    string `json:"event_source"`
	EventID        string `json:"event_id"`
	EventType      string `json:"event_type"`
	Attempts       int    `json:"attempts"`
	LastStatus     int    `json:"last_status"`
	Reason         string `json:"reason"`
}

// SubscriptionData is the data of the subscription events.
type SubscriptionData struct {
	SubscriptionID string `json:"subscription_id"`
	Sink           string `json:"sink"`
	State          string `json:"state"`
	Reason         string `json:"reason,omitempty"`
}

// DeliveryDead says a delivery was dead-lettered. An event about an
// operational event's delivery is not made: no chain of them.
func (e *Emitter) DeliveryDead(ctx context.Context, sub *store.Subscription, d *store.Delivery, reason string) error {
	if e == nil || len(d.EventType) >= len(typePrefix) && d.EventType[:len(typePrefix)] == typePrefix {
		return nil
	}
	return e.emit(ctx, sub, DeliveryDead, fmt.Sprintf("%s%s/%d", deliveryDeadIDPrefix, d.ID, d.Attempts), DeliveryDeadData{
		DeliveryID: d.ID, SubscriptionID: sub.ID, EventSource: d.EventSource, EventID: d.EventID, EventType: d.EventType,
		Attempts: d.Attempts, LastStatus: d.LastStatus, Reason: reason,
	})
}

// SubscriptionChanged says a subscription was suspended, disabled or
// enabled (typ: SubscriptionSuspended, SubscriptionDisabled or
// SubscriptionEnabled), or failed its
// validation handshake (ValidationFailed), at when.
func (e *Emitter) SubscriptionChanged(ctx context.Context, sub *store.Subscription, typ, reason string, when time.Time) error {
	if e == nil {
		return nil
	}
	id := fmt.Sprintf("%s%s/%s/%d", subscriptionIDPrefix, sub.ID, typ[len(typePrefix):], when.UnixMilli())
	return e.emit(ctx, sub, typ, id, SubscriptionData{SubscriptionID: sub.ID, Sink: sub.Sink, State: string(sub.State), Reason: reason})
}

// emit publishes one event about sub, to sub's tenant, not to sub.
func (e *Emitter) emit(ctx context.Context, sub *store.Subscription, typ, id string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	str := func(s string) *cloudeventsv1.CloudEvent_CloudEventAttributeValue {
		return &cloudeventsv1.CloudEvent_CloudEventAttributeValue{Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: s}}
	}
	ev := &cloudeventsv1.CloudEvent{
		Id: id, Source: sourcePrefix + e.Origin, SpecVersion: "1.0", Type: typ,
		Attributes: map[string]*cloudeventsv1.CloudEvent_CloudEventAttributeValue{
			"datacontenttype": str(jsonContentType),
			"subject":         str(sub.ID),
			"time":            {Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.Now()}},
		},
		Data: &cloudeventsv1.CloudEvent_TextData{TextData: string(b)},
	}
	if err := e.Publisher.PublishOps(ctx, sub.Tenant, sub.ID, []*cloudeventsv1.CloudEvent{ev}); err != nil {
		return fmt.Errorf("publish %s: %w", typ, err)
	}
	return nil
}
