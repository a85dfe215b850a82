// Package devtemporal runs a single-process Temporal server on a SQLite file (or a PostgreSQL database), with its Web UI, for development and tests.
package devtemporal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/temporal"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Retention is the workflow retention Start gives the namespaces it manages.
const Retention = 7 * 24 * time.Hour

// DefaultNamespace is created when Config.Namespaces is empty.
const DefaultNamespace = "default"

// clusterName names the single local cluster.
const clusterName = "active"

// Config describes a dev server. The zero value runs an in-memory server on a
// free loopback port without the UI.
type Config struct {
	// DataDir holds the SQLite file (temporal.db). Empty: an in-memory database (tests).
	// The directory is created if missing. Unused with PostgresURL.
	DataDir string
	// PostgresURL, if set, makes the server persist to PostgreSQL through
	// Temporal's postgres12 SQL plugin instead of SQLite:
	// postgres://user[:password]@host[:port]/database[?sslmode=...] (port
	// 5432 and sslmode=disable by default). The database holds the default
	// store, and database+VisibilitySuffix the visibility store. Start
	// creates both if missing (the user must then be allowed to), sets up
	// or updates Temporal's schema in each to this server's version, and
	// creates the namespaces. The server has one history shard, which
	// cannot change once the database has been used.
	PostgresURL string
	// FrontendAddr is the host:port of the frontend gRPC API, e.g. 127.0.0.1:7233.
	// Port 0 picks a free port; an empty host or "localhost" means 127.0.0.1.
	// Empty means 127.0.0.1:0.
	FrontendAddr string
	// UIAddr is the host:port of the Web UI; empty disables the UI. Port 0 picks a free port.
	UIAddr string
	// Namespaces are created if missing, and their retention is raised to Retention
	// if it is shorter. Empty means just DefaultNamespace.
	Namespaces []string
	// Logger receives the server's warnings and errors; nil discards all server logs.
	Logger *slog.Logger
}

// Server is a running dev server. Stop it when done.
type Server struct {
	temporal     temporal.Server
	frontendAddr string
	uiURL        string

	ui     *uiserver.Server
	uiDone chan struct{}

	stopping *atomic.Bool // silences the server's warnings
	stopOnce sync.Once
	stopErr  error
}

// Start runs a Temporal server (frontend, history, matching and worker
// services in this process) and, if cfg.UIAddr is set, its Web UI. It returns
// once the frontend answers for every namespace and the UI accepts
// connections. Every internal port is a free loopback port picked at start;
// a frontend or UI address already in use is an error before anything runs.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	ports, err := reservePorts(cfg)
	if err != nil {
		return nil, err
	}
	namespaces := cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{DefaultNamespace}
	}
	var store, visibility *config.SQL
	if cfg.PostgresURL != "" {
		store, visibility, err = preparePostgres(cfg.PostgresURL, namespaces)
	} else {
		store, err = prepareSQLite(cfg.DataDir, namespaces)
		visibility = store
	}
	// The server binds its own sockets, so the reservations end here, just
	// before it does.
	ports.release()
	if err != nil {
		return nil, err
	}

	stopping := new(atomic.Bool)
	var logger log.Logger = log.NewNoopLogger()
	if cfg.Logger != nil {
		logger = slogLogger{log: cfg.Logger, quiet: stopping}
	}

	srv, err := temporal.NewServer(
		temporal.WithConfig(serverConfig(ports, store, visibility)),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: static.SingleLocalHost(ports.frontendDialAddr()),
			primitives.HistoryService:  static.SingleLocalHost(loopbackAddr(ports.history)),
			primitives.MatchingService: static.SingleLocalHost(loopbackAddr(ports.matching)),
			primitives.WorkerService:   static.SingleLocalHost(loopbackAddr(ports.worker)),
		}),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorization.NewNoopAuthorizer()),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper {
			return authorization.NewNoopClaimMapper()
		}),
		temporal.WithDynamicConfigClient(dynamicConfig()),
	)
	if err != nil {
		return nil, fmt.Errorf("temporal: configure server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("temporal: start server: %w", err)
	}
	s := &Server{temporal: srv, frontendAddr: ports.frontendDialAddr(), stopping: stopping}

	if err := s.waitReady(ctx, namespaces); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if ports.uiHost != "" {
		if err := s.startUI(ctx, ports); err != nil {
			_ = s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// FrontendAddr returns the host:port of the frontend gRPC API, for client.Dial.
func (s *Server) FrontendAddr() string { return s.frontendAddr }

// UIURL returns the Web UI's base URL ("http://host:port"), or "" if the UI is disabled.
func (s *Server) UIURL() string { return s.uiURL }

// Stop stops the UI and the server. It is safe to call more than once.
// The SQLite connection stays open in the process (the server's SQLite plugin
// keeps one per database for the life of the process), so a later Start on the
// same DataDir in the same process reuses it.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		if s.ui != nil {
			s.ui.Stop()
			<-s.uiDone
		}
		if err := s.temporal.Stop(); err != nil {
			s.stopErr = fmt.Errorf("temporal: stop server: %w", err)
		}
	})
	return s.stopErr
}

// waitReady polls the frontend until every namespace can be described, then
// raises their retention to Retention where it is shorter.
func (s *Server) waitReady(ctx context.Context, namespaces []string) error {
	conn, err := grpc.NewClient(s.frontendAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("temporal: dial frontend %s: %w", s.frontendAddr, err)
	}
	defer func() { _ = conn.Close() }()
	workflows := workflowservice.NewWorkflowServiceClient(conn)

	for _, ns := range namespaces {
		var desc *workflowservice.DescribeNamespaceResponse
		err := poll(ctx, func() error {
			var err error
			desc, err = workflows.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
			return err
		})
		if err != nil {
			return fmt.Errorf("temporal: frontend %s did not answer for namespace %q: %w", s.frontendAddr, ns, err)
		}
		if desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration() >= Retention {
			continue
		}
		_, err = workflows.UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{
			Namespace: ns,
			Config: &namespacepb.NamespaceConfig{
				WorkflowExecutionRetentionTtl: durationpb.New(Retention),
			},
		})
		if err != nil {
			return fmt.Errorf("temporal: set retention of namespace %q: %w", ns, err)
		}
	}
	return nil
}

// startUI runs the Web UI in a goroutine (its Start blocks) and waits until it
// accepts connections.
func (s *Server) startUI(ctx context.Context, ports *portSet) error {
	s.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		Host:                ports.uiHost,
		Port:                ports.ui,
		TemporalGRPCAddress: s.frontendAddr,
		EnableUI:            true,
		CORS:                uiconfig.CORS{CookieInsecure: true},
		HideLogs:            true,
		DisableNewsFetch:    true,
	}))
	s.uiDone = make(chan struct{})
	go func() {
		defer close(s.uiDone)
		// Start returns nil once Stop closes the server. On a bind error it
		// calls the echo logger's Fatal, which exits the process: reservePorts
		// checked the port is free just before.
		_ = s.ui.Start()
	}()

	addr := net.JoinHostPort(dialHost(ports.uiHost), strconv.Itoa(ports.ui))
	s.uiURL = "http://" + addr
	client := &http.Client{}
	err := poll(ctx, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.uiURL+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		return nil
	})
	if err != nil {
		return fmt.Errorf("temporal UI at %s did not answer: %w", addr, err)
	}
	return nil
}

// poll calls try until it succeeds or ctx ends, and returns the last error.
func poll(ctx context.Context, try func() error) error {
	const interval = 20 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				return ctx.Err()
			}
			return errors.Join(ctx.Err(), last)
		case <-timer.C:
		}
		if last = try(); last == nil {
			return nil
		}
		timer.Reset(interval)
	}
}

// serverConfig builds the static server configuration: one node, one
// history shard, the given SQL stores (the same one twice on SQLite), no
// archival, no metrics.
func serverConfig(ports *portSet, store, visibility *config.SQL) *config.Config {
	var c config.Config
	c.Global.Membership.MaxJoinDuration = 30 * time.Second
	c.Global.Membership.BroadcastAddress = loopback
	c.Persistence.DefaultStore = store.PluginName
	c.Persistence.VisibilityStore = visibility.PluginName
	if visibility != store {
		c.Persistence.VisibilityStore += "-visibility"
	}
	c.Persistence.NumHistoryShards = 1
	c.Persistence.DataStores = map[string]config.DataStore{
		c.Persistence.DefaultStore:    {SQL: store},
		c.Persistence.VisibilityStore: {SQL: visibility},
	}
	c.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             ports.frontendDialAddr(),
				HTTPAddress:            net.JoinHostPort(dialHost(ports.frontendHost), strconv.Itoa(ports.frontendHTTP)),
			},
		},
	}
	c.DCRedirectionPolicy.Policy = "noop"
	internal := func(port int) config.Service {
		var svc config.Service
		svc.RPC.GRPCPort = port
		svc.RPC.BindOnIP = loopback
		return svc
	}
	frontend := internal(ports.frontend)
	frontend.RPC.BindOnIP = ports.frontendHost
	frontend.RPC.HTTPPort = ports.frontendHTTP
	c.Services = map[string]config.Service{
		string(primitives.FrontendService): frontend,
		string(primitives.HistoryService):  internal(ports.history),
		string(primitives.MatchingService): internal(ports.matching),
		string(primitives.WorkerService):   internal(ports.worker),
	}
	c.Archival.History.State = "disabled"
	c.Archival.Visibility.State = "disabled"
	c.NamespaceDefaults.Archival.History.State = "disabled"
	c.NamespaceDefaults.Archival.Visibility.State = "disabled"
	c.PublicClient.HostPort = ports.frontendDialAddr()
	return &c
}

// dynamicConfig holds the settings that differ from the server's defaults,
// chosen as the Temporal CLI's dev server chooses them.
func dynamicConfig() dynamicconfig.StaticClient {
	return dynamicconfig.StaticClient{
		// Visibility calls (List/Count, and the UI) are throttled at 10/s by default.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// New search attributes are usable at once instead of after a cache refresh.
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		// Reading search attributes on every request costs persistence calls.
		dynamicconfig.FrontendPersistenceMaxQPS.Key(): 10000,
		dynamicconfig.HistoryPersistenceMaxQPS.Key():  45000,
		// A dev server needs far fewer than the default 128k cached workflows.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8192,
	}
}
