package e2e

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// temporalAddr is the frontend of the one embedded Temporal server that
// every test in this binary shares; each test has its own task queue.
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
	os.Exit(code)
}

// nodeConfig is a node's configuration for test t: loopback ports, its own
// SQLite file and task queue.
func nodeConfig(t *testing.T, storePath string) config.Config {
	cfg := config.Dev()
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
