package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldhq/herald/clients/publisher"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/devtemporal"
)

// testEncryptionKey seals the secrets of every node the tests start (and
// of a node restarted on the same store).
const testEncryptionKey = "e2e:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="

// temporalAddr is the frontend of the embedded Temporal server, on SQLite,
// that every test in this binary shares but the fault tests on PostgreSQL
// (temporalOnPostgres); each test has its own task queue.
var temporalAddr string

// childEnv makes the test binary run a Herald node instead of the tests
// (see runChild), so crash tests can kill a real process.
const childEnv = "HERALD_E2E_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "herald-e2e-temporal")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	srv, err := devtemporal.Start(ctx, devtemporal.Config{
		DataDir:      dir,
		FrontendAddr: "127.0.0.1:0",
		Namespaces:   []string{"default"},
	})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start embedded Temporal:", err)
		os.Exit(1)
	}
	temporalAddr = srv.FrontendAddr()
	code := m.Run()
	_ = srv.Stop()
	os.RemoveAll(dir)
	if err := stopTemporalOnPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, "Temporal on PostgreSQL:", err)
	}
	os.Exit(code)
}

// temporalOnPostgres is the binary's second embedded Temporal server, for
// the fault tests on PostgreSQL (multinode_test.go): it persists to
// PostgreSQL, on the server that holds their stores, as Temporal does in
// production. The first test that needs it starts it, so the other tests
// never wait for it; TestMain stops it and drops its databases. Each run
// has databases of its own: two test binaries running at once must not
// share one Temporal cluster's shard.
var temporalOnPostgres struct {
	once sync.Once
	srv  *devtemporal.Server
	url  string // its database; the visibility store's has devtemporal.VisibilitySuffix
	err  error
}

// postgresTemporalAddr returns the frontend of temporalOnPostgres,
// starting it if need be. Call it after postgresStore, which skips the test
// when there is no PostgreSQL.
func postgresTemporalAddr(t *testing.T) string {
	t.Helper()
	p := &temporalOnPostgres
	p.once.Do(func() {
		u, err := url.Parse(postgresServer())
		if err != nil {
			p.err = err
			return
		}
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		u.Path = "/herald_e2e_temporal_" + hex.EncodeToString(b)
		p.url = u.String()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		began := time.Now()
		p.srv, p.err = devtemporal.Start(ctx, devtemporal.Config{
			PostgresURL:  p.url,
			FrontendAddr: "127.0.0.1:0",
			Namespaces:   []string{"default"},
		})
		if p.err == nil {
			t.Logf("Temporal at %s persists to PostgreSQL %s (started in %v)", p.srv.FrontendAddr(), u.Redacted(), time.Since(began).Round(time.Millisecond))
		}
	})
	if p.err != nil {
		t.Fatalf("start Temporal on PostgreSQL: %v", p.err)
	}
	return p.srv.FrontendAddr()
}

// stopTemporalOnPostgres stops temporalOnPostgres if it runs, and drops its
// databases.
func stopTemporalOnPostgres() error {
	p := &temporalOnPostgres
	if p.url == "" {
		return nil
	}
	var errs []error
	if p.srv != nil {
		errs = append(errs, p.srv.Stop())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, postgresServer())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer conn.Close(ctx)
	u, err := url.Parse(p.url)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	db := strings.TrimPrefix(u.Path, "/")
	for _, name := range []string{db, db + devtemporal.VisibilitySuffix} {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nodeIDs numbers the node IDs of the nodes tests start, so that no two
// running nodes share one (they would put back each other's claims).
var nodeIDs atomic.Int64

// newNodeID returns a node ID no other node of this test run has.
func newNodeID(t *testing.T) string {
	return fmt.Sprintf("e2e-%d-%s", nodeIDs.Add(1), strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
}

// nodeConfig is a node's configuration for test t: loopback ports, its own
// SQLite file, task queue and node ID.
func nodeConfig(t *testing.T, storePath string) config.Config {
	cfg := config.Dev()
	cfg.NodeID = newNodeID(t)
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store = storePath
	cfg.DataDir = ""
	cfg.EncryptionKeys = []string{testEncryptionKey}
	cfg.TemporalAddr = temporalAddr
	cfg.TaskQueue = "e2e-" + strings.ReplaceAll(t.Name(), "/", "-")
	cfg.MaxInFlight = 64
	cfg.CatalogReload = 100 * time.Millisecond
	cfg.ShutdownTimeout = 10 * time.Second
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testNode is a running in-process node and clients of its API.
type testNode struct {
	*app.Node
	cfg        config.Config
	conn       *grpc.ClientConn
	publish    heraldv1.PublishServiceClient
	subs       heraldv1.SubscriptionServiceClient
	deliveries heraldv1.DeliveryServiceClient
	keys       heraldv1.ApiKeyServiceClient
}

// startNode starts a node with cfg; it stops when the test ends.
func startNode(t *testing.T, cfg config.Config) *testNode {
	t.Helper()
	grpcLn, httpLn, err := app.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node, err := app.Start(ctx, cfg, grpcLn, httpLn, logger)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{Node: node, cfg: cfg}
	n.connect(t, node.GRPCAddr())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		node.Stop(ctx)
	})
	return n
}

func (n *testNode) connect(t *testing.T, addr string) {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if n.cfg.AdminKey != "" {
		// The test's own calls run as the admin.
		opts = append(opts, grpc.WithPerRPCCredentials(publisher.InsecureAPIKey(n.cfg.AdminKey)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n.conn = conn
	n.publish = heraldv1.NewPublishServiceClient(conn)
	n.subs = heraldv1.NewSubscriptionServiceClient(conn)
	n.deliveries = heraldv1.NewDeliveryServiceClient(conn)
	n.keys = heraldv1.NewApiKeyServiceClient(conn)
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runChild runs a Herald node as a separate process, configured by
// environment variables, until it is killed or gets SIGTERM.
func runChild() int {
	cfg := config.Dev()
	cfg.DataDir = ""
	cfg.EncryptionKeys = []string{testEncryptionKey}
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	cfg.RegisterFlags(fs, false)
	if err := cfg.Parse(fs, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := cfg.Finish(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	grpcLn, httpLn, err := app.Listen(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	node, err := app.Start(ctx, cfg, grpcLn, httpLn, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Tell the parent where the API is.
	fmt.Printf("GRPC %s\n", node.GRPCAddr())
	<-ctx.Done()
	node.Stop(context.Background())
	return 0
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tempStore(t *testing.T) string {
	return filepath.Join(t.TempDir(), "herald.db")
}

func TestStart_UnreachableTemporalIsAClearError(t *testing.T) {
	cfg := nodeConfig(t, tempStore(t))
	cfg.TemporalAddr = freeAddr(t) // nothing listens there
	grpcLn, httpLn, err := app.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node, err := app.Start(ctx, cfg, grpcLn, httpLn, slog.New(slog.DiscardHandler))
	if err == nil {
		node.Stop(ctx)
		t.Fatal("Start succeeded without Temporal")
	}
	if !strings.Contains(err.Error(), "connect to Temporal at "+cfg.TemporalAddr) {
		t.Errorf("error %q does not say what failed", err)
	}
	// The failed start released its listeners.
	for _, addr := range []string{grpcLn.Addr().String(), httpLn.Addr().String()} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listener %s not released: %v", addr, err)
			continue
		}
		ln.Close()
	}
}
