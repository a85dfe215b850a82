// Package publisher is the Go client other services use to publish
// CloudEvents to Herald.
package publisher

import (
	"context"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/clients/cevent"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
)

// Client publishes events over a gRPC connection. It is safe for
// concurrent use; share one per process.
type Client struct {
	svc heraldv1.PublishServiceClient
}

// New returns a client on conn, e.g. from grpc.NewClient.
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{svc: heraldv1.NewPublishServiceClient(conn)}
}

// Result is the outcome of publishing one event.
type Result struct {
	Source, ID string
	// Duplicate is true when Herald had the event (same source and id)
	// already: nothing new is delivered.
	Duplicate bool
	// DeliveryIDs are the event's deliveries, one per matching subscription.
	DeliveryIDs []string
}

// Publish sends events in one call and returns once Herald has stored them
// durably, one result per event in order. If any event is invalid nothing
// is stored and the error has code InvalidArgument; FieldViolations lists
// the problems. Publishing again after an error is safe: Herald dedupes
// on source and id.
func (c *Client) Publish(ctx context.Context, events ...event.Event) ([]Result, error) {
	req := &heraldv1.PublishRequest{Events: make([]*cloudeventsv1.CloudEvent, len(events))}
	for i, e := range events {
		pe, err := cevent.ToProto(e)
		if err != nil {
			return nil, fmt.Errorf("publisher: event %d: %w", i, err)
		}
		req.Events[i] = pe
	}
	resp, err := c.svc.Publish(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		out[i] = Result{
			Source:      r.GetSource(),
			ID:          r.GetId(),
			Duplicate:   r.GetStatus() == heraldv1.PublishStatus_PUBLISH_STATUS_DUPLICATE,
			DeliveryIDs: r.GetDeliveryIds(),
		}
	}
	return out, nil
}

// FieldViolations returns the invalid fields named in a Publish error
// (e.g. "events[0].type" -> "required"), or nil.
func FieldViolations(err error) map[string]string {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	var out map[string]string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if out == nil {
					out = map[string]string{}
				}
				out[v.GetField()] = v.GetDescription()
			}
		}
	}
	return out
}
