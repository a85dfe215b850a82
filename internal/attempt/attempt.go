// Package attempt makes one attempt of stored deliveries: it waits for the
// scheduler to let the request start, decodes the events, sends them to
// the subscription's sink, and classifies the result.
package attempt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/clients/cehttp"
	"github.com/heraldhq/herald/clients/cevent"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/clusterlimit"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/egress"
	"github.com/heraldhq/herald/internal/id"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
)

// Sender sends one webhook request.
type Sender interface {
	Send(ctx context.Context, r *delivery.Request) delivery.Result
}

// Attempter makes attempts. Share one per node, so that every attempt to a
// sink, first or retry, waits its turn in the same scheduler and counts
// against the same limits.
type Attempter struct {
	Sender    Sender
	Scheduler *scheduler.Scheduler
	// Origin is sent as WebHook-Request-Origin to sinks that went through
	// the validation handshake.
	Origin string
	// Tracer makes each attempt a span, a child of the event's trace
	// (its traceparent extension) when it has one; the span's context goes
	// to the sink as the traceparent header. Nil: the global provider's.
	Tracer trace.Tracer
	// Cluster, if set, keeps the limits for every node sharing the store
	// (its Tokens must be the Scheduler's Config.Tokens): a
	// subscription's max_concurrency is shared among the live nodes, and
	// a 429 or 503 with Retry-After pauses the sink's origin on every
	// node. Nil: limits and pauses hold per node (and per subscription).
	Cluster *clusterlimit.Limiter
	// Logger gets one line per attempt: a failure at info, a delivery at
	// debug (at thousands a second, successes are for metrics); nil logs
	// nothing. A line names the delivery, subscription, tenant, sink
	// host, attempt, status, outcome and latency, never a secret or data.
	Logger *slog.Logger
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
	// Span is the attempt's span, when one was started: what follows from
	// the attempt (its delivery's workflow) continues its trace.
	Span trace.SpanContext
}

// ReasonOriginPaused is why Do refuses a request whose sink origin was
// paused (a Retry-After) while it waited: the caller waits until the
// Refused's Until.
const ReasonOriginPaused = "the sink's origin asked to wait (Retry-After)"

// Limits returns the sink limits of en's subscription: its rate limit,
// its concurrency, and the rate its sink's origin granted
// (catalog.Entry.OriginRate), which it shares with the other
// subscriptions on the origin. A subscription that keeps out of its
// origin's sharing (catalog.Entry.Alone) keeps its grant to itself, as
// part of its own rate (store.Subscription.EffectiveRate).
func Limits(en *catalog.Entry) scheduler.Limits {
	sub := en.Subscription
	if en.Alone() {
		return scheduler.Limits{PerMinute: sub.EffectiveRate(), Concurrency: sub.MaxConcurrency}
	}
	return scheduler.Limits{PerMinute: sub.RateLimit, Concurrency: sub.MaxConcurrency, OriginPerMinute: en.OriginRate()}
}

// limits are en's limits on this node: with Cluster, its share of the
// concurrency.
func (a *Attempter) limits(en *catalog.Entry) scheduler.Limits {
	l := Limits(en)
	if a.Cluster != nil {
		l.Concurrency = a.Cluster.Share(l.Concurrency)
	}
	return l
}

// PausedUntil is when the pause of en's sink origin, set by any node,
// ends (zero or past: none). Without Cluster, or for a subscription
// that keeps out of its origin's sharing (catalog.Entry.Alone), always
// zero.
func (a *Attempter) PausedUntil(en *catalog.Entry) time.Time {
	if a.Cluster == nil || en.Alone() {
		return time.Time{}
	}
	return a.Cluster.PausedUntil(en.Origin)
}

// Acquire waits until the scheduler lets a request to en's sink start:
// after its turn among the requests to the sink's origin, within the
// subscription's rate and concurrency limits. If it may not start by
// deadline (zero: no deadline), or the origin's circuit breaker is open,
// or the scheduler is closing, it returns the *scheduler.Refused (or
// ctx's error): callers put the deliveries back without counting an
// attempt. Send the request with Send.
func (a *Attempter) Acquire(ctx context.Context, en *catalog.Entry, deadline time.Time) (*scheduler.Grant, error) {
	return a.AcquireHeld(ctx, en, deadline, 0)
}

// AcquireHeld is Acquire for a request for which held places were taken
// in its origin's queue (scheduler.Scheduler.Hold); it gives them back,
// whatever happens.
func (a *Attempter) AcquireHeld(ctx context.Context, en *catalog.Entry, deadline time.Time, held int) (*scheduler.Grant, error) {
	sub := en.Subscription
	return a.Scheduler.Acquire(ctx, scheduler.Request{
		Origin:   en.Origin,
		Key:      sub.ID,
		Limits:   a.limits(en),
		Deadline: deadline,
		Held:     held,
	})
}

// Send sends ds (each with its EventPayload) to en's sink as attempt
// number n of the first delivery, under grant (from Acquire), which it
// ends. More than one delivery is sent as one batch (the subscription's
// content mode must be batched).
//
// events, if not nil, holds the deliveries' events already decoded (nil
// entries are decoded from EventPayload); they are only read.
func (a *Attempter) Send(ctx context.Context, grant *scheduler.Grant, ds []*store.Delivery, events []*event.Event, en *catalog.Entry, n int) []Result {
	results, sig := a.send(ctx, ds, events, en, n)
	grant.Done(sig)
	a.pauseOrigin(ctx, en, results)
	return results
}

// pauseOrigin pauses en's sink origin for every node when a result says
// the sink asked to wait (429 or 503 with Retry-After).
func (a *Attempter) pauseOrigin(ctx context.Context, en *catalog.Entry, results []Result) {
	if a.Cluster == nil || en.Alone() {
		return
	}
	for _, r := range results {
		if !r.PauseSink {
			continue
		}
		until := r.Record.StartedAt.Add(r.RetryAfter)
		if err := a.Cluster.Pause(ctx, en.Origin, until); err != nil && a.Logger != nil {
			a.Logger.Warn("pause sink origin", "origin", en.Origin, "err", err)
		}
		return
	}
}

// Do is Acquire, then Send.
func (a *Attempter) Do(ctx context.Context, ds []*store.Delivery, events []*event.Event, en *catalog.Entry, n int, deadline time.Time) ([]Result, error) {
	grant, err := a.Acquire(ctx, en, deadline)
	if err != nil {
		return nil, err
	}
	// The sink's origin may have been paused while the request waited.
	if until := a.PausedUntil(en); until.After(time.Now()) {
		grant.Release()
		return nil, &scheduler.Refused{Reason: ReasonOriginPaused, Until: until}
	}
	return a.Send(context.WithoutCancel(ctx), grant, ds, events, en, n), nil
}

func (a *Attempter) send(ctx context.Context, ds []*store.Delivery, known []*event.Event, en *catalog.Entry, n int) ([]Result, scheduler.Signal) {
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
		return out, scheduler.Answered
	}
	signer, err := en.Signer(start)
	if err != nil {
		for _, i := range sent {
			out[i].Outcome = policy.Permanent
			out[i].Record.Error = err.Error()
		}
		return out, scheduler.Answered
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
	ctx, span := a.startSpan(ctx, en, events[0], n, len(sent))
	req.Trace = traceHeaders(ctx)
	res := a.Sender.Send(ctx, req)
	outcome := res.Outcome(sub.RetryPolicy.WithDefaults())
	endSpan(span, res, outcome)
	a.log(ctx, en, ds[sent[0]].ID, len(sent), n, outcome, res)
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
		out[i].Span = span.SpanContext()
	}
	return out, signal(res)
}

// traceContext reads and writes W3C Trace Context (traceparent,
// tracestate), as the CloudEvents distributed tracing extension carries it.
var traceContext = propagation.TraceContext{}

// startSpan starts an attempt's span: a child of ctx's span when it has
// one (a retry's activity, in its workflow's trace), else of e's trace if
// e carries one (its traceparent and tracestate extensions).
func (a *Attempter) startSpan(ctx context.Context, en *catalog.Entry, e *event.Event, n, events int) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		carrier := propagation.MapCarrier{}
		for _, k := range []string{"traceparent", "tracestate"} {
			if v, ok := e.Extensions()[k].(string); ok {
				carrier[k] = v
			}
		}
		if len(carrier) > 0 {
			ctx = traceContext.Extract(ctx, carrier)
		}
	}
	tr := a.Tracer
	if tr == nil {
		tr = otel.Tracer("github.com/heraldhq/herald/internal/attempt")
	}
	host := delivery.OriginHost(en.Origin)
	return tr.Start(ctx, "webhook "+host, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("herald.subscription", en.Subscription.ID),
		attribute.String("herald.tenant", en.Subscription.Tenant),
		attribute.String("herald.event.type", e.Type()),
		attribute.Int("herald.attempt", n),
		attribute.Int("herald.events", events),
		attribute.String("server.address", host),
		attribute.String("http.request.method", "POST"),
	))
}

// traceHeaders are the W3C headers of ctx's span, or nil without one.
func traceHeaders(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	return carrier
}

func endSpan(span trace.Span, res delivery.Result, outcome policy.Outcome) {
	if res.StatusCode != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", res.StatusCode))
	}
	span.SetAttributes(attribute.String("herald.outcome", string(outcome)))
	if outcome != policy.Delivered {
		msg := string(outcome)
		if res.Err != nil {
			msg = res.Err.Error()
		}
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

// log writes an attempt's line.
func (a *Attempter) log(ctx context.Context, en *catalog.Entry, deliveryID string, events, n int, outcome policy.Outcome, res delivery.Result) {
	if a.Logger == nil {
		return
	}
	level := slog.LevelInfo
	if outcome == policy.Delivered {
		level = slog.LevelDebug
	}
	if !a.Logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("delivery", deliveryID), slog.String("subscription", en.Subscription.ID),
		slog.String("tenant", en.Subscription.Tenant), slog.String("sink_host", delivery.OriginHost(en.Origin)),
		slog.Int("attempt", n), slog.Int("status", res.StatusCode), slog.String("outcome", string(outcome)),
		slog.Duration("latency", res.Latency),
	}
	if events > 1 {
		attrs = append(attrs, slog.Int("batch", events))
	}
	if res.Err != nil {
		attrs = append(attrs, slog.String("error", res.Err.Error()))
	}
	a.Logger.LogAttrs(ctx, level, "attempt", attrs...)
}

// signal is how the scheduler reads a result: no response at all is an
// unreachable origin, 429 and 503 an overloaded one, 2xx a success.
func signal(res delivery.Result) scheduler.Signal {
	switch {
	case res.StatusCode == 0 && !errors.Is(res.Err, delivery.ErrInvalidRequest) && !errors.Is(res.Err, egress.ErrForbidden):
		return scheduler.Unreachable
	case res.StatusCode == 429 || res.StatusCode == 503:
		return scheduler.Overloaded
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return scheduler.Answered
	}
	return scheduler.Failed
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
