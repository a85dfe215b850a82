// Package server is Herald's API surface: the gRPC services and the HTTP
// edge. It translates requests and delegates; the work happens below.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	cloudeventsv1 "github.com/heraldhq/herald/gen/io/cloudevents/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/egress"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/opsevents"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/publish"
	"github.com/heraldhq/herald/internal/redrive"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/workflows"
)

// Workflows starts and signals Herald's Temporal workflows.
type Workflows interface {
	// Redrive restarts a dead-lettered delivery on its workflow.
	Redrive(ctx context.Context, in workflows.DeliveryInput) error
	// StartHandshake starts a subscription's validation handshake.
	StartHandshake(ctx context.Context, in workflows.HandshakeInput) error
	// Grant passes an asynchronous grant to a waiting handshake.
	Grant(ctx context.Context, subscriptionID string, g workflows.GrantInput) error
	// Status asks a retrying delivery's workflow how it stands.
	Status(ctx context.Context, subscriptionID, deliveryID string) (workflows.DeliveryStatus, error)
}

// Options configure the services.
type Options struct {
	// AllowInsecureSinks accepts http:// sinks (development); otherwise
	// sinks must be https://.
	AllowInsecureSinks bool
	// Origin is Herald's WebHook-Request-Origin in validation handshakes.
	Origin string
	// PublicURL is the base URL of Herald's HTTP edge as sinks reach it;
	// validation callbacks go to PublicURL + "/v1/validation/...".
	PublicURL string
	// Egress refuses sinks at internal addresses (nil: none refused).
	Egress *egress.Guard
	// Resolver resolves sink hosts for Egress (nil: the system's).
	Resolver egress.Resolver
	// Auth authenticates callers; nil runs every call as auth.Open
	// (`herald dev` without an admin key).
	Auth Authenticator
	// Keys stores API keys for ApiKeyService; nil serves none.
	// KeysChanged is called after a key is made or deleted.
	Keys        KeyStore
	KeysChanged KeysChanged
	// Tracing traces gRPC calls (OpenTelemetry, the global provider), and
	// keeps a Publish call's trace with each event that does not carry
	// one (the CloudEvents traceparent extension), so that its attempts
	// are spans of that trace.
	Tracing bool
	// Ops publishes operational events about subscriptions changed
	// through the API (enabled, disabled); nil publishes none.
	Ops *opsevents.Emitter
	// Limits bound requests and subscriptions (zero fields:
	// policy.DefaultLimits).
	Limits policy.Limits
	// MetricsOpen serves /metrics without an API key; otherwise it needs
	// the admin scope (when Auth is set).
	MetricsOpen bool
	Logger      *slog.Logger
}

// Services implements Herald's gRPC services.
type Services struct {
	heraldv1.UnimplementedPublishServiceServer
	heraldv1.UnimplementedSubscriptionServiceServer
	heraldv1.UnimplementedDeliveryServiceServer
	heraldv1.UnimplementedApiKeyServiceServer
	heraldv1.UnimplementedEventServiceServer

	publisher *publish.Publisher
	store     store.Store
	catalog   *catalog.Catalog
	workflows Workflows
	redriver  *redrive.Redriver
	opts      Options
}

// NewServices returns the gRPC services over Herald's components.
func NewServices(p *publish.Publisher, s store.Store, c *catalog.Catalog, w Workflows, opts Options) *Services {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Limits = opts.Limits.WithDefaults()
	return &Services{publisher: p, store: s, catalog: c, workflows: w, opts: opts,
		redriver: &redrive.Redriver{Store: s, Workflows: w}}
}

// streamWorkers is the size of the gRPC server's pool of stream workers,
// room for this many RPCs at once before calls start goroutines of their
// own.
const streamWorkers = 256

// NewGRPCServer returns a gRPC server with Herald's services, the standard
// health service and reflection (so grpcurl needs no .proto files).
func NewGRPCServer(svc *Services, hs *health.Server, opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(svc.opts.Limits.MaxRequestSize),
		// Bounded streams per connection, and clients that ping too
		// often are cut off.
		grpc.MaxConcurrentStreams(1024),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute, Time: time.Minute, Timeout: 20 * time.Second}),
		// A connection that has not finished its handshake (TLS, HTTP/2
		// preface) within this is closed: idle sockets cannot hold the
		// listener's connection slots for long.
		grpc.ConnectionTimeout(policy.HandshakeTimeout),
		grpc.StatsHandler(arrivals{svc.publisher}),
		// A pool of stream workers instead of a goroutine per RPC. It must
		// cover the calls in flight: Publish handlers wait for their group
		// commit, and a call that finds every worker busy gets a new
		// goroutine whose stack grows on the way down (~43,000
		// instructions per single-event call with a pool of GOMAXPROCS;
		// docs/benchmarks.md, items 13 and 17).
		grpc.NumStreamWorkers(streamWorkers),
		// A panic in one handler is that call's INTERNAL, never the node's
		// end. Every call is then authenticated and authorised.
		grpc.ChainUnaryInterceptor(recoverUnary(svc.opts.Logger), authUnary(svc.opts.Auth)),
		grpc.ChainStreamInterceptor(recoverStream(svc.opts.Logger), authStream(svc.opts.Auth)),
	}, opts...)
	if svc.opts.Tracing {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler()))
	}
	g := grpc.NewServer(opts...)
	heraldv1.RegisterPublishServiceServer(g, svc)
	heraldv1.RegisterSubscriptionServiceServer(g, svc)
	heraldv1.RegisterDeliveryServiceServer(g, svc)
	heraldv1.RegisterApiKeyServiceServer(g, svc)
	heraldv1.RegisterEventServiceServer(g, svc)
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)
	return g
}

// Publish implements herald.v1.PublishService.
func (s *Services) Publish(ctx context.Context, req *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error) {
	p := auth.FromContext(ctx)
	if wait, ok := p.ReservePublish(len(req.GetEvents()), time.Now()); !ok {
		return nil, publishLimited(wait)
	}
	if s.opts.Tracing {
		keepTrace(ctx, req.GetEvents())
	}
	results, err := s.publisher.Publish(ctx, p.Tenant, req.GetEvents())
	if err != nil {
		return nil, publishError(err)
	}
	resp := &heraldv1.PublishResponse{Results: make([]*heraldv1.PublishResult, len(results))}
	for i, r := range results {
		st := heraldv1.PublishStatus_PUBLISH_STATUS_ACCEPTED
		if r.Duplicate {
			st = heraldv1.PublishStatus_PUBLISH_STATUS_DUPLICATE
		}
		resp.Results[i] = &heraldv1.PublishResult{Source: r.Source, Id: r.ID, Status: st, DeliveryIds: r.DeliveryIDs}
	}
	return resp, nil
}

// keepTrace gives each event that carries no trace the call's, as the
// CloudEvents distributed tracing extension (traceparent, tracestate).
func keepTrace(ctx context.Context, events []*cloudeventsv1.CloudEvent) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	for _, e := range events {
		if e == nil {
			continue
		}
		if _, has := e.GetAttributes()["traceparent"]; has {
			continue
		}
		if e.Attributes == nil {
			e.Attributes = map[string]*cloudeventsv1.CloudEvent_CloudEventAttributeValue{}
		}
		for k, v := range carrier {
			e.Attributes[k] = &cloudeventsv1.CloudEvent_CloudEventAttributeValue{Attr: &cloudeventsv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: v}}
		}
	}
}

// publishLimited is the answer to a key over its publish rate:
// RESOURCE_EXHAUSTED with how long to wait.
func publishLimited(wait time.Duration) error {
	metrics.PublishLimited.Inc()
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("the API key is over its publish rate; retry in %s", wait.Round(time.Millisecond)))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = d
	}
	return st.Err()
}

func publishError(err error) error {
	var invalid *publish.InvalidError
	switch {
	case errors.As(err, &invalid):
		br := &errdetails.BadRequest{}
		for _, v := range invalid.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: v.Field, Description: v.Description,
			})
		}
		return withDetails(codes.InvalidArgument, invalid.Error(), br)
	case errors.Is(err, publish.ErrClosed):
		return status.Error(codes.Unavailable, "herald is shutting down; retry on another node")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.Unavailable, err.Error())
	}
}

// invalidArgument reports one bad field.
func invalidArgument(field, description string) error {
	return withDetails(codes.InvalidArgument, field+": "+description, &errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: description}},
	})
}

func withDetails(c codes.Code, msg string, br *errdetails.BadRequest) error {
	st, err := status.New(c, msg).WithDetails(br)
	if err != nil {
		return status.Error(c, msg)
	}
	return st.Err()
}

// storeError maps a store error to a gRPC status; a status error (from a
// change that refused) passes through.
func storeError(err error, what string) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Err()
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Errorf(codes.NotFound, "%s not found", what)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Errorf(codes.Unavailable, "store: %v", err)
	}
}
