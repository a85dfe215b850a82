package e2e

import (
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// recordSpans makes the global tracer provider one that records every
// span, until the test ends.
func recordSpans(t *testing.T) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	return rec, tp
}

// tracedNode starts a node with tracing on.
func tracedNode(t *testing.T) *testNode {
	cfg := nodeConfig(t, tempStore(t))
	cfg.Tracing = true
	return startNode(t, cfg)
}

// TestTracing_APublishersTraceReachesTheSink: a Publish call's trace is
// kept with the event; each attempt is a span of it, a child of the
// Publish call's span, and the sink gets the attempt's traceparent, in
// the same trace. An event that brings its own traceparent keeps it.
func TestTracing_APublishersTraceReachesTheSink(t *testing.T) {
	rec, tp := recordSpans(t)
	n := tracedNode(t)
	rcv := heraldtest.NewReceiver(t, nil)
	createSub(t, n, rcv.URL)

	conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctxSpan, root := tp.Tracer("test").Start(ctx(t), "publisher")
	if _, err := heraldv1.NewPublishServiceClient(conn).Publish(ctxSpan, &heraldv1.PublishRequest{Events: []*cloudeventsv1.CloudEvent{newEvent("traced-1")}}); err != nil {
		t.Fatal(err)
	}
	root.End()
	req := rcv.WaitFor(t, 1, wait)[0]
	traceID := root.SpanContext().TraceID().String()
	if tp := req.Header.Get("traceparent"); !strings.Contains(tp, traceID) {
		t.Errorf("the sink got traceparent %q, want trace %s", tp, traceID)
	}
	if ce := req.Header.Get("Ce-Traceparent"); !strings.Contains(ce, traceID) {
		t.Errorf("the event's traceparent extension is %q, want trace %s", ce, traceID)
	}
	var attempt, server sdktrace.ReadOnlySpan
	heraldtest.Eventually(t, wait, "the attempt's span", func() bool {
		for _, s := range rec.Ended() {
			switch {
			case strings.HasPrefix(s.Name(), "webhook "):
				attempt = s
			case s.SpanKind() == trace.SpanKindServer && strings.HasSuffix(s.Name(), "/Publish"):
				server = s
			}
		}
		return attempt != nil && server != nil
	})
	if attempt.SpanContext().TraceID() != root.SpanContext().TraceID() || attempt.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("the attempt's span is in trace %s under %s, want trace %s under the Publish call's span %s",
			attempt.SpanContext().TraceID(), attempt.Parent().SpanID(), traceID, server.SpanContext().SpanID())
	}

	// An event that brings its own trace keeps it.
	own := newEvent("traced-2")
	own.Attributes["traceparent"] = str("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	publish(t, n, own)
	req = rcv.WaitFor(t, 2, wait)[1]
	if tp := req.Header.Get("traceparent"); !strings.Contains(tp, "0af7651916cd43dd8448eb211c80319c") {
		t.Errorf("an event's own trace: the sink got traceparent %q", tp)
	}
}

// TestTracing_ARetryContinuesTheTraceThroughItsWorkflow: a delivery whose
// first attempt fails is retried in a workflow that is a span of the
// failed attempt's trace (Temporal's tracing interceptor), and the retry
// that delivers it is a span of that workflow's activity: one trace from
// the publisher to the retry that got through.
func TestTracing_ARetryContinuesTheTraceThroughItsWorkflow(t *testing.T) {
	rec, _ := recordSpans(t)
	n := tracedNode(t)
	rcv := heraldtest.NewReceiver(t, failFirst(1, http.StatusInternalServerError, nil))
	createSub(t, n, rcv.URL)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	e := newEvent("traced-retry")
	e.Attributes["traceparent"] = str("00-" + traceID + "-00f067aa0ba902b7-01")
	publish(t, n, e)
	reqs := rcv.WaitFor(t, 2, wait)
	for i, r := range reqs {
		if tp := r.Header.Get("traceparent"); !strings.Contains(tp, traceID) {
			t.Errorf("request %d: traceparent %q, want trace %s", i+1, tp, traceID)
		}
	}

	// Walk up from the retry that delivered: through its activity and
	// its workflow (whose span ends when the workflow does) to the failed
	// first attempt.
	var path []string
	heraldtest.Eventually(t, wait, "the trace from the retry up to the first attempt", func() bool {
		byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
		var attempts []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			byID[s.SpanContext().SpanID()] = s
			if strings.HasPrefix(s.Name(), "webhook ") && s.SpanContext().TraceID().String() == traceID {
				attempts = append(attempts, s)
			}
		}
		if len(attempts) != 2 {
			return false
		}
		first, retry := attempts[0], attempts[1]
		if first.StartTime().After(retry.StartTime()) {
			first, retry = retry, first
		}
		path = path[:0]
		for s := byID[retry.Parent().SpanID()]; s != nil; s = byID[s.Parent().SpanID()] {
			if s.SpanContext().SpanID() == first.SpanContext().SpanID() {
				return true
			}
			path = append(path, s.Name())
		}
		return false
	})
	joined := strings.Join(path, " <- ")
	if !strings.Contains(joined, "RunActivity:") || !strings.Contains(joined, "RunWorkflow:") {
		t.Errorf("between the retry and the first attempt: %q, want its activity and its workflow", joined)
	}
}
