package devtemporal_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/heraldhq/herald/internal/devtemporal"
	"github.com/heraldhq/herald/workflows"
)

const testNamespace = "herald-test"

// shared is the server most tests use: starting one is expensive.
var shared *devtemporal.Server

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "devtemporal-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()

	shared, err = devtemporal.Start(context.Background(), devtemporal.Config{
		DataDir:      dir,
		FrontendAddr: "127.0.0.1:0",
		UIAddr:       "127.0.0.1:0",
		Namespaces:   []string{"default", testNamespace},
		Logger:       testLogger(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start shared dev server:", err)
		return 1
	}
	defer func() {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop shared dev server:", err)
		}
	}()
	return m.Run()
}

// testLogger passes the server's warnings and errors to stderr when
// DEVTEMPORAL_TEST_LOG is set, and discards them otherwise.
func testLogger() *slog.Logger {
	if os.Getenv("DEVTEMPORAL_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// herald's search attributes, as the delivery workflows use them.
var heraldSearchAttributes = map[string]enumspb.IndexedValueType{
	"HeraldSubscriptionId": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	"HeraldSinkHost":       enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	"HeraldEventType":      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	"HeraldDeliveryState":  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	"HeraldAttempts":       enumspb.INDEXED_VALUE_TYPE_INT,
	"HeraldLastStatus":     enumspb.INDEXED_VALUE_TYPE_INT,
}

func TestStart_RunsWorkflowEndToEnd(t *testing.T) {
	c := dial(t, shared, testNamespace)
	got := runGreeting(t, c, "wf-"+unique(), temporal.SearchAttributes{})
	if got != "hello, herald" {
		t.Fatalf("workflow result = %q, want %q", got, "hello, herald")
	}
}

func TestStart_GivesNamespacesSevenDayRetention(t *testing.T) {
	c := dial(t, shared, testNamespace)
	for _, ns := range []string{"default", testNamespace} {
		resp, err := c.WorkflowService().DescribeNamespace(t.Context(), &workflowservice.DescribeNamespaceRequest{Namespace: ns})
		if err != nil {
			t.Fatalf("describe namespace %q: %v", ns, err)
		}
		if got := resp.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got != 7*24*time.Hour {
			t.Errorf("namespace %q retention = %v, want 168h", ns, got)
		}
	}
}

func TestEnsureSearchAttributes_IsIdempotentAndQueryable(t *testing.T) {
	ctx := t.Context()
	c := dial(t, shared, testNamespace)
	for i := range 2 {
		if err := workflows.EnsureSearchAttributes(ctx, c, testNamespace, heraldSearchAttributes); err != nil {
			t.Fatalf("EnsureSearchAttributes call %d: %v", i+1, err)
		}
	}

	subscription := "sub-" + unique()
	id := "wf-" + unique()
	runGreeting(t, c, id, temporal.NewSearchAttributes(
		temporal.NewSearchAttributeKeyKeyword("HeraldSubscriptionId").ValueSet(subscription),
		temporal.NewSearchAttributeKeyInt64("HeraldAttempts").ValueSet(1),
	))

	// Visibility is eventually consistent: poll until the workflow shows up.
	query := fmt.Sprintf("HeraldSubscriptionId = %q AND HeraldAttempts = 1", subscription)
	var found []string
	for len(found) == 0 {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: testNamespace, Query: query})
		if err != nil {
			t.Fatalf("list workflows %s: %v", query, err)
		}
		for _, e := range resp.GetExecutions() {
			found = append(found, e.GetExecution().GetWorkflowId())
		}
		if len(found) == 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("no workflow matched %s", query)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if len(found) != 1 || found[0] != id {
		t.Fatalf("workflows matching %s = %v, want [%s]", query, found, id)
	}
}

func TestEnsureSearchAttributes_RejectsConflicts(t *testing.T) {
	c := dial(t, shared, testNamespace)
	if err := workflows.EnsureSearchAttributes(t.Context(), c, testNamespace, map[string]enumspb.IndexedValueType{
		"DevTemporalConflict": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}); err != nil {
		t.Fatalf("register DevTemporalConflict: %v", err)
	}
	tests := []struct {
		name    string
		attrs   map[string]enumspb.IndexedValueType
		wantErr string
	}{
		{
			name:    "existing attribute with another type",
			attrs:   map[string]enumspb.IndexedValueType{"DevTemporalConflict": enumspb.INDEXED_VALUE_TYPE_INT},
			wantErr: "exists with type",
		},
		{
			name:    "system attribute",
			attrs:   map[string]enumspb.IndexedValueType{"WorkflowId": enumspb.INDEXED_VALUE_TYPE_KEYWORD},
			wantErr: "system attribute",
		},
		{
			name:    "no type",
			attrs:   map[string]enumspb.IndexedValueType{"DevTemporalUntyped": enumspb.INDEXED_VALUE_TYPE_UNSPECIFIED},
			wantErr: "no type",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := workflows.EnsureSearchAttributes(t.Context(), c, testNamespace, tt.attrs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("EnsureSearchAttributes error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStart_ServesUI(t *testing.T) {
	if shared.UIURL() == "" {
		t.Fatal("UIURL is empty with UIAddr set")
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, shared.UIURL()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", req.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Fatalf("GET %s = %d with %d bytes, want 200 and an HTML page", req.URL, resp.StatusCode, len(body))
	}
}

func TestStart_FailsWhenAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()

	tests := []struct {
		name    string
		cfg     devtemporal.Config
		wantErr string
	}{
		{
			name:    "frontend port of a running server",
			cfg:     devtemporal.Config{FrontendAddr: shared.FrontendAddr()},
			wantErr: "temporal frontend address " + shared.FrontendAddr() + " is in use",
		},
		{
			name:    "UI port",
			cfg:     devtemporal.Config{UIAddr: taken.Addr().String()},
			wantErr: "temporal UI address " + taken.Addr().String() + " is in use",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.DataDir = t.TempDir()
			s, err := devtemporal.Start(t.Context(), tt.cfg)
			if err == nil {
				_ = s.Stop()
				t.Fatalf("Start succeeded, want error %q", tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Fatalf("Start error = %q, want %q", err, tt.wantErr)
			}
			// Nothing started: not even the database file.
			if entries, _ := os.ReadDir(tt.cfg.DataDir); len(entries) != 0 {
				t.Errorf("data dir holds %d entries after a failed start, want none", len(entries))
			}
		})
	}
}

// backends are the stores a dev server persists to. Each config returns a
// Config on a new, empty store that is removed when the test ends, and
// stored reports whether the store holds workflow id (that the server did
// not persist elsewhere).
var backends = []struct {
	name   string
	config func(t *testing.T) devtemporal.Config
	stored func(t *testing.T, cfg devtemporal.Config, id string) bool
}{
	{
		name: "sqlite",
		config: func(t *testing.T) devtemporal.Config {
			return devtemporal.Config{DataDir: t.TempDir()}
		},
		stored: func(t *testing.T, cfg devtemporal.Config, id string) bool {
			info, err := os.Stat(filepath.Join(cfg.DataDir, devtemporal.DatabaseFile))
			return err == nil && info.Size() > 0
		},
	},
	{
		name: "postgres",
		config: func(t *testing.T) devtemporal.Config {
			return devtemporal.Config{PostgresURL: devtemporal.NewTestPostgresDatabase(t)}
		},
		stored: func(t *testing.T, cfg devtemporal.Config, id string) bool {
			conn := connectPostgres(t, cfg.PostgresURL)
			var executions, visible int
			if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM executions WHERE workflow_id = $1", id).Scan(&executions); err != nil {
				t.Fatalf("count executions of %s: %v", id, err)
			}
			vis := connectPostgres(t, withDatabase(t, cfg.PostgresURL, databaseOf(t, cfg.PostgresURL)+devtemporal.VisibilitySuffix))
			if err := vis.QueryRow(t.Context(), "SELECT count(*) FROM executions_visibility WHERE workflow_id = $1", id).Scan(&visible); err != nil {
				t.Fatalf("count visible executions of %s: %v", id, err)
			}
			t.Logf("PostgreSQL holds %d execution(s) and %d visibility record(s) of %s", executions, visible, id)
			return executions > 0 && visible > 0
		},
	},
}

func TestStart_KeepsDataAcrossRestart(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.config(t)
			cfg.Namespaces = []string{testNamespace}
			cfg.Logger = testLogger()

			began := time.Now()
			first, err := devtemporal.Start(t.Context(), cfg)
			if err != nil {
				t.Fatalf("first start: %v", err)
			}
			t.Logf("start on a new store took %v", time.Since(began))
			c := dial(t, first, testNamespace)
			id := "wf-" + unique()
			runGreeting(t, c, id, temporal.SearchAttributes{})
			c.Close()
			if err := first.Stop(); err != nil {
				t.Fatalf("first stop: %v", err)
			}

			began = time.Now()
			second, err := devtemporal.Start(t.Context(), cfg)
			if err != nil {
				t.Fatalf("second start: %v", err)
			}
			t.Logf("start on an existing store took %v", time.Since(began))
			defer func() {
				if err := second.Stop(); err != nil {
					t.Errorf("second stop: %v", err)
				}
			}()
			c = dial(t, second, testNamespace)
			desc, err := c.DescribeWorkflowExecution(t.Context(), id, "")
			if err != nil {
				t.Fatalf("describe workflow %s after restart: %v", id, err)
			}
			if got := desc.GetWorkflowExecutionInfo().GetStatus(); got != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				t.Fatalf("workflow %s status after restart = %v, want COMPLETED", id, got)
			}
			ns, err := c.WorkflowService().DescribeNamespace(t.Context(), &workflowservice.DescribeNamespaceRequest{Namespace: testNamespace})
			if err != nil {
				t.Fatalf("describe namespace %q after restart: %v", testNamespace, err)
			}
			if got := ns.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got != devtemporal.Retention {
				t.Errorf("namespace %q retention = %v, want %v", testNamespace, got, devtemporal.Retention)
			}
			if !b.stored(t, cfg, id) {
				t.Errorf("the %s store does not hold workflow %s", b.name, id)
			}
		})
	}
}

func TestStart_RejectsBadPostgresURL(t *testing.T) {
	tests := []struct {
		url     string
		wantErr string
	}{
		{"mysql://postgres@127.0.0.1/temporal", "the scheme must be postgres"},
		{"postgres://127.0.0.1/temporal", "a user and a host are required"},
		{"postgres://postgres@127.0.0.1/", "the database name must match"},
		{"postgres://postgres@127.0.0.1/temporal;drop", "the database name must match"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			s, err := devtemporal.Start(t.Context(), devtemporal.Config{PostgresURL: tt.url})
			if err == nil {
				_ = s.Stop()
				t.Fatalf("Start succeeded, want error %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Start error = %q, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStart_InMemoryServesNamespaces(t *testing.T) {
	s, err := devtemporal.Start(t.Context(), devtemporal.Config{})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	if s.UIURL() != "" {
		t.Errorf("UIURL = %q without UIAddr, want empty", s.UIURL())
	}
	c := dial(t, s, devtemporal.DefaultNamespace)
	if _, err := c.WorkflowService().DescribeNamespace(t.Context(), &workflowservice.DescribeNamespaceRequest{
		Namespace: devtemporal.DefaultNamespace,
	}); err != nil {
		t.Fatalf("describe namespace %q: %v", devtemporal.DefaultNamespace, err)
	}
}

// withDatabase returns dsn naming database name instead.
func withDatabase(t *testing.T, dsn, name string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// databaseOf returns the database dsn names.
func databaseOf(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// connectPostgres connects to the database at dsn until the test ends.
func connectPostgres(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// dial returns a client of s in namespace, closed when the test ends.
func dial(t *testing.T, s *devtemporal.Server, namespace string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  s.FrontendAddr(),
		Namespace: namespace,
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatalf("dial %s: %v", s.FrontendAddr(), err)
	}
	t.Cleanup(c.Close)
	return c
}

// runGreeting runs greetWorkflow as id on a worker of its own task queue and
// returns its result.
func runGreeting(t *testing.T, c client.Client, id string, attrs temporal.SearchAttributes) string {
	t.Helper()
	taskQueue := "tq-" + unique()
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(greetWorkflow)
	w.RegisterActivity(greet)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	defer w.Stop()

	run, err := c.ExecuteWorkflow(t.Context(), client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             taskQueue,
		TypedSearchAttributes: attrs,
	}, greetWorkflow, "herald")
	if err != nil {
		t.Fatalf("start workflow %s: %v", id, err)
	}
	var got string
	if err := run.Get(t.Context(), &got); err != nil {
		t.Fatalf("workflow %s: %v", id, err)
	}
	return got
}

func greetWorkflow(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var greeting string
	err := workflow.ExecuteActivity(ctx, greet, name).Get(ctx, &greeting)
	return greeting, err
}

func greet(_ context.Context, name string) (string, error) {
	return "hello, " + name, nil
}

func unique() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
