// Package app assembles Herald's components into one running node and
// shuts them down in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/cpuload"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/dispatch"
	"github.com/heraldhq/herald/internal/egress"
	"github.com/heraldhq/herald/internal/handshake"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/publish"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/postgres"
	"github.com/heraldhq/herald/internal/store/sqlite"
	"github.com/heraldhq/herald/server"
	"github.com/heraldhq/herald/workflows"
)

// Node is one running Herald node: the API, the publisher, the dispatcher
// and a Temporal worker, over one store.
type Node struct {
	cfg    config.Config
	logger *slog.Logger

	store      store.Store
	scheduler  *scheduler.Scheduler
	temporal   client.Client
	worker     worker.Worker
	publisher  *publish.Publisher
	ingest     *server.Ingest
	grpc       *grpc.Server
	health     *health.Server
	http       *http.Server
	grpcLn     net.Listener
	httpLn     net.Listener
	cancel     context.CancelFunc
	background sync.WaitGroup
	stopOnce   sync.Once
}

// Listen opens the node's gRPC and HTTP listeners, so that a port in use is
// reported before anything starts.
func Listen(cfg config.Config) (grpcLn, httpLn net.Listener, err error) {
	grpcLn, err = net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("herald gRPC address %s is not available: %w", cfg.GRPCAddr, err)
	}
	httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		grpcLn.Close()
		return nil, nil, fmt.Errorf("herald HTTP address %s is not available: %w", cfg.HTTPAddr, err)
	}
	return grpcLn, httpLn, nil
}

// OpenStore opens the database cfg names.
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	if cfg.IsPostgres() {
		return postgres.Open(ctx, cfg.Store)
	}
	return sqlite.Open(ctx, cfg.Store)
}

// Start starts a node on the given listeners (see Listen) and returns once
// it serves. Stop it with Stop.
func Start(ctx context.Context, cfg config.Config, grpcLn, httpLn net.Listener, logger *slog.Logger) (_ *Node, err error) {
	n := &Node{cfg: cfg, logger: logger, grpcLn: grpcLn, httpLn: httpLn}
	defer func() {
		if err != nil {
			n.closeAll() // n, not the nil result
		}
	}()
	if n.store, err = OpenStore(ctx, cfg); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	cat := catalog.New(n.store, logger)
	if err = cat.Reload(ctx); err != nil {
		return nil, err
	}
	n.temporal, err = client.DialContext(ctx, client.Options{
		HostPort:  cfg.TemporalAddr,
		Namespace: cfg.TemporalNamespace,
		Logger:    tlog.NewStructuredLogger(logger.With("component", "temporal-sdk")),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddr, err)
	}
	if err = workflows.EnsureSearchAttributes(ctx, n.temporal, cfg.TemporalNamespace, workflows.SearchAttributes); err != nil {
		return nil, fmt.Errorf("register search attributes: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	cpu := &cpuload.Monitor{}
	n.background.Add(1)
	go func() {
		defer n.background.Done()
		cpu.Run(runCtx)
	}()
	allow, err := cfg.SinkAllowPrefixes()
	if err != nil {
		return nil, err
	}
	guard := &egress.Guard{AllowPrivate: cfg.AllowPrivateSinks, Allow: allow}
	if cfg.AllowPrivateSinks {
		logger.Warn("sinks may be at private and loopback addresses (allow-private-sinks): for development only")
	}
	// Every outbound request goes through the guarded transport.
	outbound := &http.Client{Transport: delivery.NewTransport(guard, 0, 16), Timeout: policy.RequestTimeout}
	waker := &workflows.Waker{Client: n.temporal, Namespace: cfg.TemporalNamespace, Logger: logger.With("component", "waker")}
	sched := scheduler.New(scheduler.Config{
		// A sink that answers again: its deliveries waiting in retry
		// backoff go now.
		OnRecover: func(origin string) {
			woken, err := waker.Wake(runCtx, delivery.OriginHost(origin))
			metrics.RetriesWoken.Add(float64(woken))
			if err != nil && runCtx.Err() == nil {
				logger.Warn("wake retries of a recovered sink", "origin", origin, "err", err)
			}
		},
		// Short of CPU: using nearly all of it, or goroutines waiting
		// long to run (as when other processes take the CPU).
		Busy:                 func() bool { return cpu.Busy() || cpu.Saturated() },
		MaxInFlight:          cfg.MaxInFlight,
		MaxQueued:            cfg.Queue,
		OriginConcurrency:    cfg.OriginConcurrency,
		MaxOriginConcurrency: cfg.MaxOriginConcurrency,
		BreakerThreshold:     cfg.BreakerThreshold,
		BreakerOpen:          cfg.BreakerOpen,
		BreakerMaxOpen:       cfg.BreakerMaxOpen,
	})
	n.scheduler = sched
	metrics.Scheduler(func() metrics.SchedulerStats {
		st := sched.Stats()
		refused := make(map[string]int64, len(st.Refused))
		for reason, n := range st.Refused {
			refused[refusedLabel[reason]] += n
		}
		return metrics.SchedulerStats{InFlight: st.InFlight, Queued: st.Queued, Origins: st.Origins, Open: st.Open, Refused: refused}
	})
	metrics.Origins(func() []metrics.OriginStats {
		all := sched.Origins()
		out := make([]metrics.OriginStats, len(all))
		for i, o := range all {
			out[i] = metrics.OriginStats{Origin: o.Name, InFlight: o.InFlight, Waiting: o.Waiting, Limit: o.Limit, Open: o.Open}
		}
		return out
	})
	attempter := &attempt.Attempter{
		Sender:    delivery.NewSender(delivery.WithGuard(guard), delivery.WithMaxConnsPerHost(cfg.MaxOriginConcurrency)),
		Scheduler: sched,
		Origin:    cfg.Origin,
	}
	n.worker = worker.New(n.temporal, cfg.TaskQueue, worker.Options{})
	workflows.Register(n.worker, &workflows.Activities{
		Store:     n.store,
		Attempter: attempter,
		Handshake: handshake.NewClient(outbound),
		SubscriptionChanged: func(ctx context.Context) {
			if err := cat.Reload(ctx); err != nil {
				logger.Warn("catalog reload after subscription change", "err", err)
			}
		},
	})
	if err = n.worker.Start(); err != nil {
		return nil, fmt.Errorf("start Temporal worker: %w", err)
	}

	disp := dispatch.New(dispatch.Config{
		BatchSize:    cfg.ClaimBatch,
		Queue:        cfg.Queue,
		Lease:        cfg.Lease,
		PaceHandoffs: cfg.EmbeddedTemporal,
		CPU:          cpu,
		Logger:       logger.With("component", "dispatch"),
	}, n.store, cat, attempter, &workflows.Starter{Client: n.temporal, TaskQueue: cfg.TaskQueue})
	n.background.Add(2)
	go func() {
		defer n.background.Done()
		_ = disp.Run(runCtx)
	}()
	go func() {
		defer n.background.Done()
		cat.Run(runCtx, cfg.CatalogReload)
	}()
	n.publisher = publish.New(n.store, cat, publish.Config{Dispatcher: disp, OnCommit: disp.Notify, Logger: logger})

	n.health = health.NewServer()
	svc := server.NewServices(n.publisher, n.store, cat,
		&workflows.Starter{Client: n.temporal, TaskQueue: cfg.TaskQueue},
		server.Options{
			AllowInsecureSinks: cfg.AllowInsecureSinks,
			Egress:             guard,
			Origin:             cfg.Origin,
			PublicURL:          publicURL(cfg, httpLn),
			Logger:             logger,
		})
	n.grpc = server.NewGRPCServer(svc, n.health)
	n.ingest = server.NewIngest(n.publisher, server.IngestOptions{
		APIKeys:              cfg.APIKeys,
		AllowUnauthenticated: cfg.IngestWithoutAuth,
		AllowedOrigins:       cfg.AllowedOrigins,
		Rate:                 cfg.IngestRate,
		AutoGrantCallbacks:   cfg.AutoGrantCallbacks,
		CallbackClient:       outbound,
		Logger:               logger.With("component", "ingest"),
	})
	if len(cfg.APIKeys) == 0 && cfg.IngestWithoutAuth {
		logger.Warn("HTTP ingest accepts events without an API key (ingest-without-auth)")
	}
	n.http = &http.Server{Handler: server.HTTPHandler(n.ready, svc, n.ingest), ReadHeaderTimeout: 10 * time.Second}
	n.background.Add(2)
	go func() {
		defer n.background.Done()
		if err := n.grpc.Serve(grpcLn); err != nil {
			logger.Error("gRPC server", "err", err)
		}
	}()
	go func() {
		defer n.background.Done()
		if err := n.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("HTTP server", "err", err)
		}
	}()
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	logger.Info("herald serving", "grpc", grpcLn.Addr().String(), "http", httpLn.Addr().String(),
		"store", storeKind(cfg), "temporal", cfg.TemporalAddr)
	return n, nil
}

// refusedLabel is the metrics label of each reason the scheduler refuses
// a request for.
var refusedLabel = map[string]string{
	scheduler.ReasonBreakerOpen: "breaker_open",
	scheduler.ReasonQueueFull:   "queue_full",
	scheduler.ReasonDeadline:    "deadline",
	scheduler.ReasonClosed:      "closed",
}

// publicURL is the base URL sinks reach the HTTP edge at: the configured
// one, or the listener's address.
func publicURL(cfg config.Config, httpLn net.Listener) string {
	if cfg.PublicURL != "" {
		return cfg.PublicURL
	}
	return "http://" + httpLn.Addr().String()
}

func storeKind(cfg config.Config) string {
	if cfg.IsPostgres() {
		return "postgres"
	}
	return "sqlite:" + cfg.Store
}

// ready reports whether the store and Temporal answer.
func (n *Node) ready(ctx context.Context) error {
	if _, err := n.store.SubscriptionsVersion(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if _, err := n.temporal.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("temporal: %w", err)
	}
	return nil
}

// GRPCAddr is the address the gRPC API listens on.
func (n *Node) GRPCAddr() string { return n.grpcLn.Addr().String() }

// HTTPAddr is the address the HTTP edge listens on.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// Stop shuts the node down gracefully: it stops taking requests, commits
// what was accepted, finishes or releases the deliveries in flight, and
// closes the store. Every event a Publish call was told is stored stays
// stored and is delivered, by this node later or by another.
func (n *Node) Stop(ctx context.Context) {
	n.stopOnce.Do(func() {
		if n.health != nil {
			n.health.Shutdown()
		}
		if n.grpc != nil {
			done := make(chan struct{})
			go func() { n.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				n.grpc.Stop()
			}
		}
		if n.http != nil {
			_ = n.http.Shutdown(ctx)
		}
		if n.ingest != nil {
			n.ingest.Close()
		}
		n.closeAll()
	})
}

func (n *Node) closeAll() {
	if n.publisher != nil {
		n.publisher.Close()
	}
	if n.cancel != nil {
		n.cancel()
	}
	if n.scheduler != nil {
		// Requests still waiting for their turn are put back, not sent.
		n.scheduler.Close()
	}
	n.background.Wait()
	if n.worker != nil {
		n.worker.Stop()
	}
	if n.temporal != nil {
		n.temporal.Close()
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			n.logger.Error("close store", "err", err)
		}
	}
	if n.grpc == nil {
		// Start failed before serving: the listeners are still ours.
		n.grpcLn.Close()
		n.httpLn.Close()
	}
}
