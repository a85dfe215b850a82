// Package attempt makes one attempt of stored deliveries: it decodes the
// events, keeps to the sink's limits, sends them to the subscription's
// sink, and classifies the result.
package attempt

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/protobuf/proto"

	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/cehttp"
	"github.com/heraldhq/herald/internal/cevent"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/throttle"
)

// Sender sends one webhook request.
type Sender interface {
	Send(ctx context.Context, r *delivery.Request) delivery.Result
}

// Attempter makes attempts. Share one per node, so that every attempt to a
// sink, first or retry, counts against the same limits.
type Attempter struct {
	Sender   Sender
	Throttle *throttle.Throttle
	// Origin is sent as WebHook-Request-Origin to sinks that went through
	// the validation handshake.
	Origin string
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

// Limits returns the sink limits of a subscription.
func Limits(sub *store.Subscription) throttle.Limits {
	return throttle.Limits{PerMinute: sub.EffectiveRate(), Concurrency: sub.MaxConcurrency}
}

// Do sends ds (each with its EventPayload) to en's sink as attempt number
// n of the first delivery, if the sink's rate and concurrency limits allow
// a request now. Otherwise it sends nothing and returns false with how long
// to wait: callers reschedule rather than hold a goroutine. More than one
// delivery is sent as one batch (the subscription's content mode must be
// batched).
//
// events, if not nil, holds the deliveries' events already decoded (nil
// entries are decoded from EventPayload); they are only read.
func (a *Attempter) Do(ctx context.Context, ds []*store.Delivery, events []*event.Event, en *catalog.Entry, n int) ([]Result, time.Duration, bool) {
	release, wait, ok := a.Throttle.TryAcquire(en.Subscription.ID, Limits(en.Subscription), time.Now())
	if !ok {
		return nil, wait, false
	}
	defer release()
	return a.send(ctx, ds, events, en, n), 0, true
}

func (a *Attempter) send(ctx context.Context, ds []*store.Delivery, known []*event.Event, en *catalog.Entry, n int) []Result {
	start := time.Now()
	sub := en.Subscription
	batched := sub.ContentMode == policy.ContentBatched
	out := make([]Result, len(ds))
	// sent[k] is the index in ds of events[k]: an event that cannot be
	// sent fails alone, and the rest of a batch is still sent.
	events := make([]*event.Event, 0, len(ds))
	sent := make([]int, 0, len(ds))
	for i, d := range ds {
		out[i].Record = store.Attempt{DeliveryID: d.ID, Number: n, StartedAt: start}
		e, err := eventOf(d, known, i)
		if err == nil && batched {
			err = cehttp.CheckEvent(e)
		}
		if err != nil {
			out[i].Outcome = policy.Permanent
			out[i].Record.Error = err.Error()
			continue
		}
		events = append(events, e)
		sent = append(sent, i)
	}
	if len(events) == 0 {
		return out
	}
	signer, err := en.Signer(start)
	if err != nil {
		for _, i := range sent {
			out[i].Outcome = policy.Permanent
			out[i].Record.Error = err.Error()
		}
		return out
	}
	req := &delivery.Request{
		WebhookID:   id.WebhookID(ds[sent[0]].ID),
		Sink:        sub.Sink,
		Signer:      signer,
		Headers:     sub.Headers,
		Mode:        sub.ContentMode,
		BearerToken: sub.BearerToken,
	}
	if !sub.SkipValidation {
		req.Origin = a.Origin
	}
	if batched {
		req.Batch = events
	} else {
		req.Event = events[0]
	}
	res := a.Sender.Send(ctx, req)
	outcome := res.Outcome(sub.RetryPolicy.WithDefaults())
	metrics.Attempts.WithLabelValues(string(outcome)).Add(float64(len(sent)))
	metrics.AttemptSeconds.Observe(res.Latency.Seconds())
	for _, i := range sent {
		rec := &out[i].Record
		rec.StatusCode = res.StatusCode
		rec.Latency = res.Latency
		rec.ResponseBody = res.Body
		if res.Err != nil {
			rec.Error = res.Err.Error()
		}
		out[i].Outcome = outcome
		out[i].RetryAfter = res.RetryAfter
		out[i].PauseSink = res.RetryAfter > 0 && policy.PausesSink(res.StatusCode)
	}
	return out
}

// eventOf is ds[i]'s event: known[i] if the caller had it decoded, or
// decoded from the delivery's stored payload.
func eventOf(d *store.Delivery, known []*event.Event, i int) (*event.Event, error) {
	if i < len(known) && known[i] != nil {
		return known[i], nil
	}
	return decode(d.EventPayload)
}

func decode(payload []byte) (*event.Event, error) {
	var pe cloudeventsv1.CloudEvent
	if err := proto.Unmarshal(payload, &pe); err != nil {
		return nil, fmt.Errorf("decode stored event: %w", err)
	}
	e, err := cevent.FromProto(&pe)
	if err != nil {
		return nil, fmt.Errorf("decode stored event: %w", err)
	}
	return &e, nil
}
