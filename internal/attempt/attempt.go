// Package attempt makes one attempt of a stored delivery: it decodes the
// event, sends it to the subscription's sink, and classifies the result.
package attempt

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/cevent"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/signing"
	"github.com/heraldhq/herald/internal/store"
)

// Sender sends one webhook request.
type Sender interface {
	Send(ctx context.Context, r *delivery.Request) delivery.Result
}

// Result is one attempt's record and what it means for the delivery.
type Result struct {
	Outcome policy.Outcome
	Record  store.Attempt
	// RetryAfter is the receiver's Retry-After, if it sent one.
	RetryAfter time.Duration
	// PauseSink is true when the Retry-After holds back every delivery to
	// the sink (429 or 503), not just this one.
	PauseSink bool
}

// Do sends delivery d (with its EventPayload) to sub's sink, signed by
// signer, as attempt number n. Failures to decode the stored event are
// permanent.
func Do(ctx context.Context, s Sender, d *store.Delivery, sub *store.Subscription, signer *signing.Signer, n int) Result {
	start := time.Now()
	rec := store.Attempt{DeliveryID: d.ID, Number: n, StartedAt: start}
	var pe cloudeventsv1.CloudEvent
	if err := proto.Unmarshal(d.EventPayload, &pe); err != nil {
		rec.Error = fmt.Sprintf("decode stored event: %v", err)
		return Result{Outcome: policy.Permanent, Record: rec}
	}
	e, err := cevent.FromProto(&pe)
	if err != nil {
		rec.Error = fmt.Sprintf("decode stored event: %v", err)
		return Result{Outcome: policy.Permanent, Record: rec}
	}
	res := s.Send(ctx, &delivery.Request{
		WebhookID: id.WebhookID(d.ID),
		Event:     &e,
		Sink:      sub.Sink,
		Signer:    signer,
		Headers:   sub.Headers,
		Mode:      sub.ContentMode,
	})
	rec.StatusCode = res.StatusCode
	rec.Latency = res.Latency
	rec.ResponseBody = res.Body
	if res.Err != nil {
		rec.Error = res.Err.Error()
	}
	out := Result{
		Outcome:    res.Outcome(sub.RetryPolicy.WithDefaults()),
		Record:     rec,
		RetryAfter: res.RetryAfter,
	}
	out.PauseSink = res.RetryAfter > 0 && policy.PausesSink(res.StatusCode)
	return out
}
