// Package app assembles Herald's components into one running node and
// shuts them down in order.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heraldhq/herald/internal/attempt"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/catalog"
	"github.com/heraldhq/herald/internal/certs"
	"github.com/heraldhq/herald/internal/clusterlimit"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/cpuload"
	"github.com/heraldhq/herald/internal/delivery"
	"github.com/heraldhq/herald/internal/dispatch"
	"github.com/heraldhq/herald/internal/egress"
	"github.com/heraldhq/herald/internal/handshake"
	"github.com/heraldhq/herald/internal/lifecycle"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/opsevents"
	"github.com/heraldhq/herald/internal/policy"
	"github.com/heraldhq/herald/internal/publish"
	"github.com/heraldhq/herald/internal/redrive"
	"github.com/heraldhq/herald/internal/retention"
	"github.com/heraldhq/herald/internal/scheduler"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/store/postgres"
	"github.com/heraldhq/herald/internal/store/sqlite"
	"github.com/heraldhq/herald/internal/vault"
	"github.com/heraldhq/herald/server"
	"github.com/heraldhq/herald/workflows"
)

// Node is one running Herald node: the API, the publisher, the dispatcher
// and a Temporal worker, over one store.
type Node struct {
	cfg    config.Config
	logger *slog.Logger

	store      store.Store
	tls        *certs.Files // nil without TLS
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
	draining   atomic.Bool
}

// OpenStore opens the database cfg names, as it is: its subscriptions'
// secrets sealed (see OpenSealedStore). A PostgreSQL schema is migrated
// with cfg.Migrate, and must otherwise be current.
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	if cfg.IsPostgres() {
		if cfg.Migrate {
			return postgres.Open(ctx, cfg.Store)
		}
		s, err := postgres.Connect(ctx, cfg.Store)
		if err != nil {
			return nil, err
		}
		st, err := s.Schema(ctx)
		if err == nil {
			err = st.Err()
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	return sqlite.Open(ctx, cfg.Store)
}

// OpenSealedStore opens the database cfg names with its subscriptions'
// secrets sealed by cfg's encryption keys: what a node reads and writes.
func OpenSealedStore(ctx context.Context, cfg config.Config) (*vault.Store, error) {
	keys, err := encryptionKeys(cfg)
	if err != nil {
		return nil, err
	}
	s, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return vault.Wrap(s, keys), nil
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
	sealed, err := OpenSealedStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	n.store = sealed
	// Secrets stored in the clear (before encryption) or under a retired
	// key are sealed again with the current key; a wrong key stops here.
	if resealed, err := sealed.Reseal(ctx); err != nil {
		return nil, fmt.Errorf("open the stored secrets: %w", err)
	} else if resealed > 0 {
		logger.Info("sealed subscriptions' secrets with the current encryption key", "subscriptions", resealed)
	}
	cat := catalog.New(n.store, logger)
	cat.SharedHosts(cfg.SharedSinkHosts)
	if err = cat.Reload(ctx); err != nil {
		return nil, err
	}
	var authn server.Authenticator
	var keyring *auth.Keyring
	if cfg.Authenticates() {
		keyring, err = auth.NewKeyring(n.store, auth.KeyringConfig{
			AdminKey: cfg.AdminKey, AdminSubjects: cfg.TLSClientAdmins,
			PublishRate: cfg.PublishRate, PublishBurst: cfg.PublishBurst,
			Logger: logger.With("component", "keyring"),
		})
		if err != nil {
			return nil, err
		}
		if err = keyring.Reload(ctx); err != nil {
			return nil, err
		}
		authn = keyring
	} else if cfg.Dev {
		logger.Warn("herald dev authenticates nobody: every caller may do anything (give --admin-key to require API keys)")
	} else {
		logger.Warn("herald serve authenticates nobody (--insecure-no-auth): every caller may do anything")
	}
	var grpcCreds []grpc.ServerOption
	if cfg.TLSCert != "" {
		n.tls = &certs.Files{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, ClientCAFile: cfg.TLSClientCA, Logger: logger.With("component", "tls")}
		if err = n.tls.Load(); err != nil {
			return nil, err
		}
		tlsCfg, err := n.tls.ServerConfig()
		if err != nil {
			return nil, err
		}
		grpcCreds = append(grpcCreds, grpc.Creds(credentials.NewTLS(tlsCfg)))
		httpLn = tls.NewListener(httpLn, tlsCfg)
		n.httpLn = httpLn
	}
	sinkRoots, err := sinkCAs(cfg.SinkCA)
	if err != nil {
		return nil, err
	}
	if n.temporal, err = DialTemporal(ctx, cfg, logger); err != nil {
		return nil, err
	}
	if err = SetUpSearchAttributes(ctx, n.temporal, cfg.TemporalNamespace); err != nil {
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
	// One identity for this node: the claims it holds, its heartbeat
	// (limits shared among live nodes) and the pruning lease.
	nodeID := cfg.NodeID
	pruner := retention.New(n.store, retention.Config{
		Delivered: cfg.RetentionDelivered, Dead: cfg.RetentionDead, Interval: cfg.PruneInterval,
		Holder: nodeID, Logger: logger.With("component", "retention"),
	})
	// Rate limits, concurrency limits and sink pauses hold for every
	// node sharing the store.
	cluster := clusterlimit.New(n.store, clusterlimit.Config{Node: nodeID, Logger: logger.With("component", "clusterlimit")})
	n.background.Add(1)
	go func() {
		defer n.background.Done()
		cluster.Run(runCtx)
	}()
	n.background.Add(1)
	go func() {
		defer n.background.Done()
		pruner.Run(runCtx)
	}()
	if keyring != nil {
		n.background.Add(1)
		go func() {
			defer n.background.Done()
			keyring.Run(runCtx, cfg.CatalogReload)
		}()
	}
	allow, err := cfg.SinkAllowPrefixes()
	if err != nil {
		return nil, err
	}
	guard := &egress.Guard{AllowPrivate: cfg.AllowPrivateSinks, Allow: allow}
	if cfg.AllowPrivateSinks {
		logger.Warn("sinks may be at private and loopback addresses (allow-private-sinks): for development only")
	}
	// Every outbound request goes through the guarded transport.
	outbound := &http.Client{Transport: delivery.NewTransport(guard, sinkRoots, 0, 16), Timeout: policy.RequestTimeout}
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
		Tokens:               cluster,
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
		Sender:    delivery.NewSender(delivery.WithGuard(guard), delivery.WithRootCAs(sinkRoots), delivery.WithMaxConnsPerHost(cfg.MaxOriginConcurrency)),
		Scheduler: sched,
		Cluster:   cluster,
		Origin:    cfg.Origin,
		Logger:    logger.With("component", "attempt"),
	}
	// Operational events go out through the publisher, made below; the
	// worker that emits them starts after it.
	ops := &opsevents.Emitter{Origin: cfg.Origin}
	// Attempt outcomes, first attempts and retries alike, keep each sink's
	// failure run; one that fails for its suspend-after is suspended, and
	// the suspension published as an operational event.
	sinkHealth := &lifecycle.Health{Store: n.store, SuspendAfter: cfg.SuspendAfter,
		Suspended: func(ctx context.Context, sub *store.Subscription) {
			logger.Warn("subscription suspended", "subscription", sub.ID, "reason", sub.StateReason)
			if err := cat.Reload(ctx); err != nil {
				logger.Warn("catalog reload after a suspension", "err", err)
			}
			// Published apart from the attempt that suspended it: a
			// dispatcher's worker must not wait for a commit.
			go func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if err := ops.SubscriptionChanged(ctx, sub, opsevents.SubscriptionSuspended, sub.StateReason, sub.UpdatedAt); err != nil {
					logger.Warn("publish the suspension", "subscription", sub.ID, "err", err)
				}
			}()
		}}
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
		Ops:      ops,
		Health:   sinkHealth,
		Resender: &redrive.Redriver{Store: n.store, Workflows: &workflows.Starter{Client: n.temporal, TaskQueue: cfg.TaskQueue}},
	})

	disp := dispatch.New(dispatch.Config{
		BatchSize:    cfg.ClaimBatch,
		Queue:        cfg.Queue,
		Lease:        cfg.Lease,
		LeaseRenew:   cfg.LeaseRenew,
		NodeID:       cfg.NodeID,
		PaceHandoffs: cfg.EmbeddedTemporal,
		CPU:          cpu,
		Health:       sinkHealth,
		Logger:       logger.With("component", "dispatch"),
	}, n.store, cat, attempter, &workflows.Starter{Client: n.temporal, TaskQueue: cfg.TaskQueue})
	// What this node held when it last stopped without putting it back
	// is claimable at once, before anything is claimed or published.
	released, err := disp.Release(ctx)
	if err != nil {
		return nil, fmt.Errorf("put back the deliveries node %s held: %w", cfg.NodeID, err)
	}
	if released > 0 {
		logger.Info("put back the deliveries this node held when it stopped", "node", cfg.NodeID, "n", released)
	}
	// A subscription enabled again (here or on another node) gets what was
	// held for it, in publish order. Deliveries a publish stored held
	// while the change was on its way (this node's catalog still had the
	// subscription suspended) are released by a second pass.
	cat.OnEnabled(func(subID string) {
		release := func() {
			released, err := lifecycle.Released(runCtx, n.store, subID, time.Now())
			if err != nil && runCtx.Err() == nil {
				logger.Error("release held deliveries", "subscription", subID, "err", err)
			}
			if released > 0 {
				logger.Info("released held deliveries", "subscription", subID, "deliveries", released)
				disp.Notify()
			}
		}
		go release()
		time.AfterFunc(releaseAgain, release)
	})
	n.background.Add(2)
	go func() {
		defer n.background.Done()
		_ = disp.Run(runCtx)
	}()
	go func() {
		defer n.background.Done()
		cat.Run(runCtx, cfg.CatalogReload)
	}()
	n.publisher = publish.New(n.store, cat, publish.Config{Dispatcher: disp, OnCommit: disp.Notify, Limits: cfg.Limits, Logger: logger})
	ops.Publisher = n.publisher
	if err = n.worker.Start(); err != nil {
		return nil, fmt.Errorf("start Temporal worker: %w", err)
	}

	n.health = health.NewServer()
	svc := server.NewServices(n.publisher, n.store, cat,
		&workflows.Starter{Client: n.temporal, TaskQueue: cfg.TaskQueue},
		server.Options{
			Ops:                ops,
			AllowInsecureSinks: cfg.AllowInsecureSinks,
			Egress:             guard,
			Origin:             cfg.Origin,
			PublicURL:          publicURL(cfg, httpLn),
			Auth:               authn,
			Keys:               n.store,
			KeysChanged: func(ctx context.Context) {
				if keyring != nil {
					if err := keyring.Reload(ctx); err != nil {
						logger.Warn("API key reload after a change", "err", err)
					}
				}
			},
			MetricsOpen: cfg.MetricsOpen,
			Tracing:     cfg.Tracing,
			Limits:      cfg.Limits,
			Logger:      logger,
		})
	n.grpc = server.NewGRPCServer(svc, n.health, grpcCreds...)
	n.ingest = server.NewIngest(n.publisher, server.IngestOptions{
		Auth:               authn,
		Limits:             cfg.Limits,
		AllowedOrigins:     cfg.AllowedOrigins,
		Rate:               cfg.IngestRate,
		AutoGrantCallbacks: cfg.AutoGrantCallbacks,
		CallbackClient:     outbound,
		Logger:             logger.With("component", "ingest"),
	})
	n.http = &http.Server{
		Handler: server.HTTPHandler(n.ready, svc, n.ingest),
		// A slow or stalled client holds a connection for a bounded time:
		// its headers within ReadHeaderTimeout, its whole request within
		// ReadTimeout, the answer within WriteTimeout.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       policy.HTTPReadTimeout,
		WriteTimeout:      policy.HTTPWriteTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    policy.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelDebug),
	}
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
	scheme := "http://"
	if cfg.TLSCert != "" {
		scheme = "https://"
	}
	return scheme + httpLn.Addr().String()
}

// sinkCAs is the system's certificate authorities plus those in the PEM
// file (nil, the system's alone, without one).
func sinkCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("sink CA: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("sink CA %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// ReloadCertificates reads the TLS certificate, key and client CAs again
// (on SIGHUP); connections already open keep theirs.
func (n *Node) ReloadCertificates() error {
	if n.tls == nil {
		return nil
	}
	return n.tls.Reload()
}

func storeKind(cfg config.Config) string {
	if cfg.IsPostgres() {
		return "postgres"
	}
	return "sqlite:" + cfg.Store
}

// ready reports whether the node should be sent traffic: it is not
// draining, its last commit did not fail, and the store answers. Temporal
// is not on the success path, so a node whose Temporal does not answer
// stays ready, and says so in the note: it stores and first-attempts
// every event, and its failed first attempts wait in the store until
// Temporal answers again.
func (n *Node) ready(ctx context.Context) (note string, err error) {
	if n.draining.Load() {
		return "", errors.New("draining: this node is stopping")
	}
	if err := n.publisher.CommitFailing(time.Now()); err != nil {
		return "", fmt.Errorf("store: the last commit failed: %w", err)
	}
	if _, err := n.store.SubscriptionsVersion(ctx); err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	if _, err := n.temporal.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Sprintf("degraded: temporal: %v (events are stored and sent; failed first attempts wait in the store until it answers)", err), nil
	}
	return "", nil
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
		// Load balancers move away first: readiness and the gRPC health
		// service say so before anything stops.
		n.draining.Store(true)
		if n.health != nil {
			n.health.Shutdown()
		}
		if d := n.cfg.DrainDelay; d > 0 {
			n.logger.Info("draining: reporting not ready before stopping", "delay", d)
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
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

// releaseAgain is when a subscription enabled again has its held
// deliveries released a second time: after any publish that matched it
// while it was still suspended in this node's catalog has committed.
const releaseAgain = 10 * time.Second
