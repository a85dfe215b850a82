package e2e

import (
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

// TestTracing_APublishersTraceReachesTheSink: a Publish call's trace is
// kept with the event; each attempt is a span of it, a child of the
// Publish call's span, and the sink gets the attempt's traceparent, in
// the same trace. An event that brings its own traceparent keeps it.
func TestTracing_APublishersTraceReachesTheSink(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	cfg := nodeConfig(t, tempStore(t))
	cfg.Tracing = true
	n := startNode(t, cfg)
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
